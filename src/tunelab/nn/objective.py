"""The built-in objective: train a network on a data set with one trial's hyperparameters.

:class:`NetworkObjective` is what a spec's ``model`` and ``data`` sections become. It is composed of
parts, each with one job: a :class:`~tunelab.nn.ConfigResolver` (defaults < fixed < the trial's
parameters, checked before the search), a :class:`~tunelab.nn.DataProvider` (loads and splits the
data once per run, and carries it to worker processes), a :class:`~tunelab.nn.ModelFactory`
(builds the network) and a :class:`~tunelab.nn.TrialRunner` (trains a trial, pauses and resumes
it). After the search it retrains the best configuration for an honest score on the untouched
test split.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable, Mapping, Sequence
from functools import cached_property
from pathlib import Path
from typing import Any

import torch
from torch import nn

from tunelab.errors import SpecError, TunelabError
from tunelab.nn.callbacks import Callback
from tunelab.nn.config import ConfigResolver, is_builtin
from tunelab.nn.data import CLASSIFICATION, Preprocessing
from tunelab.nn.factory import ModelFactory
from tunelab.nn.kfold import FoldsTraining, cross_validate
from tunelab.nn.lr_finder import RangeTest, range_test
from tunelab.nn.metrics import METRICS
from tunelab.nn.models import ModelBuilder
from tunelab.nn.optimizers import LOSSES
from tunelab.nn.provider import DataProvider
from tunelab.nn.runner import TrialRunner, TrialTraining
from tunelab.nn.splits import Fold, HoldoutSplitter, KFoldSplitter, Splits, Splitter
from tunelab.nn.train import _LOSS_OPTIONS, _OPTIMIZER_OPTIONS
from tunelab.space import Space
from tunelab.trial import Trial

__all__ = ["NetworkObjective", "load_model"]

WEIGHTS_FILE = "model.pt"
ARCHITECTURE_FILE = "model.json"
PREPROCESSING_FILE = "preprocessing.json"


class NetworkObjective:
    """Train a network per trial and return its metrics (of the best epoch, when early stopping
    restores the best weights; else of the last).

    The configuration of a trial is the model's defaults (:func:`~tunelab.nn.hyperparameters`),
    overridden by ``fixed``, overridden by the trial's parameters. Features (and regression
    targets) are scaled with training statistics only; the test split is never touched until
    :meth:`final_fit`. A trial that a scheduler pauses keeps a checkpoint and, resumed, trains on
    from the epoch after the pause.

    Args:
        data: the spec's data section: ``source``, and optionally ``target``, ``task``,
            ``base_dir``, ``test_size`` (default 0.2), ``holdout`` (default 0.2, a fraction of
            what remains after the test split), ``scaling`` (``standard``, ``minmax``, ``none``),
            ``target_scaling`` (regression; default ``standard``), ``shape`` (one sample's
            shape as a network input, e.g. ``[1, 8, 8]``), and for cross-validation ``kfold``,
            ``repeats`` and ``group``.
        model: ``"mlp"``, ``"cnn1d"``, ``"cnn2d"``; or your own builder
            ``build_model(params, input_shape, n_outputs) -> nn.Module``, given as the function
            or as ``"package.module:function"`` / ``"path/to/file.py:function"``. Your builder
            receives the fixed and trial parameters (tunelab's training knobs among them) and
            may use any names; the training, callbacks, reporting and saving stay tunelab's.
        fixed: hyperparameters held constant across trials (``{"epochs": 10}``, say).
        device: ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
        split_seed: seeds the train/validation/test split, the same for every trial.
        callbacks: more :class:`~tunelab.nn.Callback` objects for every trial's training (not the
            final fit, which has no validation split). They are reused across the trials of a
            process and must reset in ``on_train_begin``; with worker processes, picklable.
        splitter: how the data is cut; default a :class:`~tunelab.nn.KFoldSplitter` when
            ``data`` has ``kfold`` (and ``repeats``; rows grouped by its ``group`` column), else
            a :class:`~tunelab.nn.HoldoutSplitter` with ``data``'s ``test_size`` and
            ``holdout``; seeded with ``split_seed``.

    Example:
        >>> from tunelab.space import Float, Space
        >>> objective = NetworkObjective({"source": "iris"}, fixed={"epochs": 2})
        >>> objective.check(Space({"lr": Float(1e-4, 0.1, log=True)}))  # before any trial
    """

    def __init__(
        self,
        data: Mapping[str, Any],
        model: str | ModelBuilder = "mlp",
        fixed: Mapping[str, Any] | None = None,
        device: str = "auto",
        split_seed: int = 0,
        callbacks: Sequence[Callback] = (),
        splitter: Splitter | None = None,
    ) -> None:
        self.data = data
        self.model = model
        self.fixed = fixed
        self.device = device
        self.split_seed = split_seed
        self.callbacks = callbacks
        self.splitter = splitter

    def __getstate__(self) -> dict[str, Any]:
        # the provider loads before it is pickled: workers get the data, and never load it again
        return {**self.__dict__, "provider": self.provider}

    def portable(self) -> NetworkObjective:
        """A copy that runs where this machine's files are not (another node of a cluster): a
        builder the spec names by module or path is imported here and held as the function,
        whose code then travels with the pickled objective (the data always does)."""
        builder = self.factory.builder()
        if builder is None or callable(self.model):
            return self
        moved = copy.copy(self)  # through __getstate__: the data, loaded, comes along
        moved.model = builder
        return moved

    @property
    def resolver(self) -> ConfigResolver:
        """Resolves a trial's configuration and checks ``fixed`` and the space."""
        return ConfigResolver(self.model, self.fixed)

    @property
    def factory(self) -> ModelFactory:
        """Builds the network of a configuration."""
        return ModelFactory(self.model, self.data.get("base_dir"))

    @cached_property
    def provider(self) -> DataProvider:
        """The data, loaded on first use and then kept (and pickled along)."""
        return DataProvider(self.data, self.splitter or self._splitter())

    def _splitter(self) -> Splitter:
        """The data section's way to validate: a holdout, or k-fold (``kfold``, ``repeats``)."""
        test_size = self.data.get("test_size", 0.2)
        if self.data.get("kfold"):
            return KFoldSplitter(
                self.data["kfold"], self.data.get("repeats", 1), test_size, self.split_seed
            )
        return HoldoutSplitter(test_size, self.data.get("holdout", 0.2), self.split_seed)

    def check(self, space: Space) -> None:
        """Fail before the search, with one line naming the field, on anything that would fail
        the trials: an unknown model, name or choice; a fixed value, a range bound or a choice
        of ``space`` that the training refuses (``epochs: 0``, ``dropout: 1.0``, ...); data that
        cannot load or does not fit the model; a loss of the other task; a ``monitor`` that is
        not reported. Loads the data (once: trials reuse it).

        Raises:
            SpecError: on ``model``, ``data.<field>``, ``fixed.<name>`` or ``space.<name>...``.
        """
        self.factory.builder()
        resolver = self.resolver
        resolver.check(space)
        splits, _ = self._data()
        task = splits.dataset.task
        for field, loss in resolver.candidates(space, "loss"):
            if loss is not None and loss not in LOSSES[task]:
                raise SpecError(
                    field, f"{loss!r} is not a {task} loss; known: {', '.join(LOSSES[task])}"
                )
        for field, monitor in resolver.candidates(space, "monitor"):
            self._check_monitor(field, monitor)
        self.provider.preprocessing()  # a target scaling for a classification fails here

    def check_names(self, names: Iterable[str]) -> None:
        """Fail before any training when the model is unknown, a builtin model is given a
        parameter name that is not its own, or a fixed value is not one tunelab knows. Loads
        no data (:meth:`check` checks everything).

        Raises:
            SpecError: on ``model``, or on ``space.<name>`` / ``fixed.<name>``.
        """
        self.factory.builder()
        self.resolver.check_names(names)

    def metric_names(self) -> list[str]:
        """The metrics each trial reports, so a spec's metric can be checked before the search.

        Loads the data (the task decides the metrics), so a missing file or column fails here.
        """
        task = self._data()[0].dataset.task
        train = ["train_loss", "train_accuracy"] if task == CLASSIFICATION else ["train_loss"]
        return [*train, "lr", *(f"val_{name}" for name in METRICS[task])]

    def __call__(self, trial: Trial) -> dict[str, float]:
        """Train with ``trial.params``, report every epoch, stop or pause when the scheduler
        says so, and resume from the checkpoint when ``trial.resumed_from`` is set.

        With k-fold validation the trial trains its folds in turn and reports once per fold
        (see :func:`~tunelab.nn.cross_validate`)."""
        config, given, splits = self._prepare(trial)
        if len(splits.folds) > 1:
            return cross_validate(self._runner(), trial, config, given, splits.folds)
        return self._runner().run(trial, config, given, splits.folds[0])

    def training(self, trial: Trial) -> TrialTraining | FoldsTraining:
        """The trial's training before its next epoch, for an executor that steps many trials
        at once (:class:`~tunelab.executors.FusedExecutor`); under k-fold validation, its
        folds' in turn (:class:`~tunelab.nn.kfold.FoldsTraining`). ``nn.Dropout`` in a model of
        your own draws from the trainer's own generator, seeded as torch's would be, so the
        trial trains as it would under :meth:`__call__` (the built-in models' dropout always
        draws from the trainer's own stream, :mod:`tunelab.nn.masks`)."""
        config, given, splits = self._prepare(trial)
        if len(splits.folds) > 1:
            return FoldsTraining(self._runner(), trial, config, given, splits.folds, True)
        return self._runner().start(trial, config, given, splits.folds[0], own_generator=True)

    def _prepare(self, trial: Trial) -> tuple[dict[str, Any], dict[str, Any], Splits]:
        config, given = self.resolver.resolve(trial.params)
        splits, _ = self._data()
        self._check_config_monitor(config, trial.params)
        # CPU kernels sum in an order that depends on the thread count: kept to reproduce with
        trial.set_user_attr("torch_threads", torch.get_num_threads())
        return config, given, splits

    def final_fit(
        self,
        params: Mapping[str, Any],
        seed: int,
        out_dir: Path,
        epochs: int | None = None,
        callbacks: Sequence[Callback] = (),
    ) -> dict[str, Any]:
        """Retrain a configuration on train + validation, score it once on test, and save it.

        With early stopping on, the retrain runs as many epochs as the configuration's own trial
        kept (its best epoch, or the epoch it stopped at): that trial is replayed first, on the
        same split with the same seed, which gives the same epochs. Pass ``epochs`` to skip it.

        Args:
            params: the chosen hyperparameters (usually the best trial's).
            seed: seeds the weights, batch order and dropout.
            out_dir: where ``model.pt``, ``model.json`` and ``preprocessing.json`` go.
            epochs: how long to train; default the configuration's ``epochs``.
            callbacks: more training callbacks for the retrain (a progress bar).

        Returns:
            ``{"test_metrics": {"test_loss": ..., ...}, "artifacts": {file name: path}}``.
        """
        config, given = self.resolver.resolve(params)
        splits, fold = self._data()
        runner = self._runner()
        if epochs is None:
            self._check_config_monitor(config, params)
            epochs = runner.epochs_kept(config, given, seed, fold)
        config["epochs"] = epochs
        model, prep, test_metrics = runner.final(
            config, given, seed, fold.combined(), splits.test, callbacks
        )
        dataset = splits.dataset
        meta = {
            "model": self.factory.name(),
            "input_shape": list(dataset.shape),
            "n_outputs": dataset.n_outputs,
            "config": config,
            "params": given,
            "task": dataset.task,
            "classes": dataset.classes,
            "feature_names": dataset.feature_names,
            "dataset": dataset.name,
            "seed": seed,
        }
        artifacts = _save(Path(out_dir), model, meta, prep)
        return {"test_metrics": test_metrics, "artifacts": artifacts}

    def lr_range_test(
        self, params: Mapping[str, Any] | None = None, seed: int = 0, **options: Any
    ) -> RangeTest:
        """The LR range test (:func:`~tunelab.nn.range_test`) on this objective's training
        split, with the network, optimizer, loss and batch size of a configuration: ``params``
        over ``fixed`` over the defaults. ``options`` go to the test (start, end, steps, mode...).

        With the linear scaling rule on (``reference_batch``), the test runs at the reference
        batch size, so its suggestion is the configuration's ``lr`` as the rule reads it.
        """
        config, given = self.resolver.resolve(params or {})
        splits, fold = self._data()
        dataset = splits.dataset
        prep = self.provider.preprocessing().fit(fold.train)
        model = self.factory.build(config, given, dataset.shape, dataset.n_outputs, seed)
        knobs = {name: config[name] for name in (*_OPTIMIZER_OPTIONS, *_LOSS_OPTIONS)}
        return range_test(
            model,
            prep.transform_split(fold.train),
            task=dataset.task,
            optimizer=config["optimizer"],
            batch_size=config["reference_batch"] or config["batch_size"],
            loss=config["loss"],
            target_scaler=prep.target_ if dataset.task != CLASSIFICATION else None,
            seed=seed,
            device=self.device,
            **{**knobs, **options},
        )

    def _runner(self) -> TrialRunner:
        return TrialRunner(self.provider, self.factory, self.device, self.callbacks)

    def _data(self) -> tuple[Splits, Fold]:
        """The splits and their first fold (a holdout's only one: the LR range test and the
        replay of early stopping train on it); the model must take the data's shape."""
        splits = self.provider.splits()
        self.factory.check_input_shape(splits.dataset.shape)
        return splits, splits.folds[0]

    def _check_config_monitor(self, config: Mapping[str, Any], params: Mapping[str, Any]) -> None:
        if config["patience"] is not None:
            section = "space" if "monitor" in params else "fixed"
            self._check_monitor(f"{section}.monitor", config["monitor"])

    def _check_monitor(self, field: str, monitor: Any) -> None:
        known = self.metric_names()
        if monitor not in known:
            raise SpecError(
                field, f"{monitor!r} is not reported; early stopping can watch {', '.join(known)}"
            )


def load_model(
    out_dir: str | Path, builder: ModelBuilder | None = None, trust_code: bool = False
) -> tuple[nn.Module, Preprocessing, dict[str, Any]]:
    """Rebuild a model saved by :meth:`NetworkObjective.final_fit`, ready for inference.

    A saved builtin model (mlp, cnn1d, cnn2d) loads from its files alone. A model of your own
    needs its builder: pass it, or let ``model.json`` name it with ``trust_code=True``: importing
    what a file names runs that code, so it never happens unasked (a folder from elsewhere must
    not be able to run code by being loaded). A relative ``file.py:function`` is a file in
    ``out_dir`` (``tunelab export`` copies the builder there, so the folder can move).

    Args:
        out_dir: the folder :meth:`~NetworkObjective.final_fit` saved to.
        builder: your own model's builder (``build_model(params, input_shape, n_outputs)``).
        trust_code: import the builder ``model.json`` names (a module or file path).

    Raises:
        TunelabError: for a model of your own given neither ``builder`` nor ``trust_code``.

    Returns:
        ``(model, preprocessing, meta)``: the network in eval mode on the CPU; the preprocessing
        that turns raw feature rows into its inputs (and regression outputs back into the
        target's units); and ``model.json``'s contents (classes, task, config, ...).

    Example:
        >>> model, prep, meta = load_model("runs/best")  # doctest: +SKIP
        >>> logits = model(torch.from_numpy(prep.transform(X_raw)))  # doctest: +SKIP
    """
    out_dir = Path(out_dir)
    meta = json.loads((out_dir / ARCHITECTURE_FILE).read_text())
    prep = Preprocessing.from_dict(json.loads((out_dir / PREPROCESSING_FILE).read_text()))
    if builder is None or is_builtin(meta["model"]):
        if not is_builtin(meta["model"]) and not trust_code:
            raise TunelabError(
                f"{out_dir / ARCHITECTURE_FILE} names code to import ({meta['model']}); pass "
                "builder=your_build_function, or trust_code=True (tunelab predict --trust-code) "
                "if you trust this folder (importing it runs that code)"
            )
        builder = meta["model"]
    model = ModelFactory(builder, out_dir).architecture(
        meta["config"], meta["params"], tuple(meta["input_shape"]), meta["n_outputs"]
    )
    state = torch.load(out_dir / WEIGHTS_FILE, map_location="cpu", weights_only=True)
    model.load_state_dict(state)
    return model.eval(), prep, meta


def _save(
    out_dir: Path, model: nn.Module, meta: dict[str, Any], prep: Preprocessing
) -> dict[str, str]:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {name: out_dir / name for name in (WEIGHTS_FILE, ARCHITECTURE_FILE, PREPROCESSING_FILE)}
    torch.save(model.cpu().state_dict(), paths[WEIGHTS_FILE])
    paths[ARCHITECTURE_FILE].write_text(json.dumps(meta, indent=2))
    paths[PREPROCESSING_FILE].write_text(json.dumps(prep.to_dict()))
    return {name: str(path) for name, path in paths.items()}
