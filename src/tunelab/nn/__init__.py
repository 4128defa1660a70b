"""The neural-network side of tunelab: data sets, networks, initialisers, optimizers, learning-rate
schedules, callbacks, the training loop and the objective a study runs (made of a configuration
resolver, a data provider, a model factory and a trial runner).

Everything a spec reaches is reachable from Python too:

Example:
    >>> from tunelab.nn import load_dataset, split_dataset
    >>> train, val, test = split_dataset(load_dataset("iris"), test_size=0.2, holdout=0.2, seed=0)
    >>> len(train.y), len(val.y), len(test.y)
    (96, 24, 30)
"""

from tunelab.nn.callbacks import (
    Callback,
    DivergenceGuard,
    EarlyStopping,
    History,
    LRSchedulerCallback,
    ModelCheckpoint,
    ProgressBar,
    TrialReporter,
)
from tunelab.nn.config import MODELS, ConfigResolver, hyperparameters
from tunelab.nn.data import (
    BUILTIN_DATASETS,
    CLASSIFICATION,
    REGRESSION,
    SCALINGS,
    TASKS,
    Dataset,
    Preprocessing,
    Scaler,
    Split,
    cache_dir,
    load_dataset,
    split_dataset,
)
from tunelab.nn.factory import ModelFactory
from tunelab.nn.initializers import INITIALIZERS, init_weights
from tunelab.nn.kfold import cross_validate
from tunelab.nn.lr_finder import NoUsableRange, RangeTest, range_test
from tunelab.nn.metrics import METRICS, metric_mode
from tunelab.nn.models import ACTIVATIONS, POOLINGS, build_cnn, build_mlp, import_builder
from tunelab.nn.objective import NetworkObjective, load_model
from tunelab.nn.optimizers import LOSSES, OPTIMIZERS, make_loss, make_optimizer
from tunelab.nn.provider import DataProvider
from tunelab.nn.runner import TrialRunner
from tunelab.nn.schedules import SCHEDULES, make_schedule
from tunelab.nn.splits import Fold, HoldoutSplitter, KFoldSplitter, Splits, Splitter
from tunelab.nn.train import (
    TRAINING_DEFAULTS,
    Trainer,
    evaluate,
    fit,
    predict,
    resolve_device,
    scaled_lr,
    seed_everything,
    torch_threads,
)

__all__ = [
    "ACTIVATIONS",
    "BUILTIN_DATASETS",
    "CLASSIFICATION",
    "INITIALIZERS",
    "LOSSES",
    "METRICS",
    "MODELS",
    "OPTIMIZERS",
    "POOLINGS",
    "REGRESSION",
    "SCALINGS",
    "SCHEDULES",
    "TASKS",
    "TRAINING_DEFAULTS",
    "Callback",
    "ConfigResolver",
    "DataProvider",
    "Dataset",
    "DivergenceGuard",
    "EarlyStopping",
    "Fold",
    "History",
    "HoldoutSplitter",
    "KFoldSplitter",
    "LRSchedulerCallback",
    "ModelCheckpoint",
    "ModelFactory",
    "NetworkObjective",
    "NoUsableRange",
    "Preprocessing",
    "ProgressBar",
    "RangeTest",
    "Scaler",
    "Split",
    "Splits",
    "Splitter",
    "Trainer",
    "TrialReporter",
    "TrialRunner",
    "build_cnn",
    "build_mlp",
    "cache_dir",
    "cross_validate",
    "evaluate",
    "fit",
    "hyperparameters",
    "import_builder",
    "init_weights",
    "load_dataset",
    "load_model",
    "make_loss",
    "make_optimizer",
    "make_schedule",
    "metric_mode",
    "predict",
    "range_test",
    "resolve_device",
    "scaled_lr",
    "seed_everything",
    "torch_threads",
    "split_dataset",
]
