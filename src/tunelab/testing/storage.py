"""What every Storage must do. Subclass ``StorageContract`` and provide a ``storage`` fixture.

Set ``shared_between_processes = False`` on a backend whose storage object does not reach the same
data from another process (an in-memory SQLite database): the cases with several processes then
skip.
"""

from __future__ import annotations

import math
import multiprocessing as mp
import pickle

import pytest

from tunelab.errors import StorageError
from tunelab.storage.base import TRANSITIONS, TrialNumberTaken, TrialStateError
from tunelab.trial import TrialState

_PROCESSES = 4


def _claim_all(payload: bytes, study_id: int, owner: str) -> list[int]:
    """In a worker process: claim queued trials until none is left; the numbers claimed."""
    storage = pickle.loads(payload)
    claimed = []
    while (trial := storage.claim_trial(study_id, owner)) is not None:
        claimed.append(trial.number)
    return claimed


def _swap_rounds(payload: bytes, study_id: int, owner: str, rounds: int) -> list[int]:
    """In a worker process: in each round, read the claim and try to take it over; the rounds
    this process won."""
    storage = pickle.loads(payload)
    won = []
    for round_ in range(rounds):
        key = f"claim-{round_}"
        if storage.swap_study_attr(study_id, key, None, owner):
            won.append(round_)
    return won


def _resume_one(payload: bytes, study_id: int, trial_id: int, owner: str) -> bool:
    """In a worker process: try to resume one paused trial, then to finish it."""
    storage = pickle.loads(payload)
    if storage.claim_trial(study_id, owner, trial_id) is None:
        return False
    storage.finish_trial(trial_id, TrialState.COMPLETE, 1.0, owner=owner)
    return True


class StorageContract:
    shared_between_processes = True

    @pytest.fixture
    def study(self, storage):
        return storage.create_study("s", "maximize", "acc", spec={"name": "s"})

    def test_study_round_trip(self, storage, study):
        again = storage.get_study("s")
        assert (again.id, again.direction, again.metric, again.spec) == (
            study.id,
            "maximize",
            "acc",
            {"name": "s"},
        )
        assert [s.name for s in storage.list_studies()] == ["s"]

    def test_duplicate_and_unknown_studies_are_clear_errors(self, storage, study):
        with pytest.raises(StorageError, match="already exists"):
            storage.create_study("s", "maximize", "acc")
        with pytest.raises(StorageError, match="no study named 'nope'.*known studies: s"):
            storage.get_study("nope")

    def test_attrs_given_at_creation_are_there_at_once(self, storage):
        storage.create_study("t", "minimize", "loss", attrs={"seed": 5})
        assert storage.get_study("t").attrs == {"seed": 5}

    def test_study_attrs(self, storage, study):
        storage.set_study_attr(study.id, "result", {"test": 0.9})
        storage.set_study_attr(study.id, "seed", 3)
        assert storage.get_study("s").attrs == {"result": {"test": 0.9}, "seed": 3}

    def test_swap_study_attr_replaces_only_what_was_expected(self, storage, study):
        assert storage.swap_study_attr(study.id, "claim", None, {"owner": "a"})
        assert not storage.swap_study_attr(study.id, "claim", None, {"owner": "b"})
        assert storage.get_study("s").attrs["claim"] == {"owner": "a"}
        assert storage.swap_study_attr(study.id, "claim", {"owner": "a"}, None)
        assert storage.get_study("s").attrs["claim"] is None

    @staticmethod
    def new(storage, study, number, params=None, owner="me:1", max_trials=None):
        return storage.create_trial(
            study.id, number, owner, params or {"x": number}, 7, {}, max_trials
        )

    def test_create_numbers_densely_and_respects_the_budget(self, storage, study):
        assert [self.new(storage, study, n, max_trials=3).number for n in range(3)] == [0, 1, 2]
        assert self.new(storage, study, 3, max_trials=3) is None
        assert self.new(storage, study, 3).state is TrialState.RUNNING

    def test_a_taken_number_is_refused(self, storage, study):
        self.new(storage, study, 0, owner="other:2")
        with pytest.raises(TrialNumberTaken):
            self.new(storage, study, 0)
        assert [t.owner for t in storage.get_trials(study.id)] == ["other:2"]

    def test_created_trial_is_what_storage_holds(self, storage, study):
        created = self.new(storage, study, 0, {"lr": 0.1})
        (stored,) = storage.get_trials(study.id)
        assert created == stored

    def test_waiting_trials_are_claimed_in_order(self, storage, study):
        self.new(storage, study, 0)
        storage.enqueue_trial(study.id, {"x": 1})
        storage.enqueue_trial(study.id, {"x": 2})
        first, second = storage.claim_trial(study.id, "me:2"), storage.claim_trial(study.id, "me:2")
        assert (first.number, first.params, second.params) == (1, {"x": 1}, {"x": 2})
        assert first.state is TrialState.RUNNING and first.owner == "me:2"
        assert storage.claim_trial(study.id, "me:2") is None

    def test_trial_life_cycle(self, storage, study):
        storage.enqueue_trial(study.id, {"lr": 0.1})
        trial = storage.claim_trial(study.id, "me:1")
        storage.set_trial_params(trial.id, {"lr": 0.1}, 42, {"queued": True}, "me:1")
        storage.add_report(trial.id, 1, {"acc": 0.5}, "me:1")
        storage.add_report(trial.id, 2, {"acc": 0.6}, "me:1")
        storage.add_report(trial.id, 2, {"acc": 0.7}, "me:1")  # a repeated step replaces the first
        storage.finish_trial(trial.id, TrialState.COMPLETE, 0.7, {"acc": 0.7}, owner="me:1")
        (stored,) = storage.get_trials(study.id)
        assert stored.params == {"lr": 0.1} and stored.seed == 42
        assert stored.proposal == {"queued": True} and stored.source == "queue"
        assert stored.intermediate == {1: {"acc": 0.5}, 2: {"acc": 0.7}}
        assert (stored.state, stored.value, stored.metrics) == (
            TrialState.COMPLETE,
            0.7,
            {"acc": 0.7},
        )
        assert stored.duration is not None and stored.duration >= 0

    def test_a_pause_or_finish_may_replace_the_params(self, storage, study):
        """A define-by-run trial records the params it chose as it ran."""
        paused, finished = self.new(storage, study, 0), self.new(storage, study, 1)
        storage.pause_trial(paused.id, "me:1", {"checkpoint": None}, params={"x": 1.0})
        storage.finish_trial(finished.id, TrialState.COMPLETE, 1.0, owner="me:1", params={"y": 2})
        storage.finish_trial(self.new(storage, study, 2).id, TrialState.COMPLETE, 0.5, owner="me:1")
        first, second, third = storage.get_trials(study.id)
        assert (first.params, second.params) == ({"x": 1.0}, {"y": 2})
        assert third.params == {"x": 2}, "no params given: the created ones stay"

    def test_failed_trial_keeps_error_and_nan_value_becomes_none(self, storage, study):
        trial = self.new(storage, study, 0)
        storage.finish_trial(
            trial.id, TrialState.FAILED, math.nan, {"loss": math.nan}, "diverged", "me:1"
        )
        (stored,) = storage.get_trials(study.id, states=[TrialState.FAILED])
        assert stored.value is None and stored.error == "diverged"
        assert math.isnan(stored.metrics["loss"])

    def test_changes_returns_only_what_changed(self, storage, study):
        a, b = self.new(storage, study, 0), self.new(storage, study, 1)
        everything, revision = storage.changes(study.id, 0)
        assert {t.id for t in everything} == {a.id, b.id}
        assert storage.changes(study.id, revision) == ([], revision)
        storage.add_report(b.id, 1, {"acc": 0.1}, "me:1")
        changed, later = storage.changes(study.id, revision)
        assert [t.id for t in changed] == [b.id] and later > revision
        assert changed[0].intermediate == {1: {"acc": 0.1}}

    def test_requeue_only_touches_trials_still_running_under_the_same_owner(self, storage, study):
        dead = self.new(storage, study, 0, {"x": 1}, owner="host:1")
        storage.add_report(dead.id, 1, {"acc": 0.2}, "host:1")
        finished = self.new(storage, study, 1, owner="host:1")
        storage.finish_trial(finished.id, TrialState.COMPLETE, 1.0, owner="host:1")
        snapshot = {t.id: t for t in storage.get_trials(study.id)}
        assert storage.requeue_trials(snapshot.values()) == [dead.id]
        again = {t.id: t for t in storage.get_trials(study.id)}
        assert again[dead.id].state is TrialState.WAITING
        assert (again[dead.id].params, again[dead.id].seed, again[dead.id].retries) == (
            {"x": 1},
            7,
            1,
        )
        assert again[dead.id].intermediate == {}
        assert again[finished.id].state is TrialState.COMPLETE

    def test_heartbeat(self, storage, study):
        trial = self.new(storage, study, 0)
        before = storage.get_trials(study.id)[0].heartbeat_at
        storage.heartbeat([trial.id])
        assert storage.get_trials(study.id)[0].heartbeat_at >= before

    # Lifecycle: the transitions of TRANSITIONS, enforced with the owner ------------------------------
    def test_a_finished_trial_cannot_be_finished_again(self, storage, study):
        trial = self.new(storage, study, 0)
        storage.finish_trial(trial.id, TrialState.COMPLETE, 1.0, owner="me:1")
        with pytest.raises(TrialStateError, match="trial 0 is COMPLETE; it cannot become FAILED"):
            storage.finish_trial(trial.id, TrialState.FAILED, error="late", owner="me:1")
        (stored,) = storage.get_trials(study.id)
        assert (stored.state, stored.value, stored.error) == (TrialState.COMPLETE, 1.0, None)

    def test_only_the_owner_writes_to_a_running_trial(self, storage, study):
        trial = self.new(storage, study, 0, owner="me:1")
        with pytest.raises(TrialStateError, match="RUNNING under me:1, not other:2"):
            storage.add_report(trial.id, 1, {"acc": 0.5}, "other:2")
        with pytest.raises(TrialStateError, match="RUNNING under me:1, not other:2"):
            storage.finish_trial(trial.id, TrialState.COMPLETE, 1.0, owner="other:2")
        with pytest.raises(TrialStateError, match="RUNNING under me:1"):
            storage.set_trial_attr(trial.id, "rung", 1, owner="other:2")
        (stored,) = storage.get_trials(study.id)
        assert (stored.state, stored.intermediate, stored.attrs) == (TrialState.RUNNING, {}, {})

    def test_a_finished_trial_takes_no_reports(self, storage, study):
        trial = self.new(storage, study, 0)
        storage.finish_trial(trial.id, TrialState.PRUNED, owner="me:1")
        with pytest.raises(TrialStateError, match="PRUNED, so it takes no reports"):
            storage.add_report(trial.id, 3, {"acc": 0.5}, "me:1")

    def test_pause_keeps_reports_and_attrs_and_any_process_resumes(self, storage, study):
        trial = self.new(storage, study, 0, owner="me:1")
        storage.add_report(trial.id, 1, {"acc": 0.3}, "me:1")
        storage.add_report(trial.id, 2, {"acc": 0.4}, "me:1")
        storage.pause_trial(trial.id, "me:1", {"checkpoint": {"step": 2}, "rung": 0})
        (paused,) = storage.get_trials(study.id)
        assert (paused.state, paused.owner) == (TrialState.PAUSED, None)
        assert paused.intermediate == {1: {"acc": 0.3}, 2: {"acc": 0.4}}
        assert paused.attrs == {"checkpoint": {"step": 2}, "rung": 0}
        assert storage.claim_trial(study.id, "other:2") is None, "a paused trial is not queued"
        resumed = storage.claim_trial(study.id, "other:2", paused.id)
        assert (resumed.state, resumed.owner, resumed.attrs["rung"]) == (
            TrialState.RUNNING,
            "other:2",
            0,
        )
        assert storage.claim_trial(study.id, "third:3", paused.id) is None, "resumed twice"
        storage.add_report(trial.id, 3, {"acc": 0.5}, "other:2")
        storage.finish_trial(trial.id, TrialState.COMPLETE, 0.5, owner="other:2")
        (done,) = storage.get_trials(study.id)
        assert sorted(done.intermediate) == [1, 2, 3] and done.state is TrialState.COMPLETE

    def test_a_paused_trial_can_be_pruned_but_not_completed(self, storage, study):
        trial = self.new(storage, study, 0)
        storage.pause_trial(trial.id, "me:1")
        with pytest.raises(TrialStateError, match="PAUSED; it cannot become COMPLETE"):
            storage.finish_trial(trial.id, TrialState.COMPLETE, 1.0)
        storage.finish_trial(trial.id, TrialState.PRUNED)
        assert storage.get_trials(study.id)[0].state is TrialState.PRUNED

    def test_every_forbidden_transition_is_refused(self, storage, study):
        """Walk a trial into each state, then try every move TRANSITIONS does not allow."""
        number = 0
        for source in TrialState:
            for target in TrialState:
                if target in TRANSITIONS[source] or not target.is_finished():
                    continue
                trial = self._trial_in(storage, study, number, source)
                number += 1
                with pytest.raises(TrialStateError):
                    storage.finish_trial(trial.id, target, owner="me:1")

    def _trial_in(self, storage, study, number, state):
        if state is TrialState.WAITING:
            return storage.enqueue_trial(study.id, {"x": number})
        trial = self.new(storage, study, number)
        if state is TrialState.PAUSED:
            storage.pause_trial(trial.id, "me:1")
        elif state.is_finished():
            storage.finish_trial(trial.id, state, owner="me:1")
        return trial

    def test_trial_attrs_merge_and_survive_the_trial_finishing(self, storage, study):
        trial = self.new(storage, study, 0)
        storage.set_trial_attr(trial.id, "rung", 0, owner="me:1")
        storage.set_trial_attr(trial.id, "rung", 1, owner="me:1")
        storage.finish_trial(trial.id, TrialState.COMPLETE, 1.0, owner="me:1", attrs={"fold": 2})
        storage.set_trial_attr(trial.id, "note", "kept")  # nobody owns a finished trial
        assert storage.get_trials(study.id)[0].attrs == {"rung": 1, "fold": 2, "note": "kept"}

    def test_requeue_keeps_reports_up_to_the_checkpoint(self, storage, study):
        trial = self.new(storage, study, 0, owner="host:1")
        for step in (1, 2):
            storage.add_report(trial.id, step, {"acc": step / 10}, "host:1")
        storage.pause_trial(trial.id, "host:1", {"checkpoint": {"step": 2}})
        resumed = storage.claim_trial(study.id, "host:2", trial.id)
        storage.add_report(trial.id, 3, {"acc": 0.3}, "host:2")  # then host:2 dies
        storage.requeue_trials([storage.get_trials(study.id)[0]])
        (again,) = storage.get_trials(study.id)
        assert again.state is TrialState.WAITING and resumed.owner == "host:2"
        assert sorted(again.intermediate) == [1, 2] and again.attrs["checkpoint"] == {"step": 2}

    # Several processes ---------------------------------------------------------------------------
    def _in_processes(self, storage, function, *args_per_process):
        if not self.shared_between_processes:
            pytest.skip("this storage is not shared between processes")
        payload = pickle.dumps(storage)
        with mp.get_context("spawn").Pool(len(args_per_process)) as pool:
            return pool.starmap(function, [(payload, *args) for args in args_per_process])

    def test_processes_claiming_at_once_take_each_trial_once(self, storage, study):
        for x in range(60):
            storage.enqueue_trial(study.id, {"x": x})
        claims = self._in_processes(
            storage, _claim_all, *[(study.id, f"p:{i}") for i in range(_PROCESSES)]
        )
        numbers = [n for claimed in claims for n in claimed]
        assert sorted(numbers) == list(range(60)), "a trial was claimed twice or not at all"
        trials = storage.get_trials(study.id)
        assert all(t.state is TrialState.RUNNING for t in trials)
        owners = {t.number: t.owner for t in trials}
        for i, claimed in enumerate(claims):
            assert all(owners[n] == f"p:{i}" for n in claimed)

    def test_processes_swapping_one_attr_at_once_win_it_once(self, storage, study):
        won = self._in_processes(
            storage, _swap_rounds, *[(study.id, f"p:{i}", 30) for i in range(_PROCESSES)]
        )
        rounds = sorted(r for by_one in won for r in by_one)
        assert rounds == list(range(30)), "a claim was won twice or not at all"
        attrs = storage.get_study(study.name).attrs
        for i, by_one in enumerate(won):
            assert all(attrs[f"claim-{r}"] == f"p:{i}" for r in by_one)

    def test_processes_resuming_one_paused_trial_at_once_resume_it_once(self, storage, study):
        for round_ in range(5):
            trial = self.new(storage, study, round_)
            storage.pause_trial(trial.id, "me:1")
            wins = self._in_processes(
                storage,
                _resume_one,
                *[(study.id, trial.id, f"p:{i}") for i in range(_PROCESSES)],
            )
            assert sum(wins) == 1, f"round {round_}: {sum(wins)} processes resumed one trial"
