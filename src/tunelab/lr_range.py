"""``tunelab lr-find`` and :func:`lr_find`: the LR range test on a spec's model, data and optimizer.

The hybrid way of working the range test makes easy: read a learning rate off one short run, then
search the other hyperparameters with it fixed (Smith 2017, §3.3; fastai's ``lr_find``).

Example:
    >>> test = lr_find("examples/digits.yaml")  # doctest: +SKIP
    >>> test.suggestion  # doctest: +SKIP
    0.0013...
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tunelab.spec import ExperimentSpec, load_spec, parse_spec

if TYPE_CHECKING:
    from tunelab.nn.lr_finder import RangeTest

__all__ = ["lr_find"]


def lr_find(
    spec: str | Path | Mapping[str, Any] | ExperimentSpec,
    params: Mapping[str, Any] | None = None,
    seed: int | None = None,
    **options: Any,
) -> RangeTest:
    """Run the LR range test with a spec's model, data and optimizer.

    The configuration is the spec's ``fixed`` values over the defaults, or ``params`` over those;
    nothing is stored and no study is touched. ``options`` go to
    :func:`~tunelab.nn.range_test`: ``start``, ``end``, ``steps``, ``mode``, ``smoothing``,
    ``diverge``.

    Args:
        spec: a spec file, a spec as a dict, or a parsed spec.
        params: hyperparameters to test at (e.g. another optimizer or batch size).
        seed: seeds the network and the batch order (default: the spec's seed).

    Raises:
        NoUsableRange: the loss never fell enough to read a learning rate off the curve.
        SpecError: a bad spec or option, naming the field.
    """
    from tunelab.experiment import _objective

    if isinstance(spec, str | Path):
        spec = load_spec(spec)
    elif not isinstance(spec, ExperimentSpec):
        spec = parse_spec(spec)
    objective = _objective(spec)
    return objective.lr_range_test(params, seed=spec.seed if seed is None else seed, **options)
