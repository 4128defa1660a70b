"""The built-in objective: train a network on a data set with one trial's hyperparameters.

:class:`NetworkObjective` is what a spec's ``model`` and ``data`` sections become. It is a plain,
picklable object (executors send it to worker processes), loads its data lazily once per process,
and after the search retrains the best configuration for an honest score on the untouched test
split.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np
import torch
from torch import nn

from tunelab.errors import SpecError
from tunelab.nn.data import Dataset, Split, Standardizer, load_dataset, split_dataset
from tunelab.nn.models import build_mlp
from tunelab.nn.train import METRICS, evaluate, fit, seed_everything
from tunelab.trial import Trial

__all__ = ["HYPERPARAMETERS", "MODELS", "NetworkObjective", "load_model"]

MODELS = ("mlp",)

HYPERPARAMETERS: Mapping[str, Any] = MappingProxyType(
    {
        "lr": 1e-3,
        "n_layers": 2,
        "units": 64,
        "activation": "relu",
        "dropout": 0.0,
        "optimizer": "adam",
        "momentum": 0.0,
        "weight_decay": 0.0,
        "batch_size": 32,
        "epochs": 20,
    }
)

_ARCHITECTURE = ("n_layers", "units", "activation", "dropout")
_TRAINING = ("epochs", "batch_size", "lr", "optimizer", "momentum", "weight_decay")

WEIGHTS_FILE = "model.pt"
ARCHITECTURE_FILE = "model.json"
PREPROCESSING_FILE = "preprocessing.json"


@dataclass(frozen=True)
class _Splits:
    dataset: Dataset
    train: Split
    val: Split
    test: Split


class NetworkObjective:
    """Train a network per trial and return its last epoch's metrics.

    The configuration of a trial is the model's defaults (:data:`HYPERPARAMETERS`), overridden by
    ``fixed``, overridden by the trial's parameters. Features are standardised with training
    statistics only; the test split is never touched until :meth:`final_fit`.

    Args:
        data: the spec's data section: ``source``, and optionally ``target``, ``task``,
            ``base_dir``, ``test_size`` (default 0.2) and ``holdout`` (default 0.2, a fraction of
            what remains after the test split).
        model: the architecture; only ``"mlp"`` for now.
        fixed: hyperparameters held constant across trials (``{"epochs": 10}``, say).
        device: ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
        split_seed: seeds the train/validation/test split, the same for every trial.

    Example:
        >>> objective = NetworkObjective({"source": "iris"}, fixed={"epochs": 2})
        >>> objective.check_names(["lr", "units"])
    """

    def __init__(
        self,
        data: Mapping[str, Any],
        model: str = "mlp",
        fixed: Mapping[str, Any] | None = None,
        device: str = "auto",
        split_seed: int = 0,
    ) -> None:
        self.data = data
        self.model = model
        self.fixed = fixed
        self.device = device
        self.split_seed = split_seed
        self._splits: _Splits | None = None

    def __getstate__(self) -> dict[str, Any]:
        # Workers reload the data themselves: shipping arrays with every trial costs more.
        return {**self.__dict__, "_splits": None}

    def check_names(self, names: Iterable[str]) -> None:
        """Fail before any training when the model is unknown or a parameter name is not its own.

        Raises:
            SpecError: on ``model``, or on ``space.<name>`` for the first unknown name.
        """
        self._check_model()
        _check_known("space", names)

    def metric_names(self) -> list[str]:
        """The metrics each trial reports, so a spec's metric can be checked before the search.

        Loads the data (the task decides the metrics), so a missing file or column fails here.
        """
        task = self._loaded().dataset.task
        return ["train_loss", *(f"val_{name}" for name in METRICS[task])]

    def __call__(self, trial: Trial) -> dict[str, float]:
        """Train with ``trial.params``, report every epoch, stop when the scheduler says so."""
        config = self._config(trial.params)
        seed_everything(trial.seed)
        splits = self._loaded()
        scaler = Standardizer().fit(splits.train.X)
        model = _build(config, splits.dataset.X.shape[1], splits.dataset.n_outputs)

        def on_epoch_end(epoch: int, logs: dict[str, float]) -> bool:
            trial.report(epoch, **logs)
            return trial.should_stop()

        history = fit(
            model,
            _scaled(splits.train, scaler),
            _scaled(splits.val, scaler),
            task=splits.dataset.task,
            seed=trial.seed,
            device=self.device,
            on_epoch_end=on_epoch_end,
            **{name: config[name] for name in _TRAINING},
        )
        return history[-1]

    def final_fit(
        self,
        params: Mapping[str, Any],
        seed: int,
        out_dir: Path,
        epochs: int | None = None,
    ) -> dict[str, Any]:
        """Retrain a configuration on train + validation, score it once on test, and save it.

        Args:
            params: the chosen hyperparameters (usually the best trial's).
            seed: seeds the weights, batch order and dropout.
            out_dir: where ``model.pt``, ``model.json`` and ``preprocessing.json`` go.
            epochs: how long to train; default the configuration's ``epochs``.

        Returns:
            ``{"test_metrics": {"test_loss": ..., ...}, "artifacts": {file name: path}}``.
        """
        config = self._config(params)
        if epochs is not None:
            config["epochs"] = epochs
        seed_everything(seed)
        splits = self._loaded()
        dataset = splits.dataset
        train_val = Split(
            np.concatenate([splits.train.X, splits.val.X]),
            np.concatenate([splits.train.y, splits.val.y]),
        )
        scaler = Standardizer().fit(train_val.X)
        model = _build(config, dataset.X.shape[1], dataset.n_outputs)
        fit(
            model,
            _scaled(train_val, scaler),
            None,
            task=dataset.task,
            seed=seed,
            device=self.device,
            **{name: config[name] for name in _TRAINING},
        )
        test = _scaled(splits.test, scaler)
        test_metrics = evaluate(model, test, dataset.task, self.device, prefix="test")
        meta = {
            "model": self.model,
            "n_inputs": dataset.X.shape[1],
            "n_outputs": dataset.n_outputs,
            "config": config,
            "task": dataset.task,
            "classes": dataset.classes,
            "feature_names": dataset.feature_names,
            "dataset": dataset.name,
            "seed": seed,
        }
        artifacts = _save(Path(out_dir), model, meta, scaler)
        return {"test_metrics": test_metrics, "artifacts": artifacts}

    def _check_model(self) -> None:
        if self.model not in MODELS:
            raise SpecError("model", f"unknown model {self.model!r}; known: {', '.join(MODELS)}")

    def _config(self, params: Mapping[str, Any]) -> dict[str, Any]:
        self._check_model()
        fixed = self.fixed or {}
        _check_known("fixed", fixed)
        _check_known("space", params)
        return {**HYPERPARAMETERS, **fixed, **params}

    def _loaded(self) -> _Splits:
        if self._splits is None:
            dataset = load_dataset(
                self.data["source"],
                target=self.data.get("target"),
                base_dir=self.data.get("base_dir"),
                task=self.data.get("task"),
            )
            train, val, test = split_dataset(
                dataset,
                test_size=self.data.get("test_size", 0.2),
                holdout=self.data.get("holdout", 0.2),
                seed=self.split_seed,
            )
            self._splits = _Splits(dataset, train, val, test)
        return self._splits


def load_model(out_dir: Path) -> tuple[nn.Module, Standardizer, dict[str, Any]]:
    """Rebuild a model saved by :meth:`NetworkObjective.final_fit`, ready for inference.

    Returns:
        ``(model, standardizer, meta)``: the network in eval mode on the CPU, the preprocessing to
        apply to raw features first, and ``model.json``'s contents (classes, task, config, ...).

    Example:
        >>> model, scaler, meta = load_model("runs/best")  # doctest: +SKIP
        >>> logits = model(torch.from_numpy(scaler.transform(X_raw)))  # doctest: +SKIP
    """
    out_dir = Path(out_dir)
    meta = json.loads((out_dir / ARCHITECTURE_FILE).read_text())
    scaler = Standardizer.from_dict(json.loads((out_dir / PREPROCESSING_FILE).read_text()))
    model = _build(meta["config"], meta["n_inputs"], meta["n_outputs"])
    state = torch.load(out_dir / WEIGHTS_FILE, map_location="cpu", weights_only=True)
    model.load_state_dict(state)
    return model.eval(), scaler, meta


def _check_known(section: str, names: Iterable[str]) -> None:
    for name in names:
        if name not in HYPERPARAMETERS:
            close = difflib.get_close_matches(name, HYPERPARAMETERS, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            known = ", ".join(HYPERPARAMETERS)
            raise SpecError(
                f"{section}.{name}", f"unknown hyperparameter for model 'mlp'; {hint}known: {known}"
            )


def _build(config: Mapping[str, Any], n_inputs: int, n_outputs: int) -> nn.Sequential:
    return build_mlp(n_inputs, n_outputs, **{name: config[name] for name in _ARCHITECTURE})


def _scaled(split: Split, scaler: Standardizer) -> Split:
    return Split(scaler.transform(split.X), split.y)


def _save(
    out_dir: Path, model: nn.Module, meta: dict[str, Any], scaler: Standardizer
) -> dict[str, str]:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {name: out_dir / name for name in (WEIGHTS_FILE, ARCHITECTURE_FILE, PREPROCESSING_FILE)}
    torch.save(model.cpu().state_dict(), paths[WEIGHTS_FILE])
    paths[ARCHITECTURE_FILE].write_text(json.dumps(meta, indent=2))
    paths[PREPROCESSING_FILE].write_text(json.dumps(scaler.to_dict()))
    return {name: str(path) for name, path in paths.items()}
