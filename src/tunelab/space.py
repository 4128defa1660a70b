"""Search spaces: typed parameters, conditions, and the unit-cube transform strategies share.

A :class:`Space` is an ordered mapping of names to parameters. Every strategy that samples or models
works in the unit cube ``[0, 1]^d``: :meth:`Space.decode` turns a point of the cube into a config
(log scale, integer rounding, steps and categories handled once, here), and :meth:`Space.encode`
goes back. A conditional parameter (``when``) whose condition is false is left out of the config;
a :class:`Ranged` parameter's range follows an earlier parameter's value.
"""

from __future__ import annotations

import itertools
import math
import operator
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from tunelab.errors import SpaceError

__all__ = [
    "Categorical",
    "Condition",
    "Float",
    "Int",
    "Param",
    "Ranged",
    "Space",
    "learned_space",
    "param_from_dict",
    "param_to_dict",
]

_OPERATORS = {
    "eq": operator.eq,
    "ne": operator.ne,
    "lt": operator.lt,
    "le": operator.le,
    "gt": operator.gt,
    "ge": operator.ge,
    "in": lambda value, allowed: value in allowed,
}


@dataclass(frozen=True)
class Condition:
    """``param <op> value``; a parameter is active when all of its conditions hold."""

    param: str
    op: str
    value: Any

    def holds(self, config: Mapping[str, Any]) -> bool:
        return self.param in config and _OPERATORS[self.op](config[self.param], self.value)


def _parse_when(name: str, when: Mapping[str, Any] | None) -> tuple[Condition, ...]:
    """``{optimizer: sgd}``, ``{optimizer: [sgd, rmsprop]}`` or ``{n_layers: {ge: 2}}``."""
    conditions = []
    for parent, rule in (when or {}).items():
        if isinstance(rule, Mapping):
            for op, value in rule.items():
                if op not in _OPERATORS:
                    raise SpaceError(
                        f"space.{name}.when.{parent}",
                        f"unknown comparison {op!r}; use one of {', '.join(_OPERATORS)}",
                    )
                conditions.append(Condition(parent, op, value))
        elif isinstance(rule, list | tuple):
            conditions.append(Condition(parent, "in", tuple(rule)))
        else:
            conditions.append(Condition(parent, "eq", rule))
    return tuple(conditions)


def _can_hold(parent: Param, cond: Condition) -> bool:
    """Whether some value of ``parent`` meets ``cond`` (a condition that never holds would leave
    its parameter out of every trial, silently)."""
    if isinstance(parent, Categorical) or getattr(parent, "values", None) is not None:
        listed = parent.choices if isinstance(parent, Categorical) else parent.values
        return any(_holds(cond, value) for value in listed)
    low, high = parent.low, parent.high
    wanted = cond.value if cond.op == "in" else (cond.value,)
    if cond.op in ("eq", "in"):
        return any(isinstance(v, int | float) and low <= v <= high for v in wanted)
    return {
        "ne": not (low == high == cond.value),
        "lt": low < cond.value,
        "le": low <= cond.value,
        "gt": high > cond.value,
        "ge": high >= cond.value,
    }[cond.op]


def _holds(cond: Condition, value: Any) -> bool:
    try:
        return bool(_OPERATORS[cond.op](value, cond.value))
    except TypeError:  # "adam" < 3: never
        return False


def _describe_condition(cond: Condition) -> str:
    if cond.op == "eq":
        return repr(cond.value)
    if cond.op == "in":
        return f"any of {list(cond.value)}"
    return f"{cond.op} {cond.value!r}"


@dataclass(frozen=True)
class Param:
    """Base of the parameter types. ``name`` is filled in by :class:`Space`."""

    when: tuple[Condition, ...] = field(default=(), kw_only=True)
    name: str = field(default="", kw_only=True)

    def from_unit(self, u: float, config: Mapping[str, Any] | None = None) -> Any:
        """The value at position ``u`` in [0, 1]; ``config`` holds the parameters decoded
        before this one (only a :class:`Ranged` parameter reads it)."""
        raise NotImplementedError

    def to_unit(self, value: Any, config: Mapping[str, Any] | None = None) -> float:
        """The position of ``value`` in [0, 1] (the centre of its cell for discrete values)."""
        raise NotImplementedError

    def grid(self) -> list[Any]:
        """The values a grid search visits."""
        raise NotImplementedError

    def contains(self, value: Any, config: Mapping[str, Any] | None = None) -> bool:
        raise NotImplementedError

    @property
    def parents(self) -> tuple[str, ...]:
        """The parameters this one reads, which a config must decide first."""
        return tuple(cond.param for cond in self.when)

    def _field(self, attr: str = "") -> str:
        return ".".join(part for part in ("space", self.name, attr) if part)


@dataclass(frozen=True)
class _Numeric(Param):
    low: float
    high: float
    log: bool = False
    step: float | None = None
    values: tuple[float, ...] | None = field(default=None, kw_only=True)

    def __post_init__(self) -> None:
        if not self.low <= self.high:
            raise SpaceError(
                self._field("low"),
                f"low must be <= high, but got low={self.low} and high={self.high}; swap them",
            )
        if self.log and self.low <= 0:
            raise SpaceError(
                self._field("low"),
                f"must be > 0 when log is true, but got {self.low}; "
                "use a small positive bound such as 1e-6",
            )
        if self.step is not None:
            if self.step <= 0:
                raise SpaceError(self._field("step"), f"must be > 0, but got {self.step}")
            if self.log:
                raise SpaceError(
                    self._field("step"), "cannot be combined with log: true; drop one of them"
                )
        if self.values is not None:
            if not self.values:
                raise SpaceError(self._field("grid"), "is empty; list at least one value")
            outside = [v for v in self.values if not self.low <= v <= self.high]
            if outside:
                raise SpaceError(
                    self._field("grid"),
                    f"values {outside} lie outside [{self.low}, {self.high}]",
                )

    def _n_steps(self) -> int | None:
        return (
            None
            if self.step is None
            else int(math.floor((self.high - self.low) / self.step + 1e-9))
        )

    def _continuous(self, u: float) -> float:
        u = min(max(float(u), 0.0), 1.0)
        if self.log:  # exp(log(x)) can land an ulp outside the bounds: clamp
            value = math.exp(math.log(self.low) + u * (math.log(self.high) - math.log(self.low)))
            return min(max(value, self.low), self.high)
        return self.low + u * (self.high - self.low)

    def _position(self, value: float) -> float:
        if self.high == self.low:
            return 0.5
        if self.log:
            return (math.log(value) - math.log(self.low)) / (
                math.log(self.high) - math.log(self.low)
            )
        return (value - self.low) / (self.high - self.low)

    def contains(self, value: Any, config: Mapping[str, Any] | None = None) -> bool:
        return isinstance(value, int | float) and self.low <= value <= self.high


@dataclass(frozen=True)
class Float(_Numeric):
    """A real number in [low, high], optionally on a log scale or a step grid.

    Example:
        >>> round(Float(1e-4, 0.3, log=True).from_unit(0.5), 6)  # geometric midpoint
        0.005477
    """

    def from_unit(self, u: float, config: Mapping[str, Any] | None = None) -> float:
        if self.step is not None:
            n = self._n_steps()
            k = min(int(u * (n + 1)), n)
            return round(self.low + k * self.step, 12)
        return self._continuous(u)

    def to_unit(self, value: float, config: Mapping[str, Any] | None = None) -> float:
        if self.step is not None:
            n = self._n_steps()
            return (round((value - self.low) / self.step) + 0.5) / (n + 1)
        return self._position(value)

    def grid(self) -> list[float]:
        if self.values is not None:
            return list(self.values)
        if self.step is not None:
            return [round(self.low + k * self.step, 12) for k in range(self._n_steps() + 1)]
        raise SpaceError(
            self._field(),
            "grid search needs listed values for a continuous range; add e.g. "
            f"`grid: [{self.low}, {self.high}]` (or a step), or use strategy: random",
        )


@dataclass(frozen=True)
class Int(_Numeric):
    """An integer in [low, high] (both included), optionally log-scaled or stepped.

    Every integer gets an equal share of the unit interval (on the log scale when ``log``), so
    rounding never favours the bounds.
    """

    def __post_init__(self) -> None:
        for attr in ("low", "high"):
            if float(getattr(self, attr)) != int(getattr(self, attr)):
                raise SpaceError(
                    self._field(attr), f"must be an integer, but got {getattr(self, attr)}"
                )
        super().__post_init__()

    def _choices(self) -> list[int]:
        step = int(self.step or 1)
        return list(range(int(self.low), int(self.high) + 1, step))

    def _log_span(self) -> tuple[float, float]:
        # Each integer owns [k - 0.5, k + 0.5] in log space, so the bounds are not under-sampled.
        return math.log(self.low - 0.5), math.log(self.high + 0.5)

    def from_unit(self, u: float, config: Mapping[str, Any] | None = None) -> int:
        if self.log:
            lo, hi = self._log_span()
            value = math.exp(lo + min(max(u, 0.0), 1.0) * (hi - lo))
            return int(min(max(round(value), self.low), self.high))
        choices = self._choices()
        return choices[min(int(u * len(choices)), len(choices) - 1)]

    def to_unit(self, value: int, config: Mapping[str, Any] | None = None) -> float:
        if self.log:
            lo, hi = self._log_span()
            return (math.log(value) - lo) / (hi - lo)
        choices = self._choices()
        return (choices.index(int(value)) + 0.5) / len(choices)

    def grid(self) -> list[int]:
        return [int(v) for v in self.values] if self.values is not None else self._choices()

    def contains(self, value: Any, config: Mapping[str, Any] | None = None) -> bool:
        return (
            isinstance(value, int | np.integer)
            and not isinstance(value, bool)
            and super().contains(value)
        )


@dataclass(frozen=True)
class Categorical(Param):
    """One of a list of choices (numbers, strings, booleans).

    Example:
        >>> Categorical(["sgd", "adam"]).from_unit(0.9)
        'adam'
    """

    choices: tuple[Any, ...]

    def __post_init__(self) -> None:
        if not isinstance(self.choices, list | tuple) or len(self.choices) == 0:
            raise SpaceError(self._field("choices"), "is empty; list at least one choice")
        if len(set(map(repr, self.choices))) != len(self.choices):
            raise SpaceError(self._field("choices"), f"has duplicates: {list(self.choices)}")
        object.__setattr__(self, "choices", tuple(self.choices))

    def from_unit(self, u: float, config: Mapping[str, Any] | None = None) -> Any:
        return self.choices[min(int(u * len(self.choices)), len(self.choices) - 1)]

    def to_unit(self, value: Any, config: Mapping[str, Any] | None = None) -> float:
        return (self.choices.index(value) + 0.5) / len(self.choices)

    def grid(self) -> list[Any]:
        return list(self.choices)

    def contains(self, value: Any, config: Mapping[str, Any] | None = None) -> bool:
        return value in self.choices


@dataclass(frozen=True)
class Ranged(Param):
    """A real number whose range depends on the value of an earlier parameter (``by``).

    Why: a good learning rate for SGD lies about a hundred times above Adam's, so one range for
    both spends most samples of each where that optimizer does not train; per-optimizer ranges
    (the LR range test's, see ``auto`` in the spec) keep every sample useful. A strategy sees
    the position within the range of the config's ``by`` value, so "low in its range" means the
    same for every optimizer. A value of ``by`` without a range of its own (or ``by`` inactive)
    gets the envelope of all the ranges.

    Example:
        >>> lr = Ranged("optimizer", {"sgd": Float(0.01, 1.0, log=True),
        ...                           "adam": Float(1e-4, 0.01, log=True)})
        >>> [round(lr.from_unit(0.5, {"optimizer": o}), 6) for o in ("sgd", "adam")]
        [0.1, 0.001]
    """

    by: str
    ranges: Mapping[Any, Float]

    def __post_init__(self) -> None:
        if not self.ranges:
            raise SpaceError(self._field("ranges"), "is empty; give a range per value of by")
        bad = [key for key, rng in self.ranges.items() if not isinstance(rng, Float)]
        if bad:
            raise SpaceError(self._field("ranges"), f"{bad[0]!r}: expected a Float range")
        stepped = [key for key, rng in self.ranges.items() if rng.step or rng.values]
        if stepped:
            raise SpaceError(
                self._field("ranges"), f"{stepped[0]!r}: a step or grid values cannot be ranged"
            )

    @property
    def parents(self) -> tuple[str, ...]:
        return (*super().parents, self.by)

    @property
    def low(self) -> float:
        return min(rng.low for rng in self.ranges.values())

    @property
    def high(self) -> float:
        return max(rng.high for rng in self.ranges.values())

    @property
    def log(self) -> bool:
        return all(rng.log for rng in self.ranges.values())

    def range_for(self, config: Mapping[str, Any] | None) -> Float:
        """The range that applies to ``config``: its ``by`` value's, else the envelope."""
        key = (config or {}).get(self.by, _MISSING)
        try:
            return self.ranges[key]
        except (KeyError, TypeError):  # unlisted, or unhashable
            return Float(self.low, self.high, log=self.log)

    def from_unit(self, u: float, config: Mapping[str, Any] | None = None) -> float:
        return self.range_for(config).from_unit(u)

    def to_unit(self, value: float, config: Mapping[str, Any] | None = None) -> float:
        return self.range_for(config).to_unit(value)

    def grid(self) -> list[Any]:
        raise SpaceError(
            self._field(),
            f"grid search needs listed values, but this range follows {self.by}; "
            "use strategy: random or bayes",
        )

    def contains(self, value: Any, config: Mapping[str, Any] | None = None) -> bool:
        return self.range_for(config).contains(value)


_MISSING = object()


class Space(Mapping[str, Param]):
    """An ordered set of named parameters; parents of a condition come before their children.

    Example:
        >>> space = Space({
        ...     "lr": Float(1e-4, 0.3, log=True),
        ...     "optimizer": Categorical(["sgd", "adam"]),
        ...     "momentum": Float(0.0, 0.99, when={"optimizer": "sgd"}),
        ... })
        >>> sorted(space.decode([0.5, 0.9, 0.5]))  # adam: momentum is inactive, so absent
        ['lr', 'optimizer']
    """

    def __init__(self, params: Mapping[str, Param]) -> None:
        named = {}
        for name, param in params.items():
            if not isinstance(param, Param):
                raise SpaceError(
                    f"space.{name}", f"expected a Float, Int or Categorical, got {param!r}"
                )
            when = param.when
            if isinstance(when, Mapping):  # given as a plain dict in Python
                when = _parse_when(name, when)
            named[name] = replace(param, name=name, when=when)
        if not named:
            raise SpaceError("space", "is empty; define at least one parameter to tune")
        self._params = self._ordered(named)
        self._grid: list[dict[str, Any]] | None = None

    @staticmethod
    def _ordered(params: dict[str, Param]) -> dict[str, Param]:
        for name, param in params.items():
            for parent in param.parents:
                if parent not in params:
                    where = "by" if isinstance(param, Ranged) and parent == param.by else "when"
                    raise SpaceError(
                        f"space.{name}.{where}",
                        f"refers to {parent!r}, which is not a parameter of the space; "
                        f"known: {', '.join(params)}",
                    )
            for cond in param.when:
                if not _can_hold(params[cond.param], cond):
                    raise SpaceError(
                        f"space.{name}.when.{cond.param}",
                        f"{cond.param} can never be {_describe_condition(cond)} "
                        f"({cond.param} takes {_describe(params[cond.param])}), so {name} would never be "
                        f"tuned; use a value {cond.param} can take",
                    )
        # Keep the user's order, except that a parent always comes before its children.
        ordered: dict[str, Param] = {}
        pending = dict(params)
        while pending:
            ready = next(
                (n for n, p in pending.items() if all(q in ordered for q in p.parents)), None
            )
            if ready is None:
                raise SpaceError(
                    f"space.{next(iter(pending))}.when",
                    f"conditions form a cycle among {', '.join(pending)}",
                )
            ordered[ready] = pending.pop(ready)
        return ordered

    def __getitem__(self, name: str) -> Param:
        return self._params[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._params)

    def __len__(self) -> int:
        return len(self._params)

    def __repr__(self) -> str:
        return f"Space({self._params!r})"

    def is_active(self, name: str, config: Mapping[str, Any]) -> bool:
        return all(cond.holds(config) for cond in self._params[name].when)

    def decode(self, u: Sequence[float]) -> dict[str, Any]:
        """The config at point ``u`` of the unit cube (one coordinate per parameter, in order)."""
        config: dict[str, Any] = {}
        for (name, param), ui in zip(self._params.items(), u, strict=True):
            if self.is_active(name, config):
                config[name] = _plain(param.from_unit(float(ui), config))
        return config

    def encode(self, config: Mapping[str, Any]) -> np.ndarray:
        """The unit-cube point of ``config``; inactive parameters get NaN."""
        return np.array(
            [
                p.to_unit(config[n], config) if n in config else np.nan
                for n, p in self._params.items()
            ]
        )

    def grid(self) -> list[dict[str, Any]]:
        """Every combination of grid values, inactive parameters dropped, duplicates removed."""
        if self._grid is None:
            self._grid = self._enumerate_grid()
        return self._grid

    def _enumerate_grid(self) -> list[dict[str, Any]]:
        names = list(self._params)
        configs, seen = [], set()
        for combo in itertools.product(*(self._params[n].grid() for n in names)):
            config: dict[str, Any] = {}
            for name, value in zip(names, combo, strict=True):
                if self.is_active(name, config):
                    config[name] = _plain(value)
            key = tuple(sorted((k, repr(v)) for k, v in config.items()))
            if key not in seen:
                seen.add(key)
                configs.append(config)
        return configs

    def validate(self, config: Mapping[str, Any], field_prefix: str = "configs") -> dict[str, Any]:
        """Check a user-given config (a manual trial): known names, values in range, conditions."""
        unknown = set(config) - set(self._params)
        if unknown:
            raise SpaceError(
                f"{field_prefix}.{sorted(unknown)[0]}",
                f"is not a parameter of the space; known: {', '.join(self._params)}",
            )
        clean: dict[str, Any] = {}
        for name, param in self._params.items():
            active = self.is_active(name, clean)
            if name not in config:
                if active:
                    raise SpaceError(f"{field_prefix}.{name}", "is missing; give a value for it")
                continue
            if not active:
                raise SpaceError(
                    f"{field_prefix}.{name}",
                    "is given but its `when` condition is false; remove it",
                )
            if not param.contains(config[name], clean):
                raise SpaceError(
                    f"{field_prefix}.{name}",
                    f"value {config[name]!r} is outside {_describe(param, clean)}",
                )
            clean[name] = _plain(config[name])
        return clean


def _plain(value: Any) -> Any:
    """numpy scalars to Python ones, so configs are JSON-ready."""
    return value.item() if isinstance(value, np.generic) else value


def _describe(param: Param, config: Mapping[str, Any] | None = None) -> str:
    if isinstance(param, Categorical):
        return f"the choices {list(param.choices)}"
    if isinstance(param, Ranged):
        param = param.range_for(config)
    kind = "integers" if isinstance(param, Int) else "range"
    return f"the {kind} [{param.low}, {param.high}]"


def param_to_dict(param: Param) -> dict[str, Any]:
    """A plain description of a Float, Int or Categorical (a define-by-run trial's suggestion,
    stored with the trial); :func:`param_from_dict` reads it back."""
    if isinstance(param, Categorical):
        return {"type": "categorical", "choices": [_plain(c) for c in param.choices]}
    kind = "int" if isinstance(param, Int) else "float"
    return {
        "type": kind,
        "low": param.low,
        "high": param.high,
        "log": param.log,
        "step": param.step,
    }


def param_from_dict(described: Mapping[str, Any]) -> Param:
    if described["type"] == "categorical":
        return Categorical(list(described["choices"]))
    kind = Int if described["type"] == "int" else Float
    return kind(described["low"], described["high"], log=described["log"], step=described["step"])


def learned_space(
    declared: Space | None, distributions: Mapping[str, Mapping[str, Any]]
) -> Space | None:
    """The space a define-by-run search proposes in: the parameters the objective suggested so
    far (their latest ranges), and the declared ones, which win. None while both are empty.

    The learned parameters have no conditions: one the objective did not suggest in a trial (a
    branch it did not take) is absent from that trial's params, which the strategies read as
    inactive; proposed but not suggested, it is simply not used."""
    if not distributions:
        return declared
    params = {name: param_from_dict(d) for name, d in distributions.items()}
    return Space({**params, **(dict(declared) if declared is not None else {})})
