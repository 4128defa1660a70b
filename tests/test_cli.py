"""The command line as a user meets it: real processes, real training on bundled data."""

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.objectives import curve as objectives_curve

ROOT = Path(__file__).resolve().parents[1]

SPEC = {
    "name": "iris-mlp",
    "data": {"source": "iris", "test_size": 0.2, "validation": {"holdout": 0.25}},
    "model": "mlp",
    "metric": {"name": "val_accuracy", "direction": "maximize"},
    "space": {
        "lr": {"type": "float", "low": 1e-3, "high": 0.1, "log": True},
        "units": {"type": "categorical", "choices": [8, 16]},
        "optimizer": {"type": "categorical", "choices": ["sgd", "adam"]},
        "momentum": {"type": "float", "low": 0.0, "high": 0.9, "when": {"optimizer": "sgd"}},
    },
    "fixed": {"epochs": 4, "n_layers": 1, "batch_size": 16},
    "strategy": "random",
    "budget": {"trials": 12},
    "workers": 1,
    "seed": 0,
}


def tunelab(*args, cwd, **kwargs):
    return subprocess.run(
        [sys.executable, "-m", "tunelab.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        **kwargs,
    )


def write_spec(tmp_path, spec=None, **changes):
    spec = {**(spec or SPEC), **changes}
    spec.setdefault("storage", f"sqlite:///{tmp_path}/tunelab.db")
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


@pytest.mark.slow
def test_run_then_best_json_then_trials(tmp_path):
    spec = write_spec(tmp_path)
    run = tunelab("run", str(spec), cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert "test_accuracy" in run.stdout
    storage = f"sqlite:///{tmp_path}/tunelab.db"
    best = json.loads(
        tunelab("best", "iris-mlp", "--json", "--storage", storage, cwd=tmp_path).stdout
    )
    assert set(best) >= {"params", "value", "test_metrics"}
    assert 0.0 <= best["test_metrics"]["test_accuracy"] <= 1.0
    assert best["retrained_on"] == "train+validation"
    assert all(Path(p).is_file() for p in best["artifacts"].values())
    rows = json.loads(
        tunelab("trials", "iris-mlp", "--format", "json", "--storage", storage, cwd=tmp_path).stdout
    )
    assert len(rows) == 12 and {r["state"] for r in rows} == {"COMPLETE"}
    assert all(r["steps"] == 4 for r in rows)
    csv = tunelab(
        "trials", "iris-mlp", "--format", "csv", "--storage", storage, cwd=tmp_path
    ).stdout
    assert csv.splitlines()[0].startswith("number,state,value,lr,momentum,optimizer,units")
    status = tunelab("status", "iris-mlp", "--storage", storage, cwd=tmp_path).stdout
    assert "complete: 12" in status and "test" in status


@pytest.mark.slow
def test_sigkill_mid_study_then_resume_keeps_completed_trials_and_meets_the_budget(tmp_path):
    spec = write_spec(tmp_path, budget={"trials": 30}, fixed={**SPEC["fixed"], "epochs": 15})
    db = tmp_path / "tunelab.db"
    proc = subprocess.Popen(
        [sys.executable, "-m", "tunelab.cli", "run", str(spec)],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        before = _wait_for_complete_trials(db, at_least=5, proc=proc)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    states = dict(_query(db, "SELECT state, COUNT(*) FROM tunelab_trials GROUP BY state"))
    assert states.get("RUNNING", 0) >= 1, f"the kill should leave a trial RUNNING: {states}"

    resume = tunelab("resume", "iris-mlp", "--storage", f"sqlite:///{db}", cwd=tmp_path)
    assert resume.returncode == 0, resume.stderr

    after = {
        number: (state, params, value)
        for number, state, params, value in _query(
            db, "SELECT number, state, params, value FROM tunelab_trials"
        )
    }
    for number, completed in before.items():
        assert after[number] == completed, "a trial completed before the kill changed"
    assert sorted(after) == list(range(30)), "budget not met, or numbers duplicated"
    assert {state for state, _, _ in after.values()} == {"COMPLETE"}
    assert len({params for _, params, _ in after.values()}) == 30, "a config ran twice"
    retried = _query(db, "SELECT COUNT(*) FROM tunelab_trials WHERE retries = 1")[0][0]
    assert retried >= 1, "the interrupted trial should have been re-queued and re-run"


def _wait_for_complete_trials(db, at_least, proc, timeout=120.0):
    """Wait until ``at_least`` trials completed and another is part-way through; return them."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        assert proc.poll() is None, proc.stderr.read().decode()
        if db.exists():
            try:
                rows = _query(
                    db,
                    "SELECT number, state, params, value FROM tunelab_trials "
                    "WHERE state = 'COMPLETE'",
                )
            except sqlite3.OperationalError:  # tables not created yet
                rows = []
            mid_trial = (
                _query(
                    db,
                    "SELECT COUNT(*) FROM tunelab_trials t JOIN tunelab_reports r "
                    "ON r.trial_id = t.id WHERE t.state = 'RUNNING'",
                )[0][0]
                if rows
                else 0
            )
            if len(rows) >= at_least and mid_trial:
                return {number: (state, params, value) for number, state, params, value in rows}
        time.sleep(0.05)
    raise AssertionError(f"fewer than {at_least} trials completed in {timeout} s")


def _query(db, sql):
    with sqlite3.connect(db, timeout=30) as conn:
        return conn.execute(sql).fetchall()


BAD_SPECS = [
    (lambda s: s.update(budgett={"trials": 3}), r"budgett: unknown field; did you mean 'budget'\?"),
    (
        lambda s: s["space"].update(lr={"type": "float", "low": 0.5, "high": 0.1}),
        r"space\.lr\.low: low must be <= high",
    ),
    (
        lambda s: s["space"].update(lr={"type": "float", "low": 0.0, "high": 0.1, "log": True}),
        r"space\.lr\.low: must be > 0 when log is true",
    ),
    (
        lambda s: s["space"].update(units={"type": "categorical", "choices": []}),
        r"space\.units\.choices: is empty",
    ),
    (lambda s: s.update(strategy="grid"), r"space\.lr: grid search needs listed values"),
    (
        lambda s: s.update(data={"source": "missing.csv", "target": "y"}),
        r"data\.source: .*missing\.csv",
    ),
    (lambda s: s.update(data={"source": "data.csv", "target": "price"}), r"data\.target: .*price"),
    (lambda s: s["metric"].update(name="val_acc"), r"metric\.name: 'val_acc' is not reported"),
    (
        lambda s: s["space"].update(lr_typo={"type": "float", "low": 0.1, "high": 0.2}),
        r"space\.lr_typo: unknown hyperparameter",
    ),
    (
        lambda s: s.update(strategy={"name": "bayes", "n_initail": 5}),
        r"strategy: 'bayes' has no option 'n_initail'; did you mean 'n_initial'\?",
    ),
    (
        lambda s: s.update(scheduler={"name": "median", "warmup_step": 2}),
        r"scheduler: 'median' has no option 'warmup_step'; did you mean 'warmup_steps'\?",
    ),
    (
        lambda s: s.update(executor={"name": "processes", "n_worker": 2}),
        r"executor: 'processes' has no option 'n_worker'; did you mean 'n_workers'\?",
    ),
    (lambda s: s.update(executor="ray"), r"executor: unknown executor 'ray'"),
    (lambda s: s["fixed"].update(epochs=0), r"fixed\.epochs: must be an integer >= 1, got 0"),
    (
        lambda s: s.update(strategy="bayes", budget={}),
        r"budget: give trials and/or minutes, or a bayes search never ends",
    ),
]


@pytest.mark.parametrize(("change", "message"), BAD_SPECS)
def test_bad_spec_gets_one_clear_line_and_exit_2(tmp_path, change, message):
    import copy
    import re

    (tmp_path / "data.csv").write_text("a,b,y\n1,2,0\n3,4,1\n5,6,0\n7,8,1\n")
    spec = copy.deepcopy(SPEC)
    change(spec)
    result = tunelab("run", str(write_spec(tmp_path, spec)), cwd=tmp_path)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert re.search(message, lines[0]), lines[0]
    assert not (tmp_path / "tunelab.db").exists(), "a bad spec must fail before touching storage"


def test_unknown_study_is_a_clear_error(tmp_path):
    result = tunelab("status", "nope", "--storage", f"sqlite:///{tmp_path}/x.db", cwd=tmp_path)
    assert result.returncode == 2 and "no study named 'nope'" in result.stderr
    assert "Traceback" not in result.stderr


def test_status_and_trials_show_paused_trials_and_their_warnings(tmp_path):
    from tests.schedulers.pausing import PauseOnce
    from tunelab import Float, Study

    url = f"sqlite:///{tmp_path}/tunelab.db"
    study = Study("p", storage=url, metric="score", scheduler=PauseOnce(2, None), seed=0)
    study.optimize(objectives_curve, {"x": Float(0.5, 1.0)}, trials=3)
    status = tunelab("status", "p", "--storage", url, cwd=tmp_path)
    assert status.returncode == 0, status.stderr
    assert "paused: 3" in status.stdout
    rows = json.loads(
        tunelab("trials", "p", "--storage", url, "--format", "json", cwd=tmp_path).stdout
    )
    assert [(r["state"], r["last_step"]) for r in rows] == [("PAUSED", 2)] * 3
    assert "without a checkpoint" in rows[0]["warnings"][0]
