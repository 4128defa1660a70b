"""The storage interface: the single source of truth for studies, trials and their reports.

Storage never imports torch and never decides anything; the study's driver decides and storage
records. Every method is one transaction, so several processes can share one study.
"""

from __future__ import annotations

import abc
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from tunelab.errors import StorageError
from tunelab.trial import FrozenTrial, TrialState

__all__ = ["Storage", "StudyRecord", "TrialNumberTaken"]


class TrialNumberTaken(StorageError):
    """Another process created that trial number first (optimistic numbering lost a race)."""


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
    def claim_trial(self, study_id: int, owner: str) -> FrozenTrial | None:
        """Atomically take the oldest WAITING trial (it becomes RUNNING under ``owner``), or None."""

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
        self, trial_id: int, params: Mapping[str, Any], seed: int, proposal: Mapping[str, Any]
    ) -> int:
        """Record the params a claimed queued trial runs with (validated, with its seed).

        This and the other trial writes return the study revision they took (see ``changes``)."""

    @abc.abstractmethod
    def add_report(self, trial_id: int, step: int, metrics: Mapping[str, float]) -> int:
        """Record intermediate metrics at ``step`` (a repeated step replaces the earlier one)."""

    @abc.abstractmethod
    def finish_trial(
        self,
        trial_id: int,
        state: TrialState,
        value: float | None = None,
        metrics: Mapping[str, float] | None = None,
        error: str | None = None,
    ) -> int:
        """Mark a trial COMPLETE, PRUNED or FAILED, with its final value, metrics or error text."""

    @abc.abstractmethod
    def heartbeat(self, trial_ids: Iterable[int]) -> None:
        """Tell other processes these RUNNING trials are alive."""

    @abc.abstractmethod
    def requeue_trials(self, trials: Iterable[FrozenTrial]) -> list[int]:
        """Put RUNNING trials whose process died back in the queue (params and seed kept, reports
        dropped). A trial that changed owner or state meanwhile is left alone. Returns requeued ids."""

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
