"""The storage interface: the single source of truth for studies, trials and their reports.

Storage never imports torch and never decides anything; the study's driver decides and storage
records. Every method is one transaction, so several processes can share one study.

Every trial write is conditional: the move must be in :data:`TRANSITIONS`, and a RUNNING trial is
written only by its owner (the process that claimed it). A write that breaks either rule raises
:class:`TrialStateError` and changes nothing, so two drivers can never both finish, or both claim,
one trial.
"""

from __future__ import annotations

import abc
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from tunelab.errors import StorageError, StorageUnavailable
from tunelab.trial import FrozenTrial, TrialState

__all__ = [
    "SCHEMA_VERSION",
    "TRANSITIONS",
    "Storage",
    "StudyNameTaken",
    "StudyRecord",
    "StorageUnavailable",
    "TrialNumberTaken",
    "TrialStateError",
    "check_transition",
]

#: The layout of stored data. A database of an older version is upgraded in place when opened;
#: one of a newer version is refused. 1: release 0.1.0; 2: per-trial attributes, PAUSED trials.
SCHEMA_VERSION = 2

_W, _R, _P = TrialState.WAITING, TrialState.RUNNING, TrialState.PAUSED
_DONE = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAILED)

#: The moves a trial may make, from each state. RUNNING -> WAITING is the re-queue of a trial whose
#: process died; PAUSED -> RUNNING is a resume (by any process); PAUSED -> PRUNED a paused trial that
#: a scheduler will never resume. Finished trials never change state again.
TRANSITIONS: Mapping[TrialState, frozenset[TrialState]] = {
    _W: frozenset({_R}),
    _R: frozenset({_W, _P, *_DONE}),
    _P: frozenset({_R, TrialState.PRUNED}),
    **{state: frozenset() for state in _DONE},
}


class StudyNameTaken(StorageError):
    """A study of that name exists already (another process may have created it first)."""


class TrialNumberTaken(StorageError):
    """Another process created that trial number first (optimistic numbering lost a race)."""


class TrialStateError(StorageError):
    """A trial write that its current state or owner does not allow; nothing was written."""


def check_transition(
    trial: FrozenTrial, to: TrialState | None, owner: str | None
) -> TrialStateError | None:
    """Why ``owner`` may not move ``trial`` to ``to`` (None: a write that keeps its state), or None
    when it may. Backends enforce the same rule in their conditional writes; this names the fault."""
    if to is not None and to is not trial.state and to not in TRANSITIONS[trial.state]:
        allowed = ", ".join(sorted(TRANSITIONS[trial.state])) or "nothing (it is finished)"
        return TrialStateError(
            f"trial {trial.number} is {trial.state}; it cannot become {to} "
            f"(from {trial.state}: {allowed})"
        )
    if trial.state is TrialState.RUNNING and trial.owner != owner:
        return TrialStateError(
            f"trial {trial.number} is RUNNING under {trial.owner}, not {owner}: only the process "
            "that claimed it writes to it (if that was this one, it was presumed dead and the "
            "trial re-queued)"
        )
    if to is None and trial.state is not TrialState.RUNNING:
        return TrialStateError(f"trial {trial.number} is {trial.state}, so it takes no reports")
    return None


@dataclass(frozen=True)
class StudyRecord:
    """A study as stored: what it optimises, the spec it came from, and free-form attributes."""

    id: int
    name: str
    direction: str
    metric: str
    spec: dict[str, Any] | None = None
    attrs: dict[str, Any] = field(default_factory=dict)
    created_at: float | None = None


class Storage(abc.ABC):
    """Where studies and trials live. See :class:`tunelab.storage.SQLStorage`."""

    # Studies -------------------------------------------------------------------------------------
    @abc.abstractmethod
    def create_study(
        self,
        name: str,
        direction: str,
        metric: str,
        spec: Mapping[str, Any] | None = None,
        attrs: Mapping[str, Any] | None = None,
    ) -> StudyRecord:
        """Create a study with its first attributes, in one transaction (another process never sees
        it half made); raises StorageError if the name is taken."""

    @abc.abstractmethod
    def get_study(self, name: str) -> StudyRecord:
        """The study called ``name``; raises StorageError naming the known studies if absent."""

    @abc.abstractmethod
    def list_studies(self) -> list[StudyRecord]: ...

    @abc.abstractmethod
    def set_study_attr(self, study_id: int, key: str, value: Any) -> None:
        """Store a JSON-ready value under ``key`` (e.g. the final test result)."""

    @abc.abstractmethod
    def swap_study_attr(self, study_id: int, key: str, expected: Any, value: Any) -> bool:
        """Store ``value`` under ``key`` only if ``key`` still holds ``expected`` (an absent key
        holds None), in one transaction; True when it did. Of processes that read the same
        value and each try to replace it, exactly one succeeds: a claim (the final retrain's)."""

    # Trials --------------------------------------------------------------------------------------
    @abc.abstractmethod
    def enqueue_trial(
        self,
        study_id: int,
        params: Mapping[str, Any],
        seed: int | None = None,
        source: str = "queue",
    ) -> FrozenTrial:
        """Add a WAITING trial with given params; it runs before any the strategy proposes."""

    @abc.abstractmethod
    def claim_trial(
        self, study_id: int, owner: str, trial_id: int | None = None
    ) -> FrozenTrial | None:
        """Atomically take a trial: it becomes RUNNING under ``owner``.

        Without ``trial_id``, the oldest WAITING trial (None when there is none left). With it,
        that WAITING or PAUSED trial (a resume), or None when another process took it first.
        """

    @abc.abstractmethod
    def create_trial(
        self,
        study_id: int,
        number: int,
        owner: str,
        params: Mapping[str, Any],
        seed: int,
        proposal: Mapping[str, Any],
        max_trials: int | None = None,
    ) -> FrozenTrial | None:
        """Create RUNNING trial ``number`` with its params, in one transaction.

        ``number`` must be the study's next (numbers are dense from 0, so ``number < max_trials``
        is the budget check). When another process took it first, raises TrialNumberTaken: the
        caller re-reads the study and asks again. Returns None when the budget is spent.
        """

    @abc.abstractmethod
    def set_trial_params(
        self,
        trial_id: int,
        params: Mapping[str, Any],
        seed: int,
        proposal: Mapping[str, Any],
        owner: str,
    ) -> int:
        """Record the params a claimed queued trial runs with (validated, with its seed).

        This and the other trial writes return the study revision they took (see ``changes``), and
        raise TrialStateError when the trial is not RUNNING under ``owner``."""

    @abc.abstractmethod
    def add_report(self, trial_id: int, step: int, metrics: Mapping[str, float], owner: str) -> int:
        """Record intermediate metrics at ``step`` (a repeated step replaces the earlier one)."""

    @abc.abstractmethod
    def pause_trial(
        self,
        trial_id: int,
        owner: str,
        attrs: Mapping[str, Any] | None = None,
        params: Mapping[str, Any] | None = None,
    ) -> int:
        """RUNNING -> PAUSED: reports kept, owner cleared, ``attrs`` merged into the trial's
        (where its checkpoint is, why it paused), so any process can resume it later; ``params``,
        when given, replace the trial's (what a define-by-run trial chose as it ran)."""

    @abc.abstractmethod
    def finish_trial(
        self,
        trial_id: int,
        state: TrialState,
        value: float | None = None,
        metrics: Mapping[str, float] | None = None,
        error: str | None = None,
        owner: str | None = None,
        attrs: Mapping[str, Any] | None = None,
        params: Mapping[str, Any] | None = None,
    ) -> int:
        """Mark a trial COMPLETE, PRUNED or FAILED, with its final value, metrics or error text,
        and ``attrs`` merged into its attributes; ``params``, when given, replace the trial's.
        A RUNNING trial needs its ``owner``."""

    @abc.abstractmethod
    def set_trial_attr(self, trial_id: int, key: str, value: Any, owner: str | None = None) -> int:
        """Store a JSON-ready value under ``key`` with the trial (its rung, fold, group...). A
        RUNNING trial is written only by its ``owner``."""

    @abc.abstractmethod
    def heartbeat(self, trial_ids: Iterable[int]) -> None:
        """Tell other processes these RUNNING trials are alive."""

    @abc.abstractmethod
    def requeue_trials(self, trials: Iterable[FrozenTrial]) -> list[int]:
        """Put RUNNING trials whose process died back in the queue (params, seed, attributes kept).

        Reports after the trial's recorded checkpoint (``attrs["checkpoint"]["step"]``) are dropped,
        all of them when it has none, so a retry continues from its checkpoint or starts over. A
        trial that changed owner or state meanwhile is left alone. Returns the requeued ids."""

    @abc.abstractmethod
    def get_trials(
        self, study_id: int, states: Iterable[TrialState] | None = None
    ) -> list[FrozenTrial]:
        """Trials of a study by number, with their reports."""

    @abc.abstractmethod
    def changes(self, study_id: int, after_revision: int) -> tuple[list[FrozenTrial], int]:
        """Trials changed since ``after_revision`` (0: all), and the study's revision now.

        Every write to a study's trials takes the study's next revision, so a driver keeps its view
        current by reading only what changed, however many trials the study holds."""
