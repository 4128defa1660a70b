"""Trials: the handle user code receives, and the immutable record storage hands out."""

from __future__ import annotations

import enum
import math
import time
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tunelab.errors import TrialTimeout

if TYPE_CHECKING:  # the space (and numpy) load at the first suggestion, not with storage
    from tunelab.space import Param

__all__ = ["Decision", "FrozenTrial", "Trial", "TrialState"]


class TrialState(enum.StrEnum):
    """Lifecycle of a trial. WAITING trials are queued (manual configs, re-queued after a crash);
    PAUSED ones keep their reports and checkpoint until a scheduler resumes them, in any process.

    The allowed moves between states are :data:`tunelab.storage.TRANSITIONS`.
    """

    WAITING = "WAITING"
    RUNNING = "RUNNING"
    PAUSED = "PAUSED"
    COMPLETE = "COMPLETE"
    PRUNED = "PRUNED"
    FAILED = "FAILED"

    def is_finished(self) -> bool:
        return self in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAILED)


class Decision(enum.StrEnum):
    """What a scheduler answers to each report: go on, pause (keep the checkpoint; the trial may be
    resumed later, from where it stopped), or stop for good (PRUNED)."""

    CONTINUE = "CONTINUE"
    PAUSE = "PAUSE"
    STOP = "STOP"


@dataclass(frozen=True)
class FrozenTrial:
    """A snapshot of one trial as storage recorded it.

    ``params`` holds only the active parameters: a conditional parameter whose condition is false
    is absent, never filled with a made-up value. ``intermediate`` maps step -> reported metrics.
    ``revision`` is the study revision of the trial's last change in storage. A trial its
    scheduler paused or pruned has ``attrs["stopped"]``: ``{"decision", "step", "by", "why"}``
    (by: the scheduler; why: its :meth:`~tunelab.schedulers.Scheduler.explain`); a resumed trial
    that then ends otherwise has it cleared to None (its rungs are in ``intermediate``).
    """

    id: int
    number: int
    state: TrialState
    params: dict[str, Any] | None
    value: float | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    intermediate: dict[int, dict[str, float]] = field(default_factory=dict)
    seed: int | None = None
    source: str = "strategy"
    proposal: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    started_at: float | None = None
    finished_at: float | None = None
    heartbeat_at: float | None = None
    owner: str | None = None
    retries: int = 0
    revision: int = 0
    attrs: dict[str, Any] = field(default_factory=dict)

    @property
    def last_step(self) -> int | None:
        """The highest step reported so far (None before the first report)."""
        return max(self.intermediate) if self.intermediate else None

    @property
    def duration(self) -> float | None:
        """Seconds from start to finish (None while running)."""
        if self.started_at is None or self.finished_at is None:
            return None
        return self.finished_at - self.started_at

    @property
    def user_attrs(self) -> dict[str, Any]:
        """What the objective stored with :meth:`Trial.set_user_attr` (per-fold scores, ...)."""
        return self.attrs.get("user_attrs", {})

    def values_at(self, metric: str) -> dict[int, float]:
        """The reported values of ``metric`` by step (steps that did not report it are left out)."""
        return {s: m[metric] for s, m in self.intermediate.items() if metric in m}


Reporter = Callable[[int, int, dict[str, float]], Decision]

_STEP_KEY = "tunelab_step"


class Trial:
    """The handle an objective receives: its parameters, its seed, a directory, and a way to report.

    Example:
        >>> def objective(trial):
        ...     for epoch in range(10):
        ...         score = 1 - 1 / (epoch + 1 + trial.params["x"])
        ...         trial.report(epoch, score=score)
        ...         if trial.should_stop():
        ...             break
        ...     return score
    """

    def __init__(
        self,
        number: int,
        params: Mapping[str, Any],
        seed: int,
        directory: Path,
        reporter: Reporter,
        deadline: float | None = None,
        resumed_from: int | None = None,
        clock: Callable[[], float] = time.time,
        metric: str = "value",
    ) -> None:
        self.number = number
        self.params = dict(params)
        self.seed = seed
        self.dir = Path(directory)
        #: The step this run continues from (the trial was paused there), or None for a fresh start.
        self.resumed_from = resumed_from
        self._reporter = reporter
        self._deadline = deadline
        self._clock = clock
        self._decision = Decision.CONTINUE
        self.last_step: int | None = resumed_from
        self.last_metrics: dict[str, float] = {}
        #: The step of the checkpoint saved in this run, if any (the driver records it).
        self.checkpoint_step: int | None = None
        #: Things that went wrong without failing the trial; stored with it.
        self.warnings: list[str] = []
        #: Plain values the objective keeps with the trial (:meth:`set_user_attr`).
        self.user_attrs: dict[str, Any] = {}
        #: The step that ends this trial's training (its last epoch), when the objective knows
        #: it: a scheduler's STOP or PAUSE at or past it is moot, so the trial ends COMPLETE.
        self.final_step: int | None = None
        #: The study's metric: what ``report(value, step)``, Optuna's form, reports.
        self.metric = metric
        #: What the objective suggested (define-by-run): name -> the parameter it described.
        self.distributions: dict[str, Param] = {}

    def report(self, step: float, value: int | None = None, /, **metrics: float) -> Decision:
        """Record metrics at ``step`` (an epoch, say) and learn whether to go on:
        ``trial.report(3, val_loss=0.4, val_accuracy=0.9)``. Optuna's form,
        ``trial.report(value, step)``, reports the study's metric.

        The answer is also what :meth:`should_stop` returns until the next report. At or past
        :attr:`final_step` it is always CONTINUE: the training is over, there is nothing left
        to stop or pause. Raises :class:`~tunelab.errors.TrialTimeout` once the trial's time
        limit has passed.
        """
        if value is not None and not metrics:  # Optuna's report(value, step)
            step, metrics = value, {self.metric: step}
        if not metrics:
            raise ValueError(
                "report() needs at least one metric, e.g. trial.report(3, val_loss=0.4)"
            )
        clean = {name: float(value) for name, value in metrics.items()}
        self.last_step, self.last_metrics = int(step), clean
        decision = self._reporter(self.number, int(step), clean)
        if self.final_step is not None and self.last_step >= self.final_step:
            decision = Decision.CONTINUE
        self._decision = decision
        self._check_deadline()
        return self._decision

    def should_stop(self) -> bool:
        """True when the scheduler asked this trial to stop (or pause) at its last report: leave
        the training loop. Save a checkpoint first when :meth:`should_pause` is True."""
        self._check_deadline()
        return self._decision is not Decision.CONTINUE

    def should_prune(self) -> bool:
        """Optuna's name for :meth:`should_stop` (then ``raise tunelab.TrialPruned()``)."""
        return self.should_stop()

    def should_pause(self) -> bool:
        """True when the scheduler paused this trial: save a checkpoint and return; the trial
        may be resumed later (``resumed_from`` then says at which step)."""
        return self._decision is Decision.PAUSE

    def part(self, directory: Path, reporter: Reporter) -> Trial:
        """A handle for one part of this trial's work (a fold of a cross-validation): the same
        number, params, seed, time limit and clock, its own directory and reporter, so the
        part's reports go where its owner says instead of to the scheduler."""
        return Trial(
            self.number,
            self.params,
            self.seed,
            directory,
            reporter,
            self._deadline,
            clock=self._clock,
            metric=self.metric,
        )

    # Define-by-run --------------------------------------------------------------------------------
    def suggest_float(
        self, name: str, low: float, high: float, *, step: float | None = None, log: bool = False
    ) -> float:
        """A real number for ``name`` in [low, high] (Optuna's ``suggest_float``), chosen by the
        study's strategy once it has seen the parameter, at random before.

        Suggestions define the search space as the objective runs: they may depend on earlier
        answers (a branch suggests its own parameters). A resumed or re-run trial gets the same
        answers.
        """
        from tunelab.space import Float

        return self._suggest(name, Float(low, high, log=log, step=step, name=name))

    def suggest_int(
        self, name: str, low: int, high: int, *, step: int = 1, log: bool = False
    ) -> int:
        """An integer for ``name`` in [low, high], both included (Optuna's ``suggest_int``)."""
        from tunelab.space import Int

        return self._suggest(
            name, Int(low, high, log=log, step=None if step == 1 else step, name=name)
        )

    def suggest_categorical(self, name: str, choices: Sequence[Any]) -> Any:
        """One of ``choices`` for ``name`` (Optuna's ``suggest_categorical``)."""
        from tunelab.space import Categorical

        return self._suggest(name, Categorical(list(choices), name=name))

    def _suggest(self, name: str, param: Param) -> Any:
        import numpy as np

        from tunelab.space import _plain

        known = self.distributions.get(name)
        if known is not None:
            if known != param:
                raise ValueError(
                    f"trial {self.number} suggested {name!r} twice with different ranges "
                    f"({_shown(known)}, then {_shown(param)}); one name, one range per trial"
                )
            return self.params[name]
        value = self.params.get(name)
        if name not in self.params or not param.contains(value):
            # not proposed (new to the study, or outside this range): a draw of its own, the
            # same whenever this trial runs
            draw = np.random.default_rng([self.seed, zlib.crc32(name.encode())]).random()
            value = param.from_unit(draw)
        self.params[name] = value = _plain(value)
        self.distributions[name] = param
        return value

    def set_user_attr(self, key: str, value: Any) -> None:
        """Keep a JSON-plain value with the trial (Optuna's ``set_user_attr``); it is stored when
        the trial ends or pauses, and read back as :attr:`FrozenTrial.user_attrs`."""
        self.user_attrs[key] = value

    def warn(self, message: str) -> None:
        """Record a warning with the trial (shown by ``tunelab trials``); the trial goes on."""
        self.warnings.append(message)

    @property
    def decision(self) -> Decision:
        return self._decision

    def checkpoint_path(self, name: str = "checkpoint.pt") -> Path:
        """Where this trial keeps a checkpoint; pause-and-resume schedulers read it back."""
        self.dir.mkdir(parents=True, exist_ok=True)
        return self.dir / name

    def save_checkpoint(self, state: Mapping[str, Any], name: str = "checkpoint.pt") -> Path:
        """Save tensors and plain values (a model's and optimizer's state dicts, ...) as the
        checkpoint of the last reported step; a resumed run continues from that step.

        One file per step (``checkpoint-step4.pt``): the checkpoint this run resumed from stays
        until storage has recorded the new one, so a crash in between resumes from the old one
        instead of finding a newer file than storage knows and starting over. Older ones go.
        """
        import torch

        path = self._checkpoint_file(name, self.last_step)
        tmp = path.with_suffix(path.suffix + ".tmp")
        torch.save({**state, _STEP_KEY: self.last_step}, tmp)
        tmp.replace(path)  # atomic: a crash mid-save never leaves a torn checkpoint
        kept = {path, self._checkpoint_file(name, self.resumed_from)}
        for old in path.parent.glob(f"{Path(name).stem}-step*{Path(name).suffix}"):
            if old not in kept:
                old.unlink(missing_ok=True)
        self.checkpoint_step = self.last_step
        return path

    def load_checkpoint(self, name: str = "checkpoint.pt") -> dict[str, Any] | None:
        """The checkpoint this run resumes from, or None on a fresh start.

        Loaded with ``weights_only=True`` (tensors and plain values, never pickled code). A
        missing, unreadable or mismatched checkpoint gives None and a warning on the trial, and
        ``resumed_from`` becomes None: the trial starts again from step 0.
        """
        if self.resumed_from is None:
            return None
        import torch

        path = self._checkpoint_file(name, self.resumed_from)
        try:
            state = torch.load(path, weights_only=True)
        except FileNotFoundError:
            return self.restart(f"checkpoint {path} is missing")
        except Exception as exc:  # noqa: BLE001 - a torn or foreign file is a restart, not a crash
            return self.restart(f"checkpoint {path} is unreadable ({type(exc).__name__})")
        step = state.pop(_STEP_KEY, None) if isinstance(state, dict) else None
        if step != self.resumed_from:
            return self.restart(
                f"checkpoint {path} is of step {step}, not of step {self.resumed_from}"
            )
        return state

    def _checkpoint_file(self, name: str, step: int | None) -> Path:
        base = Path(name)
        return self.checkpoint_path(f"{base.stem}-step{step}{base.suffix}")

    def restart(self, why: str) -> None:
        """Give up the checkpoint (``why`` is recorded as a warning) and start over from step 0;
        for an objective whose checkpoint loads but does not fit what it trains."""
        self.warn(f"{why}; restarted from step 0")
        self.resumed_from = None
        self.last_step = None
        return None

    def _check_deadline(self) -> None:
        if self._deadline is not None and self._clock() > self._deadline:
            raise TrialTimeout(
                "time limit exceeded"
                + (f" at step {self.last_step}" if self.last_step is not None else "")
            )


def _shown(param: Param) -> str:
    from tunelab.space import param_to_dict

    return ", ".join(f"{k}={v}" for k, v in param_to_dict(param).items() if k != "type")


def is_bad_number(value: float | None) -> bool:
    """NaN or infinite: a diverged metric."""
    return value is None or not math.isfinite(value)
