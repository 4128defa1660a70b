"""Several processes on one SQLite study: no 'database is locked', no lost or duplicated trials.
(tests/storage/test_postgres.py runs the same drivers on PostgreSQL.)"""

import os
import subprocess
import sys
from pathlib import Path

from tests import objectives
from tunelab import Float, Study, TrialState
from tunelab.executors import ProcessExecutor

ROOT = Path(__file__).resolve().parents[1]

DRIVER = """
import pathlib, sys, time
from tunelab import Float, Study
from tests import objectives
barrier = pathlib.Path(sys.argv[3])
(barrier / sys.argv[4]).touch()
while len(list(barrier.iterdir())) < int(sys.argv[5]):  # start together: each gets trials
    time.sleep(0.01)
study = Study("shared", storage=sys.argv[1], direction="minimize", seed=0)
study.optimize(objectives.slow_quadratic_5ms, {"x": Float(-5, 5)}, trials=int(sys.argv[2]))
"""


def _env():
    paths = [str(ROOT / "src"), str(ROOT), os.environ.get("PYTHONPATH", "")]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in paths if p)}


def run_drivers(url: str, trials: int, drivers: int, barrier: Path) -> None:
    """``drivers`` independent processes optimise study "shared" up to ``trials`` at once."""
    barrier.mkdir()
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", DRIVER, url, str(trials), str(barrier), str(i), str(drivers)],
            env=_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(drivers)
    ]
    outputs = [p.communicate(timeout=300) for p in procs]
    for proc, (_, stderr) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, stderr
        assert "locked" not in stderr


def test_four_independent_processes_share_one_study_exactly(tmp_path):
    url = f"sqlite:///{tmp_path}/shared.db"
    run_drivers(url, 240, 4, tmp_path / "barrier")
    trials = Study("shared", storage=url, direction="minimize").trials
    assert [t.number for t in trials] == list(range(240))
    assert all(t.state is TrialState.COMPLETE for t in trials)
    owners = {t.owner for t in trials}
    assert len(owners) > 1, "all trials ran in one process: the test did not test sharing"
    xs = [t.params["x"] for t in trials]
    assert len(set(xs)) == len(xs), "two processes ran the same Sobol point"


def test_four_worker_processes_in_one_study(tmp_path):
    url = f"sqlite:///{tmp_path}/w.db"
    study = Study("w", storage=url, direction="minimize", seed=0)
    executor = ProcessExecutor(
        n_workers=4
    )  # more than the cores: an explicit executor is not capped
    study.optimize(objectives.quadratic, {"x": Float(-5, 5)}, trials=200, executor=executor)
    trials = study.trials
    assert [t.number for t in trials] == list(range(200))
    assert all(t.state is TrialState.COMPLETE for t in trials)
    assert len({t.params["x"] for t in trials}) == 200
