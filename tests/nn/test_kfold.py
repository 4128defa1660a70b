"""cross_validate and KFoldSplitter: folds in turn, the running mean per fold, per-fold pruning."""

import numpy as np
import pytest

from tunelab import Float, Study
from tunelab.errors import SpecError
from tunelab.nn import (
    ConfigResolver,
    DataProvider,
    KFoldSplitter,
    ModelFactory,
    NetworkObjective,
    TrialRunner,
    cross_validate,
    load_dataset,
)
from tunelab.schedulers import MedianScheduler
from tunelab.trial import Decision, Trial, TrialState

IRIS = {"source": "iris", "kfold": 3}


def _runner() -> TrialRunner:
    return TrialRunner(DataProvider(IRIS, KFoldSplitter(k=3)), ModelFactory("mlp"), device="cpu")


def _trial(tmp_path, decide, resumed_from=None) -> Trial:
    return Trial(0, {"lr": 0.01}, 0, tmp_path / "trial", decide, resumed_from=resumed_from)


def test_folds_train_in_turn_and_the_trial_reports_their_running_mean(tmp_path):
    runner = _runner()
    config, given = ConfigResolver("mlp", {"epochs": 2}).resolve({"lr": 0.01})
    reports = []

    def decide(number, step, metrics):
        reports.append((step, metrics["val_accuracy"]))
        return Decision.CONTINUE

    trial = _trial(tmp_path, decide)
    result = cross_validate(runner, trial, config, given, runner.provider.splits().folds)
    folds = trial.user_attrs["folds"]
    scores = [fold["metrics"]["val_accuracy"] for fold in folds]
    assert [step for step, _ in reports] == [1, 2, 3]
    assert [value for _, value in reports] == pytest.approx(
        [np.mean(scores[:1]), np.mean(scores[:2]), np.mean(scores[:3])]
    )
    assert result["val_accuracy"] == pytest.approx(np.mean(scores))
    assert result["val_accuracy_std"] == pytest.approx(np.std(scores))
    assert result["folds"] == 3
    assert [sorted(fold["curve"]) for fold in folds] == [["1", "2"]] * 3  # each fold's epochs


def test_a_stop_after_the_first_fold_trains_no_other_fold(tmp_path):
    runner = _runner()
    config, given = ConfigResolver("mlp", {"epochs": 2}).resolve({"lr": 0.01})
    trial = _trial(tmp_path, lambda number, step, metrics: Decision.STOP)
    result = cross_validate(runner, trial, config, given, runner.provider.splits().folds)
    assert result["folds"] == 1 and len(trial.user_attrs["folds"]) == 1
    assert trial.decision is Decision.STOP


def test_a_pause_between_folds_resumes_with_the_next_fold(tmp_path):
    runner = _runner()
    folds = runner.provider.splits().folds
    config, given = ConfigResolver("mlp", {"epochs": 2}).resolve({"lr": 0.01})
    whole = _trial(tmp_path / "whole", lambda *a: Decision.CONTINUE)
    expected = cross_validate(runner, whole, config, given, folds)

    first = _trial(tmp_path, lambda number, step, metrics: Decision.PAUSE)
    cross_validate(runner, first, config, given, folds)
    assert first.checkpoint_step == 1
    steps = []

    def record(number, step, metrics):
        steps.append(step)
        return Decision.CONTINUE

    resumed = _trial(tmp_path, record, resumed_from=1)
    assert cross_validate(runner, resumed, config, given, folds) == pytest.approx(expected)
    assert steps == [2, 3]  # fold 1 came from the checkpoint


def test_per_fold_pruning_stops_a_hopeless_trial_after_one_fold(tmp_path):
    objective = NetworkObjective(IRIS, fixed={"epochs": 3, "batch_size": 16}, device="cpu")
    study = Study(
        "kfold-pruning",
        storage="sqlite://",
        metric="val_accuracy",
        direction="maximize",
        scheduler=MedianScheduler(warmup_steps=1, min_trials=2),
        artifacts_dir=tmp_path,
        seed=0,
    )
    for lr in (0.05, 0.03, 1e-6):  # two that learn, then one that cannot move
        study.enqueue({"lr": lr})
    study.optimize(objective, {"lr": Float(1e-6, 0.1, log=True)}, trials=3)
    good, also_good, hopeless = study.trials
    assert (good.state, also_good.state) == (TrialState.COMPLETE, TrialState.COMPLETE)
    assert sorted(good.intermediate) == [1, 2, 3]
    assert hopeless.state is TrialState.PRUNED
    assert sorted(hopeless.intermediate) == [1]  # stopped after its first fold
    assert len(hopeless.user_attrs["folds"]) == 1 and hopeless.metrics["folds"] == 1


def test_kfold_splitter_stratifies_repeats_and_keeps_the_test_split_apart():
    dataset = load_dataset("iris")
    splits = KFoldSplitter(k=3, repeats=2, test_size=0.2, seed=1).split(dataset)
    assert len(splits.folds) == 6 and len(splits.test.y) == 30
    assert np.bincount(splits.test.y).tolist() == [10, 10, 10]
    for fold in splits.folds:  # 40 rows per class left: 13 or 14 of each in every fold
        assert set(np.bincount(fold.val.y).tolist()) <= {13, 14}
    first, second = splits.folds[0], splits.folds[3]
    assert not np.array_equal(first.val.X, second.val.X)  # a repeat cuts afresh
    test_rows = {row.tobytes() for row in splits.test.X}
    for fold in splits.folds[:3]:
        assert not test_rows & {row.tobytes() for row in fold.val.X}


def test_grouped_folds_keep_each_group_in_one_place(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "grouped.csv"
    rows = ["a,b,patient,label"] + [
        f"{rng.normal():.4f},{rng.normal():.4f},p{i // 6},{i % 2}" for i in range(180)
    ]
    path.write_text("\n".join(rows) + "\n")
    dataset = load_dataset(str(path), target="label", group="patient")
    assert dataset.feature_names == ["a", "b"] and len(np.unique(dataset.groups)) == 30
    splits = KFoldSplitter(k=4, test_size=0.2, seed=0).split(dataset)
    groups_of = {row.tobytes(): g for row, g in zip(dataset.X, dataset.groups, strict=True)}

    def groups(split):
        return {groups_of[row.tobytes()] for row in split.X}

    for fold in splits.folds:
        assert not groups(fold.train) & groups(fold.val)
        assert not groups(splits.test) & (groups(fold.train) | groups(fold.val))


@pytest.mark.parametrize(
    "make, field, message",
    [
        (
            lambda: KFoldSplitter(k=20).split(load_dataset("iris")),
            "data.validation.kfold",
            "fewer folds",
        ),
        (lambda: load_dataset("iris", group="g"), "data.validation.group", "no group column"),
    ],
)
def test_impossible_folds_name_the_field(make, field, message):
    with pytest.raises(SpecError, match=rf"{field}: .*{message}"):
        make()
