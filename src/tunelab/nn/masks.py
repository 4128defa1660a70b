"""Dropout masks a trainer draws the same alone or in a fused group, on the CPU and on CUDA.

A fused group (:mod:`tunelab.nn.fused`) must draw each member's masks as that member would alone,
so every trainer draws from a :class:`DropoutStream` of its own, and :func:`draw_masks` draws
the next mask of any number of streams at once, each exactly as it alone would:

- **On the CPU** a stream is a generator seeded with the trainer's seed. Generating the numbers
  is the cost there, and K generators filling K slices cost what one filling all of them does.
- **On a GPU** a stream is a counter: a unit is kept when a 32-bit hash of (the seed, the masks
  drawn so far, the unit's index) falls below the keep rate. Launching kernels is the cost there,
  and K generators would take K launches per dropout layer per step, more than the fused step
  itself; the hash is one computation for every member, in integers, so exact on any device.
  Its mixer's multiplier is below 2**31, so every product of 32-bit values fits in int64.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

__all__ = ["DropoutStream", "MaskGroup", "active", "draw_masks", "drawing", "per_member"]

_M32 = 0xFFFFFFFF
_MULTIPLIER = 0x45D9F3B
_ACTIVE: ContextVar[DropoutStream | None] = ContextVar("tunelab_dropout_stream", default=None)
_INDEX: dict[tuple[int, torch.device], torch.Tensor] = {}  # the units' hashed indices, kept


class DropoutStream:
    """One trainer's source of dropout masks (see the module's docstring).

    Args:
        seed: the trainer's seed.
        hashed: draw by the counter-based hash (the GPU's way) instead of a generator.
    """

    def __init__(self, seed: int, hashed: bool = False) -> None:
        self.seed = seed
        self.draws = 0
        self.generator = None if hashed else torch.Generator().manual_seed(seed)

    def base(self) -> int:
        """What each hashed mask's key is mixed from, with the number of masks drawn so far
        (:class:`MaskGroup` mixes them)."""
        return _mix((self.seed ^ (self.seed >> 32)) & _M32)

    def mask(self, x: torch.Tensor, p: float) -> torch.Tensor:
        """The next mask for ``x`` at drop rate ``p``: 0 or 1 / (1 - p), shaped like ``x``."""
        if self.generator is None or p == 0:
            return draw_masks([self], [1 - p], (1, *x.shape), x.dtype, x.device)[0]
        keep = torch.tensor(1 - p, dtype=x.dtype)  # one stream's draw, as a group draws it
        uniform = torch.empty_like(x).uniform_(generator=self.generator)
        self.draws += 1
        return (uniform < keep).to(x.dtype).div_(keep)

    def state_dict(self) -> dict[str, Any]:
        generator = None if self.generator is None else self.generator.get_state()
        return {"draws": self.draws, "generator": generator}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.draws = int(state["draws"])
        if self.generator is not None:
            self.generator.set_state(state["generator"])


@contextlib.contextmanager
def drawing(stream: DropoutStream) -> Iterator[None]:
    """Let the built-in dropout layers draw their masks from ``stream`` in the block."""
    token = _ACTIVE.set(stream)
    try:
        yield
    finally:
        _ACTIVE.reset(token)


def active() -> DropoutStream | None:
    """The stream dropout draws from here (None outside a trainer's training)."""
    return _ACTIVE.get()


def draw_masks(
    streams: Sequence[DropoutStream],
    keeps: Sequence[float],
    shape: Sequence[int],
    dtype: torch.dtype,
    device: torch.device,
) -> torch.Tensor:
    """The next mask of each stream, stacked in ``shape`` (streams, ...): stream k keeps a unit
    with probability ``keeps[k]``, and a kept unit is scaled by 1 / keep as dropout does. A
    keep of 1 keeps every unit and draws nothing, as dropout at rate 0 does not."""
    with MaskGroup(streams, device) as group:
        return group.draw(group.rates(keeps, dtype), shape)


class MaskGroup:
    """Several streams drawing their next masks together, draw after draw (a fused group's
    epoch): what holds from one draw to the next is worked out once, and the streams' counts
    and keys are kept as arrays on the host, so a draw costs the same few operations however
    many streams there are, and nothing waits for the device. The streams learn their counts
    when the group closes (``with``, or :meth:`close`)."""

    def __init__(self, streams: Sequence[DropoutStream], device: torch.device) -> None:
        self.streams, self.device = list(streams), device
        self.hashed = self.streams[0].generator is None
        self._draws = np.array([s.draws for s in self.streams], dtype=np.int64)
        if self.hashed:
            self._bases = np.array([s.base() for s in self.streams], dtype=np.int64)

    def rates(self, keeps: Sequence[float], dtype: torch.dtype) -> _Rates:
        """The streams' keep rates at one dropout layer, ready to draw with."""
        return _Rates(
            list(keeps),
            np.array([keep < 1 for keep in keeps], dtype=np.int64),
            per_member(keeps, dtype, self.device),
            _thresholds(keeps, self.device) if self.hashed else None,
        )

    def draw(self, rates: _Rates, shape: Sequence[int]) -> torch.Tensor:
        """The streams' next masks at ``rates``, as :func:`draw_masks` has them."""
        column = (len(self.streams), *[1] * (len(shape) - 1))
        keep = rates.keep.view(column)
        if self.hashed:
            keys = per_member(_mix((self._bases ^ self._draws) & _M32), torch.int64, self.device)
            kept = _hashed(keys, shape, self.device) < rates.thresholds.view(column)
        else:
            uniform = torch.empty(shape, dtype=keep.dtype, device=self.device)
            for k, (stream, rate) in enumerate(zip(self.streams, rates.keeps, strict=True)):
                if rate < 1:
                    uniform[k].uniform_(generator=stream.generator)
                else:
                    uniform[k].zero_()
            kept = uniform < keep
        self._draws += rates.drawn
        return kept.to(keep.dtype).div_(keep)

    def close(self) -> None:
        for stream, draws in zip(self.streams, self._draws.tolist(), strict=True):
            stream.draws = draws

    def __enter__(self) -> MaskGroup:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass(frozen=True)
class _Rates:
    keeps: list[float]
    drawn: np.ndarray  # 1 where a stream draws (keep < 1), else 0
    keep: torch.Tensor  # per stream, in the masks' dtype
    thresholds: torch.Tensor | None  # hashed: a unit is kept below it


def _hashed(keys: torch.Tensor, shape: Sequence[int], device: torch.device) -> torch.Tensor:
    """Each stream's draw per unit from its key, a 32-bit integer, shaped ``shape``."""
    units = math.prod(shape[1:])
    index = _INDEX.get((units, device))
    if index is None:
        index = _INDEX[(units, device)] = _mix(torch.arange(units, device=device))
        while len(_INDEX) > 64:  # a few shapes per network; bound it all the same
            _INDEX.pop(next(iter(_INDEX)))
    return _mix(index ^ keys.view(len(keys), 1)).view(*shape)


def _thresholds(keeps: Sequence[float], device: torch.device) -> torch.Tensor:
    """A unit is kept when its hash is below keep * 2**32."""
    return per_member([round(keep * 2**32) for keep in keeps], torch.int64, device)


def per_member(values: Sequence[float], dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """One value per member on the device, copied without waiting for the device: from pinned
    memory, asynchronously (a plain copy to a GPU waits for all queued work, every step)."""
    pinned = device.type == "cuda"
    return torch.tensor(values, dtype=dtype, pin_memory=pinned).to(device, non_blocking=True)


def _mix(x):
    """A 32-bit integer hash; the same on Python ints and on int64 arrays and tensors (values
    < 2**32)."""
    x = ((x ^ (x >> 16)) * _MULTIPLIER) & _M32
    x = ((x ^ (x >> 16)) * _MULTIPLIER) & _M32
    return x ^ (x >> 16)
