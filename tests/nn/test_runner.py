"""A trial paused by its scheduler keeps a checkpoint, and resumed it reports what it would have
reported without the pause."""

from __future__ import annotations

import pickle

import pytest

from tunelab.nn import DataProvider, HoldoutSplitter, ModelFactory, NetworkObjective, TrialRunner
from tunelab.trial import Trial

# dropout, momentum, a per-batch schedule and early stopping (without stopping): all resumed
FIXED = {
    "epochs": 8,
    "lr": 0.05,
    "units": 16,
    "dropout": 0.2,
    "optimizer": "sgd",
    "momentum": 0.9,
    "schedule": "onecycle",
    "patience": 20,
}


@pytest.fixture
def objective():
    return NetworkObjective({"source": "iris"}, fixed=FIXED, device="cpu")


def metrics(reporter):
    return [reported for _, _, reported in reporter.calls]


def test_a_paused_trial_resumes_at_the_next_epoch_as_if_never_paused(
    tmp_path, objective, make_reporter
):
    straight = make_reporter()
    expected = objective(Trial(3, {"units": 8}, 5, tmp_path / "straight", straight))

    first = make_reporter(pause_at=4)
    paused = Trial(3, {"units": 8}, 5, tmp_path / "trial-3", first)
    at_pause = objective(paused)
    assert first.steps == [1, 2, 3, 4] and paused.should_pause()
    assert paused.checkpoint_step == 4 and (tmp_path / "trial-3" / "checkpoint-step4.pt").is_file()
    assert at_pause == metrics(first)[-1]

    elsewhere = pickle.loads(pickle.dumps(objective))  # as a worker process would get it
    second = make_reporter()
    resumed = Trial(3, {"units": 8}, 5, tmp_path / "trial-3", second, resumed_from=4)
    result = elsewhere(resumed)
    assert second.steps == [5, 6, 7, 8]
    assert metrics(second) == metrics(straight)[4:]  # bit for bit
    assert result == expected and resumed.warnings == []


def test_a_corrupt_checkpoint_restarts_from_the_first_epoch_with_a_warning(
    tmp_path, objective, make_reporter
):
    expected = objective(Trial(0, {}, 5, tmp_path / "straight", make_reporter()))
    (tmp_path / "trial-0").mkdir()
    (tmp_path / "trial-0" / "checkpoint-step4.pt").write_bytes(b"not a checkpoint")
    reporter = make_reporter()
    trial = Trial(0, {}, 5, tmp_path / "trial-0", reporter, resumed_from=4)
    assert objective(trial) == expected
    assert reporter.steps == list(range(1, 9)) and trial.resumed_from is None
    assert len(trial.warnings) == 1
    assert "is unreadable" in trial.warnings[0] and "restarted from step 0" in trial.warnings[0]


def test_a_checkpoint_of_another_training_restarts_with_a_warning(
    tmp_path, objective, make_reporter
):
    expected = objective(Trial(0, {}, 5, tmp_path / "straight", make_reporter()))
    import torch

    (tmp_path / "trial-0").mkdir()
    foreign = {"model": {"weight": torch.zeros(2)}, "tunelab_step": 4}
    torch.save(foreign, tmp_path / "trial-0" / "checkpoint-step4.pt")
    reporter = make_reporter()
    trial = Trial(0, {}, 5, tmp_path / "trial-0", reporter, resumed_from=4)
    assert objective(trial) == expected
    assert reporter.steps == list(range(1, 9)) and trial.resumed_from is None
    assert "does not fit this training" in trial.warnings[0]


def test_a_scheduler_stop_is_not_a_pause(tmp_path, objective, make_reporter):
    reporter = make_reporter(stop_at=2)
    trial = Trial(0, {}, 5, tmp_path / "trial-0", reporter)
    objective(trial)
    assert reporter.steps == [1, 2] and not list((tmp_path / "trial-0").glob("checkpoint*"))


def test_the_runner_trains_what_the_parts_give_it(tmp_path, make_reporter):
    provider = DataProvider({"source": "iris"}, HoldoutSplitter(seed=0))
    runner = TrialRunner(provider, ModelFactory("mlp"), device="cpu")
    objective = NetworkObjective({"source": "iris"}, fixed=FIXED, device="cpu")
    config, given = objective.resolver.resolve({})
    fold = provider.splits().folds[0]
    reporter = make_reporter()
    result = runner.run(Trial(0, {}, 5, tmp_path, reporter), config, given, fold)
    assert result == objective(Trial(0, {}, 5, tmp_path, make_reporter()))
    assert runner.epochs_kept(config, given, 5, fold) == 1 + max(
        range(8), key=lambda i: -metrics(reporter)[i]["val_loss"]
    )


@pytest.mark.parametrize("answer", ["stop_at", "pause_at"])
def test_a_stop_or_pause_at_the_last_epoch_leaves_a_finished_training(
    tmp_path, objective, make_reporter, answer
):
    expected = objective(Trial(0, {}, 5, tmp_path / "straight", make_reporter()))
    reporter = make_reporter(**{answer: FIXED["epochs"]})
    trial = Trial(0, {}, 5, tmp_path / "trial-0", reporter)
    assert objective(trial) == expected and reporter.steps == list(range(1, 9))
    assert not trial.should_stop() and trial.checkpoint_step is None


def test_the_median_rule_at_the_last_epoch_prunes_nothing(tmp_path):
    """It checks only the last epoch here, where every training is over: all trials complete
    (they were labelled PRUNED before), and one epoch earlier it does prune."""
    from tunelab import Float, Study, TrialState
    from tunelab.schedulers import MedianScheduler

    def run(warmup_steps):
        objective = NetworkObjective({"source": "iris"}, fixed={"epochs": 3}, device="cpu")
        study = Study(f"m{warmup_steps}", f"sqlite:///{tmp_path}/m.db", metric="val_accuracy",
                      scheduler=MedianScheduler(warmup_steps, min_trials=1), seed=0)  # fmt: skip
        study.optimize(objective, {"lr": Float(1e-4, 0.3, log=True)}, trials=6)
        return {t.state for t in study.trials}

    assert run(warmup_steps=3) == {TrialState.COMPLETE}
    assert TrialState.PRUNED in run(warmup_steps=2)
