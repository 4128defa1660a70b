"""Clocks: where the driver and storage read the time.

The real clock is the default. A :class:`VirtualClock` lets tests and the simulated executor run a
study whose trials "take" hours in milliseconds: deadlines, timestamps and durations then follow
simulated time, so a scheduler's decisions can be tested and benchmarked without waiting.
"""

from __future__ import annotations

import time
from typing import Protocol

__all__ = ["Clock", "RealClock", "VirtualClock"]


class Clock(Protocol):
    """Anything with ``now() -> float`` seconds (an epoch time for the real clock)."""

    def now(self) -> float: ...


class RealClock:
    """Wall-clock time (``time.time``)."""

    def now(self) -> float:
        return time.time()

    def __repr__(self) -> str:
        return "RealClock()"


class VirtualClock:
    """Time that moves only when told to.

    Example:
        >>> clock = VirtualClock(start=100.0)
        >>> clock.advance(2.5)
        >>> clock.now()
        102.5
    """

    def __init__(self, start: float = 0.0) -> None:
        self._now = float(start)

    def now(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        """Move time forward (never back: durations stay non-negative)."""
        if seconds < 0:
            raise ValueError(f"a clock cannot go back, got advance({seconds})")
        self._now += seconds

    def __repr__(self) -> str:
        return f"VirtualClock(now={self._now})"
