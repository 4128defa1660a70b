"""The trial table: which trials match a query, in which order, one page at a time.

The work runs on a :class:`~tunelab.dashboard._views.Snapshot`, and its sort orders and filtered
lists are remembered with it, so paging through 100,000 trials sorts them once per revision.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from operator import itemgetter
from typing import Any, Protocol

from tunelab.dashboard._views import Snapshot
from tunelab.readers import trial_row
from tunelab.trial import FrozenTrial, TrialState

__all__ = ["MAX_LIMIT", "SORT_COLUMNS", "QueryError", "TableQuery", "table_page"]

#: Columns a table sorts by besides the parameters (``param:NAME``).
SORT_COLUMNS = ("number", "state", "value", "duration")
#: The most rows one request returns: a page, never the whole study.
MAX_LIMIT = 500
_STATE_RANK = {state: rank for rank, state in enumerate(TrialState)}


class QueryError(ValueError):
    """A table query the dashboard cannot answer; the message names what was expected."""


class _Params(Protocol):
    def get(self, key: str, default: Any = None) -> Any: ...
    def getlist(self, key: str) -> list[str]: ...


@dataclass(frozen=True)
class TableQuery:
    """Which rows to show: order, filters (states, a text in params or error) and the page."""

    sort: str = "number"
    descending: bool = False
    states: frozenset[TrialState] = frozenset()
    text: str = ""
    offset: int = 0
    limit: int = 50

    @classmethod
    def parse(cls, params: _Params) -> TableQuery:
        """From query parameters ``sort``, ``order``, ``state`` (repeated or comma-separated),
        ``q``, ``offset`` and ``limit``; raises QueryError naming the bad one."""
        sort = params.get("sort") or "number"
        if sort not in SORT_COLUMNS and not sort.startswith("param:"):
            raise QueryError(
                f"sort must be one of {', '.join(SORT_COLUMNS)} or param:NAME, but got {sort!r}"
            )
        order = params.get("order") or "asc"
        if order not in ("asc", "desc"):
            raise QueryError(f"order must be asc or desc, but got {order!r}")
        return cls(
            sort=sort,
            descending=order == "desc",
            states=_states(params.getlist("state")),
            text=(params.get("q") or "").strip().lower(),
            offset=_whole(params, "offset", 0, 0, None),
            limit=_whole(params, "limit", 50, 1, MAX_LIMIT),
        )


def _states(values: Sequence[str]) -> frozenset[TrialState]:
    names = [name.strip().upper() for value in values for name in value.split(",") if name.strip()]
    unknown = [name for name in names if name not in TrialState.__members__]
    if unknown:
        raise QueryError(
            f"state must be among {', '.join(TrialState)}, but got {', '.join(unknown)}"
        )
    return frozenset(TrialState(name) for name in names)


def _whole(params: _Params, name: str, default: int, low: int, high: int | None) -> int:
    """An integer parameter, clipped to ``high`` (a limit over the cap is the cap)."""
    text = params.get(name)
    if text is None or text == "":
        return default
    try:
        number = int(text)
    except ValueError:
        raise QueryError(f"{name} must be a whole number, but got {text!r}") from None
    if number < low:
        raise QueryError(f"{name} must be >= {low}, but got {number}")
    return number if high is None else min(number, high)


def table_page(snapshot: Snapshot, query: TableQuery) -> dict[str, Any]:
    """One page of the table, with how many rows match in all."""
    rows = snapshot.memo(
        ("rows", query.sort, query.descending, query.states, query.text),
        lambda: _matching(snapshot, query),
    )
    page = rows[query.offset : query.offset + query.limit]
    return {
        "revision": snapshot.revision,
        "total": len(rows),
        "offset": query.offset,
        "limit": query.limit,
        "sort": query.sort,
        "order": "desc" if query.descending else "asc",
        "rows": [trial_row(trial) for trial in page],
    }


def _matching(snapshot: Snapshot, query: TableQuery) -> list[FrozenTrial]:
    rows = snapshot.memo(
        ("order", query.sort, query.descending),
        lambda: ordered(snapshot.trials, query.sort, query.descending),
    )
    if query.states:
        rows = [trial for trial in rows if trial.state in query.states]
    if query.text:
        texts = snapshot.memo("search", lambda: _search_texts(snapshot.trials))
        rows = [trial for trial in rows if query.text in texts[trial.number]]
    return rows


def ordered(trials: Sequence[FrozenTrial], sort: str, descending: bool) -> list[FrozenTrial]:
    """``trials`` sorted by a column, trials without a value in it last either way; equal values
    keep their order (by number)."""
    if sort == "number":  # the order trials are kept in
        return list(reversed(trials)) if descending else list(trials)
    key = _sort_key(sort)
    keyed = [(key(trial), trial) for trial in trials]
    present = [pair for pair in keyed if pair[0] is not None]
    present.sort(key=itemgetter(0), reverse=descending)
    return [trial for _, trial in present] + [trial for k, trial in keyed if k is None]


def _sort_key(sort: str) -> Callable[[FrozenTrial], Any]:
    if sort.startswith("param:"):
        name = sort[len("param:") :]
        return lambda trial: _comparable((trial.params or {}).get(name))
    return {
        "state": lambda trial: _STATE_RANK[trial.state],
        "value": lambda trial: _comparable(trial.value),
        "duration": lambda trial: trial.duration,
    }[sort]


def _comparable(value: Any) -> tuple[int, Any] | None:
    """A sort key any two parameter values can be compared by: numbers before text before the
    rest; None and NaN are missing."""
    if value is None:
        return None
    if isinstance(value, int | float):
        return (0, float(value)) if math.isfinite(value) else None
    if isinstance(value, str):
        return (1, value)
    return (2, json.dumps(value, sort_keys=True))


def _search_texts(trials: Sequence[FrozenTrial]) -> dict[int, str]:
    """What the text filter looks in, per trial: ``name=value`` of each param, and the error."""
    return {
        trial.number: " ".join(
            [
                *(f"{name}={value}" for name, value in (trial.params or {}).items()),
                trial.error or "",
            ]
        ).lower()
        for trial in trials
    }
