"""Asynchronous successive halving (ASHA; Li et al., "A system for massively parallel
hyperparameter tuning", MLSys 2020) and asynchronous Hyperband, by pause and resume.

A trial pauses at each rung, ``min_resource * reduction_factor ** k`` steps (epochs by default);
a paused trial is promoted, resumed from its checkpoint, when it ranks in the top
``1 / reduction_factor`` of the trials that reached its rung, highest rungs first. Nothing waits
for a rung to fill: a free worker resumes a promotable trial if there is one, else starts a new
trial. The open-source peers stop the trials below the cut and retrain the promoted ones from
scratch; here a promotion continues where the trial paused.

The scheduler keeps no state: a trial's bracket comes from its number and its rung from its
reports, so another process, or the same study after a crash, makes the same decisions.
"""

from __future__ import annotations

import bisect
import functools
import math

from tunelab.schedulers.base import Scheduler, StudyView
from tunelab.trial import Decision, FrozenTrial, TrialState, is_bad_number

__all__ = ["ASHAScheduler", "HyperbandScheduler"]

_MAX_RUNGS = 64  # without max_resource, rungs go on (a trial still ends when its training does)


class ASHAScheduler(Scheduler):
    """Promote the best ``1 / reduction_factor`` of each rung; pause the rest there.

    Args:
        min_resource: the first rung, in reported steps (epochs).
        max_resource: the steps of a full training; no rung at or above it, so a promoted trial
            runs to its end. None: rungs go on, and a trial completes when its training ends.
        reduction_factor: eta; 1 in eta trials of a rung is promoted to the next.
        brackets: successive-halving brackets with first rungs ``min_resource * eta ** b``
            (one bracket is plain ASHA). Trials are dealt to brackets by their numbers, in
            Hyperband's proportions: a bracket that halves s more times gets about eta^s / (s + 1)
            times as many trials as the one that halves least, so each bracket spends a similar
            budget.

    Example:
        >>> ASHAScheduler(min_resource=1, max_resource=27, reduction_factor=3).rungs(0)
        [1, 3, 9]
    """

    def __init__(
        self,
        min_resource: float = 1,
        max_resource: float | None = None,
        reduction_factor: float = 3,
        brackets: int = 1,
    ) -> None:
        if not min_resource > 0:
            raise ValueError(f"min_resource must be > 0, got {min_resource!r}")
        if max_resource is not None and not max_resource > min_resource:
            raise ValueError(
                f"max_resource must be > min_resource ({min_resource}), got {max_resource!r}"
            )
        if not reduction_factor >= 2:
            raise ValueError(f"reduction_factor must be >= 2, got {reduction_factor!r}")
        if not isinstance(brackets, int) or brackets < 1:
            raise ValueError(f"brackets must be an integer >= 1, got {brackets!r}")
        self.min_resource = min_resource
        self.max_resource = max_resource
        self.reduction_factor = reduction_factor
        self.brackets = brackets

    # Rung arithmetic -----------------------------------------------------------------------------
    def bracket(self, trial: FrozenTrial) -> int:
        if self.brackets == 1:
            return 0
        cycle = _deal(self.brackets, self.reduction_factor)
        return cycle[trial.number % len(cycle)]

    def rungs(self, bracket: int) -> list[float]:
        """The steps at which a trial of ``bracket`` pauses, lowest first."""
        return list(_rungs(self.min_resource, self.max_resource, self.reduction_factor, bracket))

    def rung_of(self, trial: FrozenTrial) -> int:
        """How many rungs the trial has reached (0: none yet)."""
        last = trial.last_step
        rungs = _rungs(
            self.min_resource, self.max_resource, self.reduction_factor, self.bracket(trial)
        )
        return 0 if last is None else bisect.bisect_right(rungs, last)

    # Decisions ---------------------------------------------------------------------------------
    def on_report(self, trial: FrozenTrial, step: int, study: StudyView) -> Decision:
        """Pause when this report reaches a rung the trial had not reached before (a trial
        restarted without its checkpoint re-reports lower steps and is not paused there again;
        the driver records where each pause happened)."""
        if self.max_resource is not None and step >= self.max_resource:
            return Decision.CONTINUE
        earlier = [s for s in trial.intermediate if s != step]
        before = max([*earlier, trial.attrs.get("paused_at") or 0])
        rungs = _rungs(
            self.min_resource, self.max_resource, self.reduction_factor, self.bracket(trial)
        )
        crossed = any(before < r <= step for r in rungs)
        return Decision.PAUSE if crossed else Decision.CONTINUE

    def explain(self, trial: FrozenTrial, step: int, decision: Decision, study: StudyView) -> str:
        """Which rung the paused trial reached and what promotes it, e.g. "reached rung 2 of 3
        (step 3) in bracket 0; resumes if it ranks in the top 1/3 there"."""
        bracket = self.bracket(trial)
        rungs = _rungs(self.min_resource, self.max_resource, self.reduction_factor, bracket)
        level = bisect.bisect_right(rungs, step)
        if decision is not Decision.PAUSE or level == 0:
            return super().explain(trial, step, decision, study)
        of = f" of {len(rungs)}" if self.max_resource is not None else ""
        where = f" in bracket {bracket}" if self.brackets > 1 else ""
        return (
            f"reached rung {level}{of} (step {rungs[level - 1]}){where}; resumes if it ranks in "
            f"the top 1/{self.reduction_factor:g} there"
        )

    def resume_next(self, study: StudyView) -> FrozenTrial | None:
        """The best promotable paused trial, from the highest rung (in steps, across brackets)
        that has one.

        At each rung, only the best paused trial there can be next: it is promotable when fewer
        than ``1 / reduction_factor`` of the trials that reached the rung rank above it. Two
        passes over the trials, each trial's values at its rungs read once per snapshot: a study
        of thousands of trials asks this at every free slot.
        """
        sign = 1.0 if study.direction == "maximize" else -1.0
        best: dict[tuple[int, int], tuple[float, int, FrozenTrial]] = {}  # (bracket, level) ->
        for trial in study.trials:
            if trial.state is TrialState.PAUSED:
                values = self._values(trial, study.metric)
                if values and values[-1] is not None:
                    place = (self.bracket(trial), len(values))
                    score = sign * values[-1]
                    if place not in best or score > best[place][0]:
                        best[place] = (score, trial.number, trial)
        if not best:
            return None
        reached = dict.fromkeys(best, 0)
        above = dict.fromkeys(best, 0)
        for trial in study.trials:
            bracket = self.bracket(trial)
            for level, value in enumerate(self._values(trial, study.metric), start=1):
                place = (bracket, level)
                if value is None or place not in best:
                    continue
                reached[place] += 1
                score, number, _ = best[place]
                above[place] += sign * value > score or (
                    sign * value == score and trial.number < number
                )
        for place in sorted(best, key=lambda bl: (-self.rungs(bl[0])[bl[1] - 1], bl[0])):
            if above[place] < int(reached[place] / self.reduction_factor):
                return best[place][2]
        return None

    def _values(self, trial: FrozenTrial, metric: str) -> tuple[float | None, ...]:
        """The trial's metric at each rung of its bracket it reached (None: bad value), cached
        per trial snapshot: a FrozenTrial never changes, a new report makes a new one."""
        cache = self.__dict__.setdefault("_values_", {})
        known = cache.get(trial.id)
        if known is not None and known[0] is trial and known[1] == metric:
            return known[2]
        rungs = _rungs(
            self.min_resource, self.max_resource, self.reduction_factor, self.bracket(trial)
        )
        values = []
        for rung in rungs:
            if trial.last_step is None or trial.last_step < rung:
                break
            values.append(_value_at(trial, rung, metric))
        cache[trial.id] = (trial, metric, tuple(values))
        return cache[trial.id][2]


class HyperbandScheduler(ASHAScheduler):
    """Asynchronous Hyperband: ASHA brackets from the most aggressive (first rung at
    ``min_resource``) to plain full training, trials dealt to them in Hyperband's proportions
    (with eta 3 and 4 brackets, 27, 12, 6 and 4 trials in every 49, interleaved).

    Hedges against a ``min_resource`` too small to judge a trial by: a bracket that starts later
    sees more of each curve before it cuts.

    Example:
        >>> HyperbandScheduler(min_resource=1, max_resource=27, reduction_factor=3).brackets
        4
    """

    def __init__(
        self,
        min_resource: float = 1,
        max_resource: float = 81,
        reduction_factor: float = 3,
    ) -> None:
        super().__init__(min_resource, max_resource, reduction_factor, brackets=1)
        levels = math.log(max_resource / min_resource, reduction_factor)
        self.brackets = int(math.floor(levels + 1e-9)) + 1


@functools.cache
def _rungs(
    min_resource: float, max_resource: float | None, reduction_factor: float, bracket: int
) -> tuple[float, ...]:
    """Rung arithmetic, computed once per set of options (a scheduler is asked on every report)."""
    rung = min_resource * reduction_factor**bracket
    found: list[float] = []
    while len(found) < _MAX_RUNGS and (max_resource is None or rung < max_resource):
        found.append(int(rung) if float(rung).is_integer() else rung)
        rung *= reduction_factor
    return tuple(found)


@functools.cache
def _deal(brackets: int, reduction_factor: float) -> tuple[int, ...]:
    """One cycle of bracket numbers with Hyperband's ``n_s = ceil(B / (s + 1) * eta ** s)``
    trials for the bracket that halves ``s = B - 1 - b`` times, interleaved by smooth weighted
    round robin (no bracket waits for another's share to be dealt)."""
    weights = [
        math.ceil(brackets / (s + 1) * reduction_factor**s)
        for s in (brackets - 1 - b for b in range(brackets))
    ]
    credit, cycle = [0.0] * brackets, []
    for _ in range(sum(weights)):
        credit = [c + w for c, w in zip(credit, weights, strict=True)]
        chosen = credit.index(max(credit))
        credit[chosen] -= sum(weights)
        cycle.append(chosen)
    return tuple(cycle)


def _value_at(trial: FrozenTrial, rung: float, metric: str) -> float | None:
    """The trial's metric at the first report at or past ``rung`` (None: not reached, or bad)."""
    first = min((s for s in trial.intermediate if s >= rung), default=None)
    if first is None:
        return None
    value = trial.intermediate[first].get(metric)
    return None if value is None or is_bad_number(value) else float(value)
