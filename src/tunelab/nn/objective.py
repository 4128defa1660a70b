"""The built-in objective: train a network on a data set with one trial's hyperparameters.

:class:`NetworkObjective` is what a spec's ``model`` and ``data`` sections become. It is a plain,
picklable object (executors send it to worker processes), loads its data lazily once per process,
and after the search retrains the best configuration for an honest score on the untouched test
split.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np
import torch
from torch import nn

from tunelab.errors import SpecError
from tunelab.nn.callbacks import Callback, EarlyStopping, TrialReporter
from tunelab.nn.data import (
    CLASSIFICATION,
    Dataset,
    Preprocessing,
    Split,
    load_dataset,
    split_dataset,
)
from tunelab.nn.initializers import INITIALIZERS, init_weights
from tunelab.nn.metrics import METRICS
from tunelab.nn.models import (
    ACTIVATIONS,
    POOLINGS,
    ModelBuilder,
    build_cnn,
    build_mlp,
    builder_path,
    import_builder,
)
from tunelab.nn.optimizers import LOSSES, OPTIMIZERS, make_loss
from tunelab.nn.schedules import SCHEDULES
from tunelab.nn.train import TRAINING_DEFAULTS, evaluate, fit, seed_everything
from tunelab.trial import Trial

__all__ = ["MODELS", "NetworkObjective", "hyperparameters", "load_model"]

_DENSE = {"n_layers": 2, "units": 64, "activation": "relu", "dropout": 0.0, "batch_norm": False}
_CNN = {"conv_layers": 2, "channels": 32, "kernel_size": 3, "pool": "max", **_DENSE, "n_layers": 1}

#: The builtin architectures and their hyperparameters' defaults. ``units_<i>`` (and, for the
#: CNNs, ``channels_<i>``) set the width of layer ``i`` alone, counted from 1.
MODELS: Mapping[str, Mapping[str, Any]] = MappingProxyType(
    {
        "mlp": MappingProxyType(_DENSE),
        "cnn1d": MappingProxyType(_CNN),
        "cnn2d": MappingProxyType(_CNN),
    }
)

#: Knobs every model takes besides its architecture and :data:`~tunelab.nn.TRAINING_DEFAULTS`:
#: the weight initialisation, and early stopping (off while ``patience`` is None).
_EXTRA_DEFAULTS = {
    "init": "default",
    "init_scale": 0.05,
    "patience": None,
    "monitor": "val_loss",
    "min_delta": 0.0,
    "restore_best_weights": True,
}

# names whose values come from a fixed list, checked before any training: tunelab's own training
# knobs for every model, the architecture's for the builtin ones (your builder owns its names)
_TRAINING_CHOICES: Mapping[str, Iterable[str]] = {
    "optimizer": OPTIMIZERS,
    "schedule": SCHEDULES,
    "init": INITIALIZERS,
    "loss": [name for names in LOSSES.values() for name in names],
}
_ARCHITECTURE_CHOICES: Mapping[str, Iterable[str]] = {"activation": ACTIVATIONS, "pool": POOLINGS}
_PER_LAYER = re.compile(r"(units|channels)_([1-9][0-9]*)")

WEIGHTS_FILE = "model.pt"
ARCHITECTURE_FILE = "model.json"
PREPROCESSING_FILE = "preprocessing.json"


def hyperparameters(model: str = "mlp") -> dict[str, Any]:
    """Every hyperparameter a builtin model takes, with its default.

    Example:
        >>> defaults = hyperparameters("cnn1d")
        >>> defaults["conv_layers"], defaults["lr"], defaults["schedule"], defaults["init"]
        (2, 0.001, 'constant', 'default')

    Raises:
        SpecError: on ``model`` for a name not in :data:`MODELS`.
    """
    if model not in MODELS:
        raise SpecError("model", _unknown_model_message(model))
    return {**MODELS[model], **TRAINING_DEFAULTS, **_EXTRA_DEFAULTS}


@dataclass(frozen=True)
class _Splits:
    dataset: Dataset
    train: Split
    val: Split
    test: Split


class NetworkObjective:
    """Train a network per trial and return its metrics (of the best epoch, when early stopping
    restores the best weights; else of the last).

    The configuration of a trial is the model's defaults (:func:`hyperparameters`), overridden by
    ``fixed``, overridden by the trial's parameters. Features (and regression targets) are scaled
    with training statistics only; the test split is never touched until :meth:`final_fit`.

    Args:
        data: the spec's data section: ``source``, and optionally ``target``, ``task``,
            ``base_dir``, ``test_size`` (default 0.2), ``holdout`` (default 0.2, a fraction of
            what remains after the test split), ``scaling`` (``standard``, ``minmax``, ``none``),
            ``target_scaling`` (regression; default ``standard``) and ``shape`` (one sample's
            shape as a network input, e.g. ``[1, 8, 8]``).
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

    Example:
        >>> objective = NetworkObjective({"source": "iris"}, fixed={"epochs": 2})
        >>> objective.check_names(["lr", "units"])
    """

    def __init__(
        self,
        data: Mapping[str, Any],
        model: str | ModelBuilder = "mlp",
        fixed: Mapping[str, Any] | None = None,
        device: str = "auto",
        split_seed: int = 0,
        callbacks: Sequence[Callback] = (),
    ) -> None:
        self.data = data
        self.model = model
        self.fixed = fixed
        self.device = device
        self.split_seed = split_seed
        self.callbacks = callbacks
        self._splits: _Splits | None = None

    def __getstate__(self) -> dict[str, Any]:
        # Workers reload the data themselves: shipping arrays with every trial costs more.
        return {**self.__dict__, "_splits": None}

    def check_names(self, names: Iterable[str]) -> None:
        """Fail before any training when the model is unknown, a builtin model is given a
        parameter name that is not its own, or a fixed value is not one tunelab knows.

        Raises:
            SpecError: on ``model``, or on ``space.<name>`` / ``fixed.<name>``.
        """
        fixed = self.fixed or {}
        self._builder()
        if self._builtin():
            self._check_known("fixed", fixed)
            self._check_known("space", [name for name in names if name not in fixed])
        self._check_choices("fixed", fixed)

    def metric_names(self) -> list[str]:
        """The metrics each trial reports, so a spec's metric can be checked before the search.

        Loads the data (the task decides the metrics), so a missing file or column fails here.
        """
        task = self._loaded().dataset.task
        return ["train_loss", "lr", *(f"val_{name}" for name in METRICS[task])]

    def __call__(self, trial: Trial) -> dict[str, float]:
        """Train with ``trial.params``, report every epoch, stop when the scheduler says so."""
        config, params = self._config(trial.params)
        splits = self._loaded()
        self._check_monitor(config, trial.params)
        reporter = TrialReporter(trial)
        history, stopper = self._train(
            config, params, trial.seed, splits.train, splits.val, [*self.callbacks, reporter]
        )
        if stopper is not None and stopper.restore_best_weights and stopper.best_epoch_:
            return history[stopper.best_epoch_ - 1]
        return history[-1]

    def final_fit(
        self,
        params: Mapping[str, Any],
        seed: int,
        out_dir: Path,
        epochs: int | None = None,
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

        Returns:
            ``{"test_metrics": {"test_loss": ..., ...}, "artifacts": {file name: path}}``.
        """
        config, user_params = self._config(params)
        splits = self._loaded()
        dataset = splits.dataset
        if epochs is None and config["patience"] is not None:
            self._check_monitor(config, params)
            history, stopper = self._train(config, user_params, seed, splits.train, splits.val)
            kept = stopper.best_epoch_ if config["restore_best_weights"] else len(history)
            epochs = kept or len(history)
        if epochs is not None:
            config["epochs"] = epochs
        train_val = Split(
            np.concatenate([splits.train.X, splits.val.X]),
            np.concatenate([splits.train.y, splits.val.y]),
        )
        model, prep, _ = self._fit_model(config, user_params, seed, train_val)
        loss_fn = make_loss(
            dataset.task,
            config["loss"],
            label_smoothing=config["label_smoothing"],
            huber_delta=config["huber_delta"],
        )
        test_metrics = evaluate(
            model,
            prep.transform_split(splits.test),
            dataset.task,
            self.device,
            "test",
            loss_fn,
            self._target_scaler(prep, dataset),
        )
        meta = {
            "model": self.model if isinstance(self.model, str) else builder_path(self.model),
            "input_shape": list(dataset.shape),
            "n_outputs": dataset.n_outputs,
            "config": config,
            "params": user_params,
            "task": dataset.task,
            "classes": dataset.classes,
            "feature_names": dataset.feature_names,
            "dataset": dataset.name,
            "seed": seed,
        }
        artifacts = _save(Path(out_dir), model, meta, prep)
        return {"test_metrics": test_metrics, "artifacts": artifacts}

    # -- training ----------------------------------------------------------------------------

    def _train(
        self,
        config: Mapping[str, Any],
        params: Mapping[str, Any],
        seed: int,
        train: Split,
        val: Split,
        callbacks: Sequence[Callback] = (),
    ) -> tuple[list[dict[str, float]], EarlyStopping | None]:
        """A trial's training: train on ``train``, score on ``val``, stop early if configured."""
        stopper = None
        if config["patience"] is not None:
            stopper = EarlyStopping(
                config["monitor"],
                config["patience"],
                config["min_delta"],
                restore_best_weights=config["restore_best_weights"],
            )
        hooks = [stopper, *callbacks] if stopper is not None else list(callbacks)
        _, _, history = self._fit_model(config, params, seed, train, val, hooks)
        return history, stopper

    def _fit_model(
        self,
        config: Mapping[str, Any],
        params: Mapping[str, Any],
        seed: int,
        train: Split,
        val: Split | None = None,
        callbacks: Sequence[Callback] = (),
    ) -> tuple[nn.Module, Preprocessing, list[dict[str, float]]]:
        """Scale (with ``train``'s statistics), build, initialise and train a model."""
        dataset = self._loaded().dataset
        prep = self._preprocessing(dataset).fit(train)
        seed_everything(seed)
        model = self._build(config, params, dataset.shape, dataset.n_outputs)
        init_weights(model, config["init"], config.get("activation", "relu"), config["init_scale"])
        history = fit(
            model,
            prep.transform_split(train),
            None if val is None else prep.transform_split(val),
            task=dataset.task,
            callbacks=callbacks,
            target_scaler=self._target_scaler(prep, dataset),
            seed=seed,
            device=self.device,
            **{name: config[name] for name in TRAINING_DEFAULTS},
        )
        return model, prep, history

    def _build(
        self,
        config: Mapping[str, Any],
        params: Mapping[str, Any],
        input_shape: tuple[int, ...],
        n_outputs: int,
    ) -> nn.Module:
        if not self._builtin():
            model = self._builder()(dict(params), tuple(input_shape), n_outputs)
            if not isinstance(model, nn.Module):
                raise SpecError(
                    "model",
                    f"{self.model!r} returned {type(model).__name__}, not a torch nn.Module",
                )
            return model
        return _build_builtin(str(self.model), config, params, input_shape, n_outputs)

    def _preprocessing(self, dataset: Dataset) -> Preprocessing:
        target_scaling = self.data.get("target_scaling")
        if dataset.task == CLASSIFICATION:
            if target_scaling not in (None, "none"):
                raise SpecError(
                    "data.target_scaling",
                    f"scales regression targets, but {dataset.name} is a classification; "
                    "remove data.target_scaling",
                )
            target_scaling = "none"
        return Preprocessing(
            self.data.get("scaling", "standard"), dataset.shape, target_scaling or "standard"
        )

    @staticmethod
    def _target_scaler(prep: Preprocessing, dataset: Dataset) -> Any:
        return None if dataset.task == CLASSIFICATION else prep.target_

    # -- configuration -----------------------------------------------------------------------

    def _builtin(self) -> bool:
        return isinstance(self.model, str) and self.model in MODELS

    def _builder(self) -> Callable[..., Any] | None:
        if self._builtin():
            return None
        if callable(self.model):
            return self.model
        if not isinstance(self.model, str) or ":" not in self.model:
            raise SpecError("model", _unknown_model_message(self.model))
        path, _, function = self.model.rpartition(":")
        base = self.data.get("base_dir")
        if path.endswith(".py") and base is not None and not Path(path).is_absolute():
            return import_builder(f"{Path(base) / path}:{function}")
        return import_builder(self.model)

    def _defaults(self) -> dict[str, Any]:
        if self._builtin():
            return hyperparameters(str(self.model))
        return {**TRAINING_DEFAULTS, **_EXTRA_DEFAULTS}

    def _config(self, params: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        """The full configuration, and the parameters given (fixed, then the trial's)."""
        fixed = self.fixed or {}
        self._builder()
        if self._builtin():
            self._check_known("fixed", fixed)
            self._check_known("space", params)
        self._check_choices("fixed", fixed)
        self._check_choices("space", params)
        given = {**fixed, **params}
        return {**self._defaults(), **given}, given

    def _check_known(self, section: str, names: Iterable[str]) -> None:
        known = self._defaults()
        for name in names:
            match = _PER_LAYER.fullmatch(name)
            if name in known or (match and match.group(1) in known):
                continue
            close = difflib.get_close_matches(name, known, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            per_layer = (
                "units_<i> and channels_<i> set" if "channels" in known else "units_<i> sets"
            )
            raise SpecError(
                f"{section}.{name}",
                f"unknown hyperparameter for model {self.model!r}; {hint}known: "
                f"{', '.join(known)}; {per_layer} the width of layer i alone",
            )

    def _check_choices(self, section: str, values: Mapping[str, Any]) -> None:
        choices = {**_TRAINING_CHOICES, **(_ARCHITECTURE_CHOICES if self._builtin() else {})}
        for name, known in choices.items():
            if name in values and values[name] not in known:
                close = difflib.get_close_matches(str(values[name]), known, n=1)
                hint = f"did you mean {close[0]!r}? " if close else ""
                raise SpecError(
                    f"{section}.{name}",
                    f"unknown {name} {values[name]!r}; {hint}known: {', '.join(known)}",
                )

    def _check_monitor(self, config: Mapping[str, Any], params: Mapping[str, Any]) -> None:
        if config["patience"] is None:
            return
        known = self.metric_names()
        if config["monitor"] not in known:
            section = "space" if "monitor" in params else "fixed"
            raise SpecError(
                f"{section}.monitor",
                f"{config['monitor']!r} is not reported; early stopping can watch "
                f"{', '.join(known)}",
            )

    def _loaded(self) -> _Splits:
        if self._splits is None:
            dataset = load_dataset(
                self.data["source"],
                target=self.data.get("target"),
                base_dir=self.data.get("base_dir"),
                task=self.data.get("task"),
                shape=self.data.get("shape"),
            )
            train, val, test = split_dataset(
                dataset,
                test_size=self.data.get("test_size", 0.2),
                holdout=self.data.get("holdout", 0.2),
                seed=self.split_seed,
            )
            self._check_input_shape(dataset.shape)
            self._splits = _Splits(dataset, train, val, test)
        return self._splits

    def _check_input_shape(self, shape: tuple[int, ...]) -> None:
        """A CNN that cannot take the data's shape fails once, before the search, not per trial."""
        ranks = {"cnn1d": (1, 2), "cnn2d": (2, 3)}.get(str(self.model))
        if ranks is not None and len(shape) not in ranks:
            example = "[1, 40] for a sequence" if self.model == "cnn1d" else "[1, 8, 8] for images"
            raise SpecError(
                "data.shape",
                f"model {self.model!r} needs samples of {' or '.join(map(str, ranks))} dimensions, "
                f"but {list(shape)} has {len(shape)}; set data.shape, e.g. {example}",
            )


def load_model(
    out_dir: str | Path, builder: ModelBuilder | None = None
) -> tuple[nn.Module, Preprocessing, dict[str, Any]]:
    """Rebuild a model saved by :meth:`NetworkObjective.final_fit`, ready for inference.

    Args:
        out_dir: the folder :meth:`~NetworkObjective.final_fit` saved to.
        builder: your own model's builder, when the import path saved in ``model.json`` does not
            import here (a function from a notebook, say).

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
    shape, n_outputs = tuple(meta["input_shape"]), meta["n_outputs"]
    if meta["model"] in MODELS:
        model = _build_builtin(meta["model"], meta["config"], meta["params"], shape, n_outputs)
    else:
        model = (builder or import_builder(meta["model"]))(meta["params"], shape, n_outputs)
    state = torch.load(out_dir / WEIGHTS_FILE, map_location="cpu", weights_only=True)
    model.load_state_dict(state)
    return model.eval(), prep, meta


def _build_builtin(
    name: str,
    config: Mapping[str, Any],
    params: Mapping[str, Any],
    input_shape: tuple[int, ...],
    n_outputs: int,
) -> nn.Module:
    units = _per_layer(config, params, "units", "n_layers")
    dense = {
        "n_layers": config["n_layers"],
        "units": units,
        "activation": config["activation"],
        "dropout": config["dropout"],
        "batch_norm": config["batch_norm"],
    }
    if name == "mlp":
        return build_mlp(input_shape, n_outputs, **dense)
    return build_cnn(
        input_shape,
        n_outputs,
        conv_layers=config["conv_layers"],
        channels=_per_layer(config, params, "channels", "conv_layers"),
        kernel_size=config["kernel_size"],
        pool=config["pool"],
        dims=1 if name == "cnn1d" else 2,
        **dense,
    )


def _per_layer(
    config: Mapping[str, Any], params: Mapping[str, Any], name: str, count_name: str
) -> list[int]:
    """One width per layer: ``<name>_<i>`` where given, else ``<name>``."""
    count = config[count_name]
    for key in config:
        match = _PER_LAYER.fullmatch(key)
        if match and match.group(1) == name and int(match.group(2)) > count:
            index = int(match.group(2))
            section = "space" if key in params else "fixed"
            raise SpecError(
                f"{section}.{key}",
                f"is given but {count_name} is {count}; give it the condition "
                f"when: {{{count_name}: {{ge: {index}}}}}",
            )
    return [config.get(f"{name}_{i}", config[name]) for i in range(1, count + 1)]


def _unknown_model_message(model: Any) -> str:
    close = difflib.get_close_matches(str(model), MODELS, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return (
        f"unknown model {model!r}; {hint}builtins: {', '.join(MODELS)}; or your own builder as "
        "'package.module:function' or 'path/to/file.py:function'"
    )


def _save(
    out_dir: Path, model: nn.Module, meta: dict[str, Any], prep: Preprocessing
) -> dict[str, str]:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {name: out_dir / name for name in (WEIGHTS_FILE, ARCHITECTURE_FILE, PREPROCESSING_FILE)}
    torch.save(model.cpu().state_dict(), paths[WEIGHTS_FILE])
    paths[ARCHITECTURE_FILE].write_text(json.dumps(meta, indent=2))
    paths[PREPROCESSING_FILE].write_text(json.dumps(prep.to_dict()))
    return {name: str(path) for name, path in paths.items()}
