"""A trial's configuration: the model's defaults, overridden by ``fixed``, overridden by the trial's
parameters; and the checks that run on ``fixed`` and the search space before any trial does.

Why check before the search: a value the trainer refuses (``epochs: 0``, ``dropout: 1.0``) fails
every trial that meets it, minutes into a run, and leaves a stored study of failures behind.
Every fixed value and every bound and choice of the space is checked here against the limits
of the code that takes it (:func:`~tunelab.nn.make_optimizer`, :func:`~tunelab.nn.make_schedule`,
:func:`~tunelab.nn.make_loss`, :func:`~tunelab.nn.build_mlp`, :func:`~tunelab.nn.build_cnn`, the
:class:`~tunelab.nn.Trainer`), and a mistake is one line naming the field and the fix.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import numpy as np

from tunelab.errors import SpecError
from tunelab.nn.initializers import INITIALIZERS
from tunelab.nn.models import ACTIVATIONS, POOLINGS, ModelBuilder
from tunelab.nn.optimizers import LOSSES, OPTIMIZERS
from tunelab.nn.schedules import SCHEDULES
from tunelab.nn.train import TRAINING_DEFAULTS
from tunelab.space import Categorical, Float, Space

__all__ = ["MODELS", "ConfigResolver", "hyperparameters"]

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

#: ``units_<i>`` / ``channels_<i>``: the width of layer ``i`` alone.
PER_LAYER = re.compile(r"(units|channels)_([1-9][0-9]*)")

# names whose values come from a fixed list: tunelab's own training knobs for every model, the
# architecture's for the builtin ones (your builder owns its names)
_TRAINING_CHOICES: Mapping[str, Iterable[str]] = {
    "optimizer": OPTIMIZERS,
    "schedule": SCHEDULES,
    "init": INITIALIZERS,
    "loss": [name for names in LOSSES.values() for name in names],
}
_ARCHITECTURE_CHOICES: Mapping[str, Iterable[str]] = {"activation": ACTIVATIONS, "pool": POOLINGS}


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
        raise SpecError("model", unknown_model_message(model))
    return {**MODELS[model], **TRAINING_DEFAULTS, **_EXTRA_DEFAULTS}


def is_builtin(model: str | ModelBuilder) -> bool:
    """Whether ``model`` names one of :data:`MODELS` (else it is a builder of your own)."""
    return isinstance(model, str) and model in MODELS


def unknown_model_message(model: Any) -> str:
    close = difflib.get_close_matches(str(model), MODELS, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return (
        f"unknown model {model!r}; {hint}builtins: {', '.join(MODELS)}; or your own builder as "
        "'package.module:function' or 'path/to/file.py:function'"
    )


@dataclass(frozen=True)
class _Limits:
    """The values one numeric or true/false knob takes (bounds open or closed; null or not)."""

    kind: str  # "int", "float" or "bool"
    low: float | None = None
    high: float | None = None
    open_low: bool = False
    open_high: bool = False
    nullable: bool = False

    def expected(self) -> str:
        if self.kind == "bool":
            text = "true or false"
        else:
            text = "an integer" if self.kind == "int" else "a number"
            if self.low is not None and self.high is not None:
                left, right = "(" if self.open_low else "[", ")" if self.open_high else "]"
                text += f" in {left}{self.low:g}, {self.high:g}{right}"
            elif self.low is not None:
                text += f" {'>' if self.open_low else '>='} {self.low:g}"
        return text + (" or null" if self.nullable else "")

    def problem(self, value: Any) -> str | None:
        """None when ``value`` is allowed, else what is wrong: ``type``, ``low`` or ``high``."""
        if value is None:
            return None if self.nullable else "type"
        if self.kind == "bool" or isinstance(value, bool):
            return None if self.kind == "bool" and isinstance(value, bool) else "type"
        wanted = int if self.kind == "int" else (int, float)
        if not isinstance(value, wanted) or not math.isfinite(value):
            return "type"
        if self.low is not None and (value < self.low or (self.open_low and value == self.low)):
            return "low"
        if self.high is not None and (value > self.high or (self.open_high and value == self.high)):
            return "high"
        return None

    def fix(self, problem: str, value: Any, target: str = "it") -> str:
        """How to mend ``value``, which is ``target`` (a fixed value, a bound, a choice)."""
        if problem == "low":
            return f"raise {target} {'above' if self.open_low else 'to'} {self.low:g}"
        if problem == "high":
            return f"lower {target} {'below' if self.open_high else 'to'} {self.high:g}"
        if isinstance(value, str) and _is_number(value):
            plain = np.format_float_positional(float(value), trim="-")
            return f"YAML reads {value} as text; write {plain}"
        if self.kind == "int" and isinstance(value, float) and value.is_integer():
            return f"write {int(value)}"
        return f"give {self.expected()}"


def _int(low: int, nullable: bool = False) -> _Limits:
    return _Limits("int", low, nullable=nullable)


def _fraction(open_high: bool = True, nullable: bool = False) -> _Limits:
    return _Limits("float", 0.0, 1.0, open_high=open_high, nullable=nullable)


def _at_least(low: float, open_low: bool = False, nullable: bool = False) -> _Limits:
    return _Limits("float", low, open_low=open_low, nullable=nullable)


_BOOL = _Limits("bool")
_POSITIVE = _at_least(0.0, open_low=True)

# the limits of tunelab's training knobs, as the code that takes each one checks it (Trainer,
# make_optimizer and torch's optimizers, make_schedule, make_loss, init_weights, EarlyStopping)
_TRAINING_LIMITS: Mapping[str, _Limits] = {
    "epochs": _int(1),
    "batch_size": _int(1),
    "lr": _POSITIVE,  # torch takes 0, but a rate of 0 never moves the weights
    "reference_batch": _int(1, nullable=True),
    "momentum": _fraction(open_high=False),
    "nesterov": _BOOL,
    "weight_decay": _at_least(0.0, nullable=True),
    "beta1": _fraction(nullable=True),
    "beta2": _fraction(nullable=True),
    "eps": _at_least(0.0, nullable=True),
    "rho": _fraction(open_high=False, nullable=True),
    "step_size": _int(1),
    "gamma": _POSITIVE,
    "decay": _at_least(0.0),
    "min_lr": _at_least(0.0),
    "T_0": _int(1),
    "T_mult": _int(1),
    "cycle_epochs": _POSITIVE,
    "pct_start": _Limits("float", 0.0, 1.0, open_low=True, open_high=True),
    "warmup_epochs": _int(0),
    "label_smoothing": _fraction(),
    "huber_delta": _POSITIVE,
    "init_scale": _POSITIVE,
    "patience": _int(0, nullable=True),
    "min_delta": _at_least(0.0),
    "restore_best_weights": _BOOL,
}
# the builtin architectures' (build_mlp, build_cnn); n_layers=0 is a linear model or head
_ARCHITECTURE_LIMITS: Mapping[str, _Limits] = {
    "n_layers": _int(0),
    "units": _int(1),
    "dropout": _fraction(),
    "batch_norm": _BOOL,
    "conv_layers": _int(1),
    "channels": _int(1),
    "kernel_size": _int(1),
}


class ConfigResolver:
    """Resolves a trial's configuration, and checks ``fixed`` and the search space before a search.

    A configuration is the model's defaults (:func:`hyperparameters`), overridden by ``fixed``,
    overridden by the trial's parameters. A builtin model knows every name it takes, so a typo
    is named with the closest known name; a builder of your own takes any names, and only
    tunelab's training knobs are checked.

    Args:
        model: a name from :data:`MODELS`, or your builder (as a function or an import path).
        fixed: the hyperparameters held constant across trials.

    Example:
        >>> resolver = ConfigResolver("mlp", fixed={"epochs": 5})
        >>> config, given = resolver.resolve({"lr": 0.01})
        >>> config["epochs"], config["lr"], config["units"], given
        (5, 0.01, 64, {'epochs': 5, 'lr': 0.01})
        >>> ConfigResolver(fixed={"epochs": 0}).check(Space({"lr": Float(1e-4, 0.1, log=True)}))
        Traceback (most recent call last):
        ...
        tunelab.errors.SpecError: fixed.epochs: must be an integer >= 1, got 0; raise it to 1
    """

    def __init__(
        self, model: str | ModelBuilder = "mlp", fixed: Mapping[str, Any] | None = None
    ) -> None:
        self.model = model
        self.fixed = fixed

    def defaults(self) -> dict[str, Any]:
        """Every name the model takes, with its default (tunelab's knobs only, for a builder)."""
        if is_builtin(self.model):
            return hyperparameters(str(self.model))
        return {**TRAINING_DEFAULTS, **_EXTRA_DEFAULTS}

    def resolve(self, params: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        """The full configuration of a trial, and the parameters given (fixed, then the trial's).

        Raises:
            SpecError: on ``fixed.<name>`` or ``space.<name>`` for an unknown name or choice.
        """
        fixed = self.fixed or {}
        if is_builtin(self.model):
            self._check_known("fixed", fixed)
            self._check_known("space", params)
        for section, values in (("fixed", fixed), ("space", params)):
            for name, value in values.items():
                self._check_choice(f"{section}.{name}", name, value)
        given = {**fixed, **params}
        return {**self.defaults(), **given}, given

    def check_names(self, names: Iterable[str]) -> None:
        """Fail when a builtin model is given a name that is not its own (in ``fixed`` or among
        ``names``, the searched ones), or a fixed value is not one of its knob's choices.

        Raises:
            SpecError: on ``space.<name>`` or ``fixed.<name>``.
        """
        fixed = self.fixed or {}
        if is_builtin(self.model):
            self._check_known("fixed", fixed)
            self._check_known("space", [name for name in names if name not in fixed])
        for name, value in fixed.items():
            self._check_choice(f"fixed.{name}", name, value)

    def check(self, space: Space | None = None) -> None:
        """Check the names, and every value a trial can get: each fixed value, each bound of a
        range and each choice of the space (when there is one: a lone configuration, such as a
        scikit-learn estimator's, has none), against what the trainer and the builders take.

        Raises:
            SpecError: on ``fixed.<name>``, ``space.<name>``, ``space.<name>.low`` / ``.high``
                or ``space.<name>.choices``, naming the limit and the fix.
        """
        space = space or {}
        self.check_names(space)
        for name, value in (self.fixed or {}).items():
            self._check_value(f"fixed.{name}", name, value)
        for name, param in space.items():
            if isinstance(param, Categorical):
                for choice in param.choices:
                    self._check_choice(f"space.{name}.choices", name, choice)
                    self._check_value(f"space.{name}.choices", name, choice)
            else:
                self._check_range(name, param)

    def candidates(self, space: Space, name: str) -> list[tuple[str, Any]]:
        """Every value ``name`` can take that is not a number from a range, with its field:
        the fixed value, or each of the space's choices."""
        found = []
        if name in (self.fixed or {}):
            found.append((f"fixed.{name}", self.fixed[name]))
        if isinstance(space.get(name), Categorical):
            found += [(f"space.{name}.choices", choice) for choice in space[name].choices]
        return found

    def _limits(self, name: str) -> _Limits | None:
        if name in _TRAINING_LIMITS:
            return _TRAINING_LIMITS[name]
        if not is_builtin(self.model):
            return None  # your builder's own names mean what it says
        match = PER_LAYER.fullmatch(name)
        return _ARCHITECTURE_LIMITS.get(match.group(1) if match else name)

    def _check_value(self, field: str, name: str, value: Any) -> None:
        limits = self._limits(name)
        problem = limits and limits.problem(value)
        if problem:
            raise SpecError(
                field, f"must be {limits.expected()}, got {value!r}; {limits.fix(problem, value)}"
            )

    def _check_range(self, name: str, param: Any) -> None:
        if self._choices(name):
            raise SpecError(
                f"space.{name}",
                f"takes one of {', '.join(self._choices(name))}, not a number; "
                "use type: categorical with choices",
            )
        limits = self._limits(name)
        if limits is None:
            return
        if limits.kind == "bool":
            raise SpecError(
                f"space.{name}",
                "must be true or false, not a number; use type: categorical, "
                "choices: [true, false]",
            )
        if limits.kind == "int" and isinstance(param, Float):
            raise SpecError(
                f"space.{name}",
                f"must be {limits.expected()}, but a float range gives fractions; use type: int",
            )
        for bound in ("low", "high"):
            value = getattr(param, bound)
            value = int(value) if limits.kind == "int" else value
            problem = limits.problem(value)
            if problem:
                raise SpecError(
                    f"space.{name}.{bound}",
                    f"must be {limits.expected()}, got {value!r}; "
                    f"{limits.fix(problem, value, 'the bound')}",
                )

    def _choices(self, name: str) -> list[str]:
        choices = {**_TRAINING_CHOICES, **(_ARCHITECTURE_CHOICES if is_builtin(self.model) else {})}
        return list(choices.get(name, ()))

    def _check_choice(self, field: str, name: str, value: Any) -> None:
        known = self._choices(name)
        if value is None and name in self.defaults() and self.defaults()[name] is None:
            return  # the default itself, given explicitly (loss: null, the task's own loss)
        if known and value not in known:
            close = difflib.get_close_matches(str(value), known, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise SpecError(field, f"unknown {name} {value!r}; {hint}known: {', '.join(known)}")

    def _check_known(self, section: str, names: Iterable[str]) -> None:
        known = self.defaults()
        for name in names:
            match = PER_LAYER.fullmatch(name)
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


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
