"""The neural-network side of tunelab: data sets, networks, the training loop and the objective.

Example:
    >>> from tunelab.nn import load_dataset, split_dataset
    >>> train, val, test = split_dataset(load_dataset("iris"), test_size=0.2, holdout=0.2, seed=0)
    >>> len(train.y), len(val.y), len(test.y)
    (96, 24, 30)
"""

from tunelab.nn.data import (
    BUILTIN_DATASETS,
    CLASSIFICATION,
    REGRESSION,
    TASKS,
    Dataset,
    Split,
    Standardizer,
    load_dataset,
    split_dataset,
)
from tunelab.nn.models import ACTIVATIONS, build_mlp
from tunelab.nn.objective import HYPERPARAMETERS, MODELS, NetworkObjective, load_model
from tunelab.nn.train import (
    METRICS,
    OPTIMIZERS,
    evaluate,
    fit,
    make_optimizer,
    predict,
    resolve_device,
    seed_everything,
)

__all__ = [
    "ACTIVATIONS",
    "BUILTIN_DATASETS",
    "CLASSIFICATION",
    "HYPERPARAMETERS",
    "METRICS",
    "MODELS",
    "OPTIMIZERS",
    "REGRESSION",
    "TASKS",
    "Dataset",
    "NetworkObjective",
    "Split",
    "Standardizer",
    "build_mlp",
    "evaluate",
    "fit",
    "load_dataset",
    "load_model",
    "make_optimizer",
    "predict",
    "resolve_device",
    "seed_everything",
    "split_dataset",
]
