"""What ``tunelab run`` shows while it runs: a live view on a terminal, log lines elsewhere.

Both write one line per finished trial as it happens (:class:`PlainLog`), which reads well in
CI logs and ``tail -f``. On a terminal, :class:`LiveView` also redraws, below those lines, a
study line (done of total, running, paused, pruned, failed, the best so far, elapsed time and an
estimate of the time left) and a row per running trial (its params, epoch k of n, its latest
metric) as reports arrive, so a user sees trials train, not only end.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from tunelab.events import StudyListener, describe_end
from tunelab.readers import best_trial
from tunelab.trial import FrozenTrial, TrialState

if TYPE_CHECKING:
    from tunelab.study import Study

__all__ = ["LiveView", "PlainLog"]


class _Tally:
    """Counts by state and the best trial, kept from the events (no storage read per event)."""

    def __init__(self, trials: list[FrozenTrial], direction: str) -> None:
        self.direction = direction
        self.best: FrozenTrial | None = None
        self.state_of = {t.number: t.state for t in trials}
        self.counts = dict.fromkeys(TrialState, 0)
        for trial in trials:
            self.counts[trial.state] += 1
            self.offer(trial)
        self.finished_before = self.done

    @property
    def done(self) -> int:
        return sum(self.counts[s] for s in TrialState if s.is_finished())

    def offer(self, trial: FrozenTrial) -> None:
        self.best = best_trial([t for t in (self.best, trial) if t], self.direction)

    def move(self, number: int, state: TrialState) -> None:
        before = self.state_of.get(number)
        if before is not None:
            self.counts[before] -= 1
        self.state_of[number] = state
        self.counts[state] += 1


class PlainLog(StudyListener):
    """One line per finished trial, written as it happens (for files, pipes and CI logs)."""

    def __init__(self, console: Console, study: Study) -> None:
        self.console = console
        self.metric = study.metric
        self.tally = _Tally(study.trials, study.direction)

    def trial_finished(self, study: Study, trial: FrozenTrial) -> None:
        self.tally.offer(trial)
        self.console.print(
            describe_end(trial, self.metric, self.tally.best), highlight=False, soft_wrap=True
        )
        self.console.file.flush()


class LiveView(PlainLog):
    """A live table of the study and its running trials, redrawn as reports arrive.

    Args:
        console: where to draw (a terminal; tests give a recording Console).
        study: the study about to run (its trials so far set the counts).
        total: the trial budget (None: no count limit).
        total_steps: a trial's last step from its params (its epochs), if known.
        min_interval_s: redraws for reports are at least this far apart, whatever their rate
            (a start or an end redraws at once).
    """

    def __init__(
        self,
        console: Console,
        study: Study,
        total: int | None,
        total_steps: Callable[[Mapping[str, Any]], int | None] = lambda params: None,
        min_interval_s: float = 0.125,
    ) -> None:
        super().__init__(console, study)
        self.name = study.name
        self.total = total
        self.total_steps = total_steps
        self.steps: dict[int, int | None] = {}  # running trial number -> its last step
        self.running: dict[int, FrozenTrial] = {}
        self.started = time.monotonic()
        self.lock = threading.Lock()
        self.live = Live(console=console, get_renderable=self.render, refresh_per_second=4)
        self.min_interval_s = min_interval_s
        self.last_redraw = 0.0

    def __enter__(self) -> LiveView:
        self.live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.running.clear()
        self.live.__exit__(*exc)

    # Events --------------------------------------------------------------------------------------
    def trial_started(self, study: Study, trial: FrozenTrial) -> None:
        with self.lock:
            self.tally.move(trial.number, TrialState.RUNNING)
            self.running[trial.number] = trial
            self.steps[trial.number] = self.total_steps(trial.params or {})
        self.redraw(force=True)

    def trial_reported(self, study: Study, trial: FrozenTrial, step: int) -> None:
        with self.lock:
            self.running[trial.number] = trial
        self.redraw()

    def trial_paused(self, study: Study, trial: FrozenTrial) -> None:
        self.end(trial)

    def trial_finished(self, study: Study, trial: FrozenTrial) -> None:
        super().trial_finished(study, trial)  # the line goes above the live area
        self.end(trial)

    def end(self, trial: FrozenTrial) -> None:
        with self.lock:
            self.steps.pop(trial.number, None)
            self.running.pop(trial.number, None)
            self.tally.move(trial.number, trial.state)
            self.tally.offer(trial)
        self.redraw(force=True)

    def redraw(self, force: bool = False) -> None:
        now = time.monotonic()
        if force or now - self.last_redraw >= self.min_interval_s:
            self.last_redraw = now
            self.live.refresh()

    # Drawing -------------------------------------------------------------------------------------
    def render(self) -> Group:
        with self.lock:
            return Group(self.study_line(), self.running_table())

    def study_line(self) -> Text:
        counts, best = self.tally.counts, self.tally.best
        done = self.tally.done
        line = Text()
        line.append(self.name, style="bold")
        line.append(f"  {done}/{self.total if self.total is not None else '?'} done")
        for state in (TrialState.RUNNING, TrialState.PAUSED, TrialState.PRUNED, TrialState.FAILED):
            line.append(f"  {state.value.lower()} {counts[state]}")
        best_text = "-" if best is None else f"{best.value:.4g} (trial {best.number})"
        line.append(f"  best {self.metric} {best_text}", style="green" if best else None)
        elapsed = time.monotonic() - self.started
        line.append(f"  elapsed {_clock(elapsed)}  eta {self.eta(done, elapsed)}")
        return line

    def eta(self, done: int, elapsed: float) -> str:
        """Time left at the pace of the trials finished in this run (unknown before one has)."""
        finished_here = done - self.tally.finished_before
        if self.total is None or finished_here <= 0:
            return "-"
        return _clock(elapsed / finished_here * max(self.total - done, 0))

    def running_table(self) -> Table:
        table = Table(box=None, pad_edge=False, show_edge=False, expand=False)
        table.add_column("#", justify="right", style="bold")
        table.add_column("params", overflow="ellipsis", no_wrap=True, max_width=70)
        table.add_column("epoch", justify="right")
        table.add_column(self.metric, justify="right")
        for number in sorted(self.running):
            trial = self.running[number]
            step = trial.last_step
            total = self.steps.get(number)
            epoch = "-" if step is None else f"{step}/{total}" if total else str(step)
            table.add_row(str(number), _params(trial.params), epoch, self.latest(trial))
        return table

    def latest(self, trial: FrozenTrial) -> str:
        values = trial.values_at(self.metric)
        return f"{values[max(values)]:.4g}" if values else "-"


def _params(params: Mapping[str, Any] | None) -> str:
    return " ".join(f"{k}={_short(v)}" for k, v in (params or {}).items())


def _short(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def _clock(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
