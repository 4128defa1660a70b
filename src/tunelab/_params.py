"""scikit-learn style parameters: constructors only store their arguments, ``get_params`` reads
them back, so a spec can rebuild any strategy or scheduler and a stored study can name its own."""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Mapping
from typing import Any

from tunelab.errors import SpecError

__all__ = ["ParamsMixin", "build", "build_named", "clone"]


class ParamsMixin:
    @classmethod
    def param_names(cls) -> list[str]:
        """The constructor's argument names."""
        return [
            p.name
            for p in inspect.signature(cls.__init__).parameters.values()
            if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        ]

    def get_params(self) -> dict[str, Any]:
        """The constructor arguments, by name."""
        return {name: getattr(self, name) for name in self.param_names()}

    def set_params(self, **params: Any) -> ParamsMixin:
        valid = self.get_params()
        for name, value in params.items():
            if name not in valid:
                raise ValueError(
                    f"{type(self).__name__} has no parameter {name!r}; valid: {', '.join(valid)}"
                )
            setattr(self, name, value)
        return self

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"


def build(cls: type[ParamsMixin], field: str, name: str, options: dict[str, Any]) -> Any:
    """``cls(**options)`` for a spec: a misspelt option is named with the closest valid one, and a
    bad value becomes a :class:`SpecError` on ``field``."""
    valid = cls.param_names()
    for key in options:
        if key not in valid:
            close = difflib.get_close_matches(key, valid, n=1)
            hint = f"did you mean {close[0]!r}?" if close else f"valid: {', '.join(valid)}"
            raise SpecError(field, f"{name!r} has no option {key!r}; {hint}")
    try:
        return cls(**options)
    except (TypeError, ValueError) as exc:
        raise SpecError(field, f"bad options for {name!r}: {exc}") from None


def build_named(
    registry: Mapping[str, type[ParamsMixin]], field: str, name: Any, options: dict[str, Any]
) -> Any:
    """The strategies', schedulers' and executors' factory: an object passes through, a name is
    looked up in ``registry`` (an unknown one lists the known), then built as :func:`build` does."""
    if not isinstance(name, str):
        return name
    if name not in registry:
        raise SpecError(field, f"unknown {field} {name!r}; choose one of {', '.join(registry)}")
    return build(registry[name], field, name, options)


def clone(obj: ParamsMixin) -> Any:
    """A fresh object with the same constructor arguments (scikit-learn's ``clone``): what a
    caller passed is never changed, and no fitted state carries over."""
    return type(obj)(**obj.get_params())
