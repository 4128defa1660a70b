"""The command line as a user meets it: real processes, real training on bundled data."""

import csv
import io
import json
import os
import re
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


def _run_in_background(spec, cwd):
    """``tunelab run SPEC`` in its own process group, to be killed with everything it started."""
    return subprocess.Popen(
        [sys.executable, "-m", "tunelab.cli", "run", str(spec)],
        cwd=cwd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
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


def test_lr_find_writes_the_curve_and_its_data_and_refuses_a_flat_curve_in_one_line(tmp_path):
    spec = write_spec(tmp_path)
    run = tunelab("lr-find", str(spec), "--start", "1e-5", "--steps", "60", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith("lr range test (adam, batch 16, ")  # optimizer: searched
    assert "suggested lr" in run.stdout and "(valley)" in run.stdout
    assert (tmp_path / "lr-find.png").read_bytes().startswith(b"\x89PNG")
    saved = json.loads((tmp_path / "lr-find.json").read_text())
    assert set(saved["suggestions"]) == {"steepest", "valley", "minimum/10"}
    flat = tunelab(
        "lr-find",
        str(spec),
        "--start",
        "1e-10",
        "--end",
        "1e-9",
        "--steps",
        "40",
        "-o",
        "f.png",
        cwd=tmp_path,
    )
    line = one_line_exit_2(flat)
    assert "no usable range found" in line and "the curve is in f.png" in line
    assert (tmp_path / "f.png").is_file() and not (tmp_path / "tunelab.db").exists()


def test_run_prints_a_line_per_trial_then_plots_and_a_report_come_from_storage(tmp_path):
    spec = write_spec(tmp_path, budget={"trials": 4})
    run = tunelab("run", str(spec), cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert [line.split(" ")[:3] for line in lines[:4]] == [
        ["Trial", str(n), "finished"] for n in range(4)
    ]
    assert "retraining: 4 epochs" in run.stdout and "retraining: done" in run.stdout
    storage = ["--storage", f"sqlite:///{tmp_path}/tunelab.db"]
    png = tunelab("plot", "iris-mlp", "--kind", "history", "-o", "h.png", *storage, cwd=tmp_path)
    assert png.returncode == 0, png.stderr
    assert (tmp_path / "h.png").read_bytes().startswith(b"\x89PNG")
    html = tunelab(
        "plot",
        "iris-mlp",
        "--kind",
        "curves",
        "--trials",
        "1,3",
        "-o",
        "c.html",
        *storage,
        cwd=tmp_path,
    )
    assert html.returncode == 0, html.stderr
    page = (tmp_path / "c.html").read_text()
    assert "#1" in page and "#3" in page and not re.search(r"<script[^>]*src=", page)
    bad = tunelab(
        "plot",
        "iris-mlp",
        "--kind",
        "curves",
        "--trials",
        "9",
        "-o",
        "c.png",
        *storage,
        cwd=tmp_path,
    )
    assert "--trials: curves: no trial numbered 9" in one_line_exit_2(bad)
    report = tunelab("report", "iris-mlp", "-o", "r.html", *storage, cwd=tmp_path)
    assert report.returncode == 0, report.stderr
    assert "test_accuracy" in (tmp_path / "r.html").read_text()


@pytest.mark.slow
def test_sigkill_mid_study_then_resume_keeps_completed_trials_and_meets_the_budget(tmp_path):
    spec = write_spec(tmp_path, budget={"trials": 30}, fixed={**SPEC["fixed"], "epochs": 15})
    db = tmp_path / "tunelab.db"
    proc = _run_in_background(spec, tmp_path)
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
    (lambda s: s.update(executor="dask"), r"executor: unknown executor 'dask'"),
    (
        lambda s: s.update(executor={"name": "ray", "cpus": -1}),
        r"executor\.cpus: must be a number >= 0, got -1",
    ),
    (lambda s: s["fixed"].update(epochs=0), r"fixed\.epochs: must be an integer >= 1, got 0"),
    (
        lambda s: s.update(strategy="bayes", budget={}),
        r"budget: give trials and/or minutes, or a bayes search never ends",
    ),
    # the trust issue's findings
    (lambda s: s.update(name="../../x"), r"name: must be letters, digits, .* got '\.\./\.\./x'"),
    (lambda s: s.update(name="/tmp/abs"), r"name: must be letters, digits"),
    (lambda s: s.update(name="n" * 10000), r"name: must be .* \(10000 chars\)"),
    (
        lambda s: s["space"]["momentum"].update(when={"optimizer": "rmsprop"}),
        r"space\.momentum\.when\.optimizer: optimizer can never be 'rmsprop'",
    ),
    (
        lambda s: s.update(data={"path": "data.csv"}),
        r"data\.path: unknown field; did you mean 'source'\?",
    ),
    (lambda s: s.update(storage="nonsense://x/y"), r"storage: 'nonsense://x/y' names a database"),
    (lambda s: s.update(storage="not a url at all"), r"storage: cannot read 'not a url at all'"),
    (
        lambda s: s.update(data={"source": "tiny.csv", "target": "y"}),
        r"data: the .* split would hold",
    ),
    # k-fold validation
    (
        lambda s: s["data"].update(validation={"holdout": 0.3, "kfold": 5}),
        r"data\.validation\.holdout: and kfold are two ways to validate; keep one of them",
    ),
    (
        lambda s: s["data"].update(validation={"repeats": 3}),
        r"data\.validation\.repeats: belongs to k-fold; add kfold",
    ),
    (
        lambda s: s["data"].update(validation={"kfold": 5, "group": "patient"}),
        r"data\.validation\.group: the builtin data set 'iris' has no group column",
    ),
]


@pytest.mark.parametrize(("change", "message"), BAD_SPECS)
def test_bad_spec_gets_one_clear_line_and_exit_2(tmp_path, change, message):
    import copy
    import re

    (tmp_path / "data.csv").write_text("a,b,y\n1,2,0\n3,4,1\n5,6,0\n7,8,1\n")
    (tmp_path / "tiny.csv").write_text("a,b,y\n1,2,0\n3,4,1\n5,6,0\n")
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
    from tunelab import Study

    Study("other", storage=f"sqlite:///{tmp_path}/x.db", seed=0)
    result = tunelab("status", "nope", "--storage", f"sqlite:///{tmp_path}/x.db", cwd=tmp_path)
    assert result.returncode == 2 and "no study named 'nope'" in result.stderr
    assert "known studies: other" in result.stderr
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
    assert rows[0]["stopped"] == {
        "decision": "PAUSE",
        "step": 2,
        "by": "PauseOnce",
        "why": "paused by PauseOnce at step 2",
    }
    table = tunelab(
        "trials", "p", "--storage", url, cwd=tmp_path, env={**os.environ, "COLUMNS": "200"}
    )
    assert table.returncode == 0, table.stderr
    assert "stopped" in table.stdout and table.stdout.count("PauseOnce at step 2") == 3


def one_line_exit_2(result):
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    return lines[0]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", r"spec\.yaml is empty; a spec needs name, data, metric, space and budget"),
        ("name: [x\nmetric: 1\n", r"spec\.yaml is not valid YAML at line 2, column \d+: "),
    ],
)
def test_an_empty_or_broken_yaml_file_is_one_line(tmp_path, text, message):
    import re

    (tmp_path / "spec.yaml").write_text(text)
    line = one_line_exit_2(tunelab("run", "spec.yaml", cwd=tmp_path))
    assert re.search(message, line), line


@pytest.mark.parametrize("workers", ["0", "-1"])
def test_a_bad_workers_option_is_one_line_before_anything_is_stored(tmp_path, workers):
    spec = write_spec(tmp_path)
    line = one_line_exit_2(tunelab("run", str(spec), f"--workers={workers}", cwd=tmp_path))
    assert f"--workers: must be >= 1, got {workers}" in line
    assert not (tmp_path / "tunelab.db").exists()


def test_fuse_overrides_the_specs_and_is_kept_with_the_study(tmp_path):
    spec = write_spec(tmp_path, budget={"trials": 3})
    run = tunelab("run", str(spec), "--fuse", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    (stored,) = _query(tmp_path / "tunelab.db", "SELECT spec FROM tunelab_studies")
    assert json.loads(stored[0])["fuse"] is True
    assert [s for (s,) in _query(tmp_path / "tunelab.db", "SELECT state FROM tunelab_trials")] == [
        "COMPLETE"
    ] * 3


def test_more_workers_than_cores_are_capped_with_one_warning(tmp_path):
    import logging

    from tunelab.executors import ProcessExecutor, executor_for
    from tunelab.executors.processes import available_cores

    records = []
    handler = logging.Handler()
    handler.emit = records.append
    logging.getLogger("tunelab").addHandler(handler)
    try:
        executor = executor_for(1000)
    finally:
        logging.getLogger("tunelab").removeHandler(handler)
    cores = available_cores()
    assert executor.get_params()["n_workers"] == cores if cores > 1 else True
    assert isinstance(executor, ProcessExecutor) or cores == 1
    assert len(records) == 1 and "1000 asked for" in records[0].getMessage()


@pytest.mark.parametrize(
    "command",
    [
        ["status", "s"],
        ["trials", "s"],
        ["best", "s"],
        ["studies"],
        ["plot", "s", "-o", "h.png"],
        ["report", "s", "-o", "r.html"],
        ["dashboard"],
    ],
)
def test_read_commands_create_no_database_and_no_folder(tmp_path, command):
    line = one_line_exit_2(tunelab(*command, cwd=tmp_path))
    assert f"no database at {tmp_path / 'tunelab.db'}" in line
    nested = f"sqlite:///{tmp_path}/not/there/t.db"
    one_line_exit_2(tunelab(*command, "--storage", nested, cwd=tmp_path))
    assert list(tmp_path.iterdir()) == []


def test_resume_of_a_missing_database_creates_nothing(tmp_path):
    line = one_line_exit_2(tunelab("resume", "s", cwd=tmp_path))
    assert "no database at" in line and list(tmp_path.iterdir()) == []


def storage_cases(tmp_path):
    (tmp_path / "corrupt.db").write_bytes(b"this is not a database, just words " * 40)
    (tmp_path / "afile").write_text("x")
    (tmp_path / "adir").mkdir()
    from tunelab import Study

    Study("s", storage=f"sqlite:///{tmp_path}/ok.db", seed=0)
    return [
        ("sqlite:///corrupt.db", r"corrupt\.db is not a SQLite database, or it is damaged"),
        ("sqlite:///afile/sub/t.db", r"afile is a file, not a folder"),
        ("sqlite:///adir", r"adir is a folder, not a database file"),
        ("nosuchdb://x", r"names a database tunelab cannot reach \('nosuchdb'\)"),
        ("mysql://u@localhost/db", r"needs the Python driver 'MySQLdb', which is not installed"),
        ("sqlite:///file:ok.db?mode=ro&uri=true", r"ok\.db is read-only"),
    ]


def test_storage_failures_are_one_line_naming_the_database(tmp_path):
    import re

    for url, message in storage_cases(tmp_path):
        spec = write_spec(tmp_path, storage=url)
        line = one_line_exit_2(tunelab("run", str(spec), cwd=tmp_path))
        assert re.search(message, line), (url, line)
    made = sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith("ok.db-"))
    assert made == [
        "adir",
        "afile",
        "corrupt.db",
        "ok.db",
        "spec.yaml",
    ], "a failed open created something"


@pytest.mark.slow
def test_ctrl_c_says_how_to_resume_this_study(tmp_path):
    spec = write_spec(tmp_path, budget={"trials": 30}, fixed={**SPEC["fixed"], "epochs": 15})
    proc = subprocess.Popen(
        [sys.executable, "-m", "tunelab.cli", "run", str(spec)],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        # A job started in the background by a non-interactive shell inherits SIGINT ignored,
        # and Python then never raises KeyboardInterrupt: give the child Ctrl-C as a user has it.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    _wait_for_complete_trials(tmp_path / "tunelab.db", at_least=1, proc=proc)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert stderr.strip().splitlines()[-1].endswith("Continue with: tunelab resume iris-mlp")


def test_status_counts_trials_per_rung(tmp_path):
    from tunelab import Categorical, Float, Study
    from tunelab.schedulers import ASHAScheduler
    from tunelab.testing.executors import counting

    url = f"sqlite:///{tmp_path}/tunelab.db"
    asha = ASHAScheduler(min_resource=1, max_resource=9, reduction_factor=3)
    study = Study("a", storage=url, scheduler=asha, seed=0)
    study.optimize(counting, {"steps": Categorical([9]), "x": Float(0, 1)}, trials=9)
    expected = {r: sum(max(t.intermediate) >= r for t in study.trials) for r in (1, 3)}
    status = tunelab("status", "a", "--storage", url, cwd=tmp_path)
    assert f"trials per rung: step 1: {expected[1]}  step 3: {expected[3]}" in status.stdout
    rows = tunelab("trials", "a", "--storage", url, "--format", "csv", cwd=tmp_path).stdout
    paused = [r for r in csv.DictReader(io.StringIO(rows)) if r["state"] == "PAUSED"]
    assert paused
    for row in paused:  # counting reports every step: its steps are the step it paused at
        assert row["stopped"] == f"asha at step {row['steps']}"
        rung = {"1": 1, "3": 2}[row["steps"]]
        assert row["why"].startswith(f"reached rung {rung} of 2 (step {row['steps']}); ")


@pytest.mark.slow
def test_a_study_killed_mid_bracket_resumes_and_finishes_its_brackets(tmp_path):
    """SIGKILL a Hyperband study (rungs at epochs 1 and 3 of 9, brackets by trial number) while a
    trial trains and others wait PAUSED at their rungs: ``tunelab resume`` re-queues the
    interrupted trial from its last checkpoint, resumes the paused ones from theirs (no stored
    report is rewritten: nothing retrains), finishes every bracket and meets the budget."""
    from tunelab import Study
    from tunelab.schedulers import HyperbandScheduler, StudyView

    spec = write_spec(
        tmp_path,
        budget={"trials": 18},
        fixed={**SPEC["fixed"], "epochs": 9},
        scheduler={"name": "hyperband", "min_resource": 1, "reduction_factor": 3},
    )
    db = tmp_path / "tunelab.db"
    proc = _run_in_background(spec, tmp_path)
    try:
        _wait_for_mid_bracket(db, proc)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    before = _trials_and_reports(db)
    killed = [n for n, t in before.items() if t["state"] == "RUNNING"]
    assert len(killed) == 1 and any(t["state"] == "PAUSED" for t in before.values())

    url = f"sqlite:///{db}"
    resume = tunelab("resume", "iris-mlp", "--storage", url, cwd=tmp_path)
    assert resume.returncode == 0, resume.stderr
    after = _trials_and_reports(db)

    assert sorted(after) == list(range(18)), "budget not met, or numbers duplicated"
    assert len({t["params"] for t in after.values()}) == 18, "a config ran twice"
    assert {t["state"] for t in after.values()} <= {"COMPLETE", "PAUSED"}
    for number, old in before.items():
        new = after[number]
        assert new["params"] == old["params"]
        if number in killed:  # re-queued: keeps the reports up to its checkpoint, runs on
            assert new["retries"] == old["retries"] + 1
            kept = (old["attrs"].get("checkpoint") or {}).get("step") or 0
            old = {**old, "reports": {s: r for s, r in old["reports"].items() if s <= kept}}
        assert {s: new["reports"].get(s) for s in old["reports"]} == old["reports"], (
            f"trial {number}'s reports from before the kill were rewritten"
        )
        if old["state"] == "COMPLETE":
            assert new == old, f"trial {number} completed before the kill changed"
    hyperband = HyperbandScheduler(min_resource=1, max_resource=9, reduction_factor=3)
    stored = Study("iris-mlp", storage=url, metric="val_accuracy").trials
    bracket = {t.number: hyperband.bracket(t) for t in stored}  # the bracket a number is dealt
    for number, t in after.items():
        steps = sorted(t["reports"])
        assert steps == list(range(1, steps[-1] + 1)), f"trial {number} skipped a step"
        times = [t["reports"][s][1] for s in steps]
        assert times == sorted(times), f"trial {number} reported out of order"
        assert "warnings" not in t["attrs"], t["attrs"]["warnings"]  # all resumed, none restarted
        if t["state"] == "COMPLETE":
            assert steps == list(range(1, 10))
        else:  # paused at a rung of its bracket, resumable from there
            rungs = hyperband.rungs(bracket[number])
            assert steps[-1] in rungs, f"trial {number} paused off its bracket's rungs {rungs}"
            assert t["attrs"]["paused_at"] == t["attrs"]["checkpoint"]["step"] == steps[-1]

    view = StudyView("val_accuracy", "maximize", stored)
    assert hyperband.resume_next(view) is None, "a bracket was left with a promotable trial"
    reached = {s: sum(max(t["reports"]) >= s for t in after.values()) for s in (1, 3, 9)}
    assert reached[9] < reached[3] < reached[1] == 18, f"the rungs did not thin out: {reached}"
    for b in range(hyperband.brackets):  # at each rung the best 1/3 went on, the worst 2 never
        for rung in hyperband.rungs(b):
            at_rung = [max(t["reports"]) for n, t in after.items() if bracket[n] == b]
            at_rung = [last for last in at_rung if last >= rung]
            went_on = sum(last > rung for last in at_rung)
            assert len(at_rung) // 3 <= went_on <= max(len(at_rung) - 2, 0), (b, rung, went_on)
    full = [t["state"] for n, t in after.items() if not hyperband.rungs(bracket[n])]
    assert full and set(full) == {"COMPLETE"}, "the full-training bracket did not finish"

    status = tunelab("status", "iris-mlp", "--storage", url, cwd=tmp_path)
    assert status.returncode == 0, status.stderr
    assert f"trials per rung: step 1: {reached[1]}  step 3: {reached[3]}" in status.stdout
    assert "running" not in status.stdout and "waiting" not in status.stdout


def _wait_for_mid_bracket(db, proc, timeout=120.0):
    """Wait until a trial is PAUSED at a rung while another trains, preferably a promoted one
    part-way from its checkpoint; late in the study (12 trials) any training one will do."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        assert proc.poll() is None, proc.stderr.read().decode()
        try:
            rows = _query(
                db,
                "SELECT t.state, t.attrs, (SELECT MAX(step) FROM tunelab_reports r "
                "WHERE r.trial_id = t.id) FROM tunelab_trials t",
            )
        except sqlite3.OperationalError:  # no database or tables yet
            rows = []
        paused = any(state == "PAUSED" for state, _, _ in rows)
        training = [
            ((json.loads(attrs or "{}").get("checkpoint") or {}).get("step"), last)
            for state, attrs, last in rows
            if state == "RUNNING" and last is not None
        ]
        promoted = any(ckpt is not None and last > ckpt for ckpt, last in training)
        if paused and training and (promoted or len(rows) >= 12):
            return
        time.sleep(0.01)
    raise AssertionError(f"no trial was paused while another trained within {timeout} s")


def _trials_and_reports(db):
    """number -> the trial's stored state, params, value, attrs, retries and its reports, each
    step -> (metrics, when stored): a report written again gets a new time."""
    trials = {
        number: {
            "state": state,
            "params": params,
            "value": value,
            "attrs": json.loads(attrs or "{}"),
            "retries": retries,
            "reports": {},
        }
        for number, state, params, value, attrs, retries in _query(
            db, "SELECT number, state, params, value, attrs, retries FROM tunelab_trials"
        )
    }
    for number, step, metrics, created_at in _query(
        db,
        "SELECT t.number, r.step, r.metrics, r.created_at FROM tunelab_reports r "
        "JOIN tunelab_trials t ON t.id = r.trial_id",
    ):
        trials[number]["reports"][step] = (metrics, created_at)
    return trials
