"""What every Storage must do. Subclass ``StorageContract`` and provide a ``storage`` fixture."""

from __future__ import annotations

import math

import pytest

from tunelab.errors import StorageError
from tunelab.trial import TrialState


class StorageContract:
    @pytest.fixture
    def study(self, storage):
        return storage.create_study("s", "maximize", "acc", spec={"name": "s"})

    def test_study_round_trip(self, storage, study):
        again = storage.get_study("s")
        assert (again.id, again.direction, again.metric, again.spec) == (study.id, "maximize", "acc", {"name": "s"})
        assert [s.name for s in storage.list_studies()] == ["s"]

    def test_duplicate_and_unknown_studies_are_clear_errors(self, storage, study):
        with pytest.raises(StorageError, match="already exists"):
            storage.create_study("s", "maximize", "acc")
        with pytest.raises(StorageError, match="no study named 'nope'.*known studies: s"):
            storage.get_study("nope")

    def test_study_attrs(self, storage, study):
        storage.set_study_attr(study.id, "result", {"test": 0.9})
        storage.set_study_attr(study.id, "seed", 3)
        assert storage.get_study("s").attrs == {"result": {"test": 0.9}, "seed": 3}

    def test_claim_numbers_trials_and_respects_the_budget(self, storage, study):
        numbers = [storage.claim_trial(study.id, "me:1", 3).number for _ in range(3)]
        assert numbers == [0, 1, 2]
        assert storage.claim_trial(study.id, "me:1", 3) is None
        assert storage.claim_trial(study.id, "me:1", None).number == 3

    def test_waiting_trials_are_claimed_first_in_order(self, storage, study):
        storage.claim_trial(study.id, "me:1", None)
        storage.enqueue_trial(study.id, {"x": 1})
        storage.enqueue_trial(study.id, {"x": 2})
        first = storage.claim_trial(study.id, "me:2", 0)  # 0: take only queued trials
        second = storage.claim_trial(study.id, "me:2", 0)
        assert (first.params, second.params) == ({"x": 1}, {"x": 2})
        assert first.state is TrialState.RUNNING and first.owner == "me:2"
        assert storage.claim_trial(study.id, "me:2", 0) is None

    def test_trial_life_cycle(self, storage, study):
        trial = storage.claim_trial(study.id, "me:1", None)
        storage.set_trial_params(trial.id, {"lr": 0.1}, 42, {"sobol_index": 0})
        storage.add_report(trial.id, 1, {"acc": 0.5})
        storage.add_report(trial.id, 2, {"acc": 0.6})
        storage.add_report(trial.id, 2, {"acc": 0.7})  # a repeated step replaces the first
        storage.finish_trial(trial.id, TrialState.COMPLETE, 0.7, {"acc": 0.7})
        (stored,) = storage.get_trials(study.id)
        assert stored.params == {"lr": 0.1} and stored.seed == 42
        assert stored.proposal == {"sobol_index": 0}
        assert stored.intermediate == {1: {"acc": 0.5}, 2: {"acc": 0.7}}
        assert (stored.state, stored.value, stored.metrics) == (TrialState.COMPLETE, 0.7, {"acc": 0.7})
        assert stored.duration is not None and stored.duration >= 0

    def test_failed_trial_keeps_error_and_nan_value_becomes_none(self, storage, study):
        trial = storage.claim_trial(study.id, "me:1", None)
        storage.finish_trial(trial.id, TrialState.FAILED, math.nan, {"loss": math.nan}, "diverged")
        (stored,) = storage.get_trials(study.id, states=[TrialState.FAILED])
        assert stored.value is None and stored.error == "diverged"
        assert math.isnan(stored.metrics["loss"])

    def test_changes_returns_only_what_changed(self, storage, study):
        a = storage.claim_trial(study.id, "me:1", None)
        b = storage.claim_trial(study.id, "me:1", None)
        everything, revision = storage.changes(study.id, 0)
        assert {t.id for t in everything} == {a.id, b.id}
        assert storage.changes(study.id, revision) == ([], revision)
        storage.add_report(b.id, 1, {"acc": 0.1})
        changed, later = storage.changes(study.id, revision)
        assert [t.id for t in changed] == [b.id] and later > revision
        assert changed[0].intermediate == {1: {"acc": 0.1}}

    def test_requeue_only_touches_trials_still_running_under_the_same_owner(self, storage, study):
        dead = storage.claim_trial(study.id, "host:1", None)
        storage.set_trial_params(dead.id, {"x": 1}, 7, {})
        storage.add_report(dead.id, 1, {"acc": 0.2})
        finished = storage.claim_trial(study.id, "host:1", None)
        storage.finish_trial(finished.id, TrialState.COMPLETE, 1.0)
        snapshot = {t.id: t for t in storage.get_trials(study.id)}
        assert storage.requeue_trials(snapshot.values()) == [dead.id]
        again = {t.id: t for t in storage.get_trials(study.id)}
        assert again[dead.id].state is TrialState.WAITING
        assert (again[dead.id].params, again[dead.id].seed, again[dead.id].retries) == ({"x": 1}, 7, 1)
        assert again[dead.id].intermediate == {}
        assert again[finished.id].state is TrialState.COMPLETE

    def test_heartbeat(self, storage, study):
        trial = storage.claim_trial(study.id, "me:1", None)
        before = storage.get_trials(study.id)[0].heartbeat_at
        storage.heartbeat([trial.id])
        assert storage.get_trials(study.id)[0].heartbeat_at >= before

    def test_discard(self, storage, study):
        trial = storage.claim_trial(study.id, "me:1", None)
        storage.discard_trial(trial.id)
        assert storage.get_trials(study.id) == []
