"""What every Storage must do. Subclass ``StorageContract`` and provide a ``storage`` fixture."""

from __future__ import annotations

import math

import pytest

from tunelab.errors import StorageError
from tunelab.storage.base import TrialNumberTaken
from tunelab.trial import TrialState


class StorageContract:
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
        storage.set_trial_params(trial.id, {"lr": 0.1}, 42, {"queued": True})
        storage.add_report(trial.id, 1, {"acc": 0.5})
        storage.add_report(trial.id, 2, {"acc": 0.6})
        storage.add_report(trial.id, 2, {"acc": 0.7})  # a repeated step replaces the first
        storage.finish_trial(trial.id, TrialState.COMPLETE, 0.7, {"acc": 0.7})
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

    def test_failed_trial_keeps_error_and_nan_value_becomes_none(self, storage, study):
        trial = self.new(storage, study, 0)
        storage.finish_trial(trial.id, TrialState.FAILED, math.nan, {"loss": math.nan}, "diverged")
        (stored,) = storage.get_trials(study.id, states=[TrialState.FAILED])
        assert stored.value is None and stored.error == "diverged"
        assert math.isnan(stored.metrics["loss"])

    def test_changes_returns_only_what_changed(self, storage, study):
        a, b = self.new(storage, study, 0), self.new(storage, study, 1)
        everything, revision = storage.changes(study.id, 0)
        assert {t.id for t in everything} == {a.id, b.id}
        assert storage.changes(study.id, revision) == ([], revision)
        storage.add_report(b.id, 1, {"acc": 0.1})
        changed, later = storage.changes(study.id, revision)
        assert [t.id for t in changed] == [b.id] and later > revision
        assert changed[0].intermediate == {1: {"acc": 0.1}}

    def test_requeue_only_touches_trials_still_running_under_the_same_owner(self, storage, study):
        dead = self.new(storage, study, 0, {"x": 1}, owner="host:1")
        storage.add_report(dead.id, 1, {"acc": 0.2})
        finished = self.new(storage, study, 1, owner="host:1")
        storage.finish_trial(finished.id, TrialState.COMPLETE, 1.0)
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
