"""The fused executor: each trial of a fused group ends as it would alone, on its own terms."""

import logging
import math

import pytest

from tunelab import Categorical, Float, Int, Study, TrialState
from tunelab.executors import FusedExecutor, InlineExecutor
from tunelab.nn import NetworkObjective
from tunelab.schedulers import ASHAScheduler
from tunelab.testing import ExecutorContract

pytestmark = pytest.mark.usefixtures("one_torch_thread")


class TestFusedContract(ExecutorContract):
    """Plain function objectives cannot be stepped: they run one at a time, as an executor must."""

    @pytest.fixture
    def executor(self):
        return FusedExecutor(group_size=4)


def objective(**fixed):
    return NetworkObjective(
        {"source": "digits"}, fixed={"epochs": 4, "batch_size": 64, **fixed}, device="cpu"
    )


METRIC = {"metric": "val_accuracy", "direction": "maximize"}
SPACE = {
    "lr": Float(1e-3, 0.1, log=True),
    "units": Categorical([16, 32]),
    "dropout": Float(0.05, 0.5),
    "optimizer": Categorical(["sgd", "adam"]),
    "momentum": Float(0.0, 0.9),
}


def study(tmp_path, name, executor, trials=12, space=SPACE, fixed=None, **options):
    run = Study(name, storage=f"sqlite:///{tmp_path}/{name}.db", seed=3, **METRIC, **options)
    run.optimize(objective(**(fixed or {})), space, trials=trials, executor=executor)
    return {t.number: t for t in run.trials}


def assert_same_trials(fused, alone):
    assert fused.keys() == alone.keys()
    for number, trial in fused.items():
        other = alone[number]
        assert (trial.state, trial.params) == (other.state, other.params), number
        if trial.value is not None:
            assert math.isclose(trial.value, other.value, rel_tol=1e-4), number
        assert trial.intermediate.keys() == other.intermediate.keys(), number
        for step, metrics in trial.intermediate.items():
            for name, value in metrics.items():
                expected = other.intermediate[step][name]
                assert math.isclose(value, expected, rel_tol=1e-4, abs_tol=1e-5), (number, name)


@pytest.fixture
def group_sizes(monkeypatch):
    """The size of every fused group trained."""
    import tunelab.nn.fused

    sizes, original = [], tunelab.nn.fused.run_epochs_fused

    def counted(trainers):
        sizes.append(len(trainers))
        return original(trainers)

    monkeypatch.setattr(tunelab.nn.fused, "run_epochs_fused", counted)
    return sizes


def test_trials_end_as_they_would_alone_dropout_seeds_and_early_stopping_included(
    tmp_path, group_sizes
):
    """Two architectures (units), two optimizers, per-trial rates, dropout and momentum; early
    stopping ends members at different epochs; slots freed are refilled."""
    fixed = {"patience": 1, "epochs": 6}
    fused = study(tmp_path, "fused", FusedExecutor(8, min_speedup=0), fixed=fixed)
    alone = study(tmp_path, "alone", InlineExecutor(), fixed=fixed)
    assert_same_trials(fused, alone)
    assert all(t.state is TrialState.COMPLETE for t in fused.values())
    assert len({len(t.intermediate) for t in fused.values()}) > 1, "no member stopped early"
    assert max(group_sizes) >= 3, group_sizes


def test_a_freed_slot_is_refilled_while_the_group_trains_on(tmp_path):
    space = {"epochs": Categorical([1, 5]), "lr": Float(1e-3, 1e-2, log=True)}
    trials = study(
        tmp_path, "refill", FusedExecutor(group_size=3, min_speedup=0), trials=8, space=space
    )
    longest = max((t for t in trials.values() if t.number < 3), key=lambda t: t.finished_at)
    later = [t for t in trials.values() if t.number >= 3]
    assert any(t.started_at < longest.finished_at for t in later)
    assert all(t.state is TrialState.COMPLETE for t in trials.values())


def test_members_pause_and_resume_on_their_own_under_asha(tmp_path):
    asha = ASHAScheduler(min_resource=1, max_resource=9, reduction_factor=3)
    fixed = {"epochs": 9}
    space = {"lr": Float(1e-3, 0.1, log=True), "dropout": Float(0.0, 0.3)}
    trials = study(
        tmp_path,
        "asha",
        FusedExecutor(group_size=4),
        trials=9,
        space=space,
        fixed=fixed,
        scheduler=asha,
    )
    states = [t.state for t in trials.values()]
    assert TrialState.PAUSED in states and TrialState.COMPLETE in states
    resumed = [t for t in trials.values() if (t.last_step or 0) > 1]
    assert resumed and not [t.attrs["warnings"] for t in resumed if t.attrs.get("warnings")]
    assert any(t.last_step == 9 for t in resumed)


def kfold_study(tmp_path, name, executor, trials=6, **options):
    made = NetworkObjective(
        {"source": "digits", "kfold": 3}, fixed={"epochs": 2, "batch_size": 64}, device="cpu"
    )
    run = Study(name, storage=f"sqlite:///{tmp_path}/{name}.db", seed=3, **METRIC, **options)
    space = {"lr": Float(1e-3, 0.1, log=True), "dropout": Float(0.0, 0.3)}  # one network shape
    run.optimize(made, space, trials=trials, executor=executor)
    return {t.number: t for t in run.trials}


def test_cross_validated_trials_train_each_fold_with_the_other_trials_on_it(tmp_path, group_sizes):
    """A trial's folds in turn, each fold's epochs fused with the other trials on that fold:
    the folds' scores, curves and means as one at a time."""
    fused = kfold_study(tmp_path, "kfold", FusedExecutor(4, min_speedup=0))
    alone = kfold_study(tmp_path, "kfold-alone", InlineExecutor())
    assert_same_trials(fused, alone)
    for number, trial in fused.items():
        folds, expected = trial.user_attrs["folds"], alone[number].user_attrs["folds"]
        assert [f["fold"] for f in folds] == [1, 2, 3]
        for fold, other in zip(folds, expected, strict=True):
            assert fold["curve"].keys() == other["curve"].keys() == {"1", "2"}
            for name, value in fold["metrics"].items():
                assert math.isclose(value, other["metrics"][name], rel_tol=1e-4, abs_tol=1e-5)
    assert max(group_sizes) >= 3, group_sizes


def test_cross_validated_members_pause_between_folds_and_resume_at_the_next(tmp_path):
    asha = ASHAScheduler(min_resource=1, max_resource=3, reduction_factor=3)
    trials = kfold_study(tmp_path, "kfold-asha", FusedExecutor(4), trials=9, scheduler=asha)
    states = [t.state for t in trials.values()]
    assert TrialState.PAUSED in states and TrialState.COMPLETE in states
    for trial in trials.values():
        folds = [f["fold"] for f in trial.user_attrs["folds"]]
        assert folds == list(range(1, len(folds) + 1)) and sorted(trial.intermediate) == folds
        assert len(folds) == 3 if trial.state is TrialState.COMPLETE else len(folds) < 3
        assert not trial.attrs.get("warnings")


def test_unfusable_trials_and_a_diverging_member_each_go_their_own_way(tmp_path):
    """Batch norm cannot be fused: those trials train alone beside the fused ones; a member whose
    rate blows it up fails alone."""
    space = {
        "batch_norm": Categorical([False, True]),
        "lr": Float(1e-3, 1e6, log=True),
        "units": Int(16, 16),
    }
    fused = Study(
        "mixed", storage=f"sqlite:///{tmp_path}/m.db", strategy="manual", seed=1, **METRIC
    )
    alone = Study(
        "mixed-alone", storage=f"sqlite:///{tmp_path}/a.db", strategy="manual", seed=1, **METRIC
    )
    configs = [
        {"batch_norm": bn, "lr": lr, "units": 16}
        for bn, lr in [(False, 1e-3), (True, 1e-3), (False, 1e6), (False, 5e-3), (True, 5e-3)]
    ]
    for run in (fused, alone):
        for config in configs:
            run.enqueue(config)
    fused.optimize(objective(), space, executor=FusedExecutor(group_size=5, min_speedup=0))
    alone.optimize(objective(), space, executor=InlineExecutor())
    by_number = {t.number: t for t in fused.trials}
    assert by_number[2].state is TrialState.FAILED and "diverged" in by_number[2].error
    assert_same_trials(by_number, {t.number: t for t in alone.trials})


def test_where_fusing_does_not_pay_it_trains_one_at_a_time_and_says_so_once(tmp_path, caplog):
    space = {"lr": Float(1e-3, 1e-2, log=True)}
    never = FusedExecutor(group_size=4, min_speedup=1e9)
    with caplog.at_level(logging.WARNING, logger="tunelab"):
        slow = study(tmp_path, "never", never, trials=8, space=space)
    said = [r for r in caplog.records if "does not pay" in r.getMessage()]
    assert len(said) == 1
    assert_same_trials(slow, study(tmp_path, "inline", InlineExecutor(), trials=8, space=space))


def test_worker_processes_that_find_fusing_does_not_pay_are_said_once_by_the_driver(
    tmp_path, caplog, capfd
):
    """Each worker measures for itself; the user reads one line, in the driver's format."""
    from tunelab.executors import ProcessExecutor

    space = {"lr": Float(1e-3, 1e-2, log=True)}
    never = ProcessExecutor(2, threads_per_worker=1, fuse=True, group_size=4, min_speedup=1e9)
    with caplog.at_level(logging.WARNING, logger="tunelab"):
        trials = study(tmp_path, "never", never, trials=8, space=space, fixed={"epochs": 2})
    said = [r for r in caplog.records if "does not pay" in r.getMessage()]
    assert len(said) == 1 and said[0].levelno == logging.WARNING
    printed = capfd.readouterr().err.count("does not pay")  # the driver's own line, if its
    assert printed <= 1, "a worker printed it itself"  # handler writes to this stderr
    assert all(t.state is TrialState.COMPLETE for t in trials.values())


def test_bad_options_name_the_field():
    from tunelab.errors import SpecError

    with pytest.raises(SpecError, match="executor.group_size"):
        FusedExecutor(group_size=0)


def test_worker_processes_train_fused_groups_with_the_same_results(tmp_path):
    """fuse: true on the process executor: each worker holds a group; the trials end as alone."""
    from tests.callbacks import FusedEpochsByProcess
    from tunelab.executors import ProcessExecutor

    counts = tmp_path / "fused"
    counts.mkdir()
    fixed = {"epochs": 3}
    executor = ProcessExecutor(2, threads_per_worker=1, fuse=True, group_size=4, min_speedup=0)
    run = Study("procs", storage=f"sqlite:///{tmp_path}/procs.db", seed=3, **METRIC)
    made = NetworkObjective(
        {"source": "digits"},
        fixed={"batch_size": 64, **fixed},
        device="cpu",
        callbacks=[FusedEpochsByProcess(counts)],
    )
    run.optimize(made, SPACE, trials=12, executor=executor)
    fused = {t.number: t for t in run.trials}
    assert_same_trials(fused, study(tmp_path, "alone", InlineExecutor(), fixed=fixed))
    assert all(t.state is TrialState.COMPLETE for t in fused.values())
    assert len(list(counts.iterdir())) == 2, "both workers trained fused groups"


def assert_a_dying_process_fails_its_group_alone(tmp_path, executor, reason):
    """Six trials in groups of three: the process of the first group dies at its first epoch's
    end (the third trial's rate kills it); its trials fail with ``reason``, the next three run."""
    from tests.callbacks import KillProcessAtRate

    run = Study(
        "dies",
        storage=f"sqlite:///{tmp_path}/dies.db",
        seed=0,
        strategy="manual",
        artifacts_dir=tmp_path,
        **METRIC,
    )
    for lr in [0.01, 0.02, 0.006, 0.03, 0.04, 0.05]:
        run.enqueue({"lr": lr})
    made = NetworkObjective(
        {"source": "digits"},
        fixed={"epochs": 2, "batch_size": 64},
        device="cpu",
        callbacks=[KillProcessAtRate(0.006)],
    )
    run.optimize(made, {"lr": Float(1e-3, 1.0, log=True)}, trials=6, executor=executor)
    states = {t.params["lr"]: (t.state, t.error) for t in run.trials}
    for lr in (0.01, 0.02, 0.006):  # the group the process held when it died
        state, error = states[lr]
        assert state is TrialState.FAILED and reason in error, (lr, error)
    assert [states[lr][0] for lr in (0.03, 0.04, 0.05)] == [TrialState.COMPLETE] * 3


def test_a_dying_worker_fails_its_whole_group_and_the_study_goes_on(tmp_path):
    from tunelab.executors import ProcessExecutor

    executor = ProcessExecutor(1, threads_per_worker=1, fuse=True, group_size=3, min_speedup=0)
    assert_a_dying_process_fails_its_group_alone(tmp_path, executor, "killed by SIGKILL")
