"""The Python examples run as a user runs them (the spec examples are in tests/nn/test_examples.py)."""

import subprocess
import sys
from pathlib import Path

import pytest

from tunelab import Study, TrialState

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.mark.slow
def test_pause_resume_example_resumes_trials_from_their_checkpoints(tmp_path):
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / "pause_resume.py")],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    url = f"sqlite:///{tmp_path}/pause_resume.db"
    trials = Study("pause-resume", storage=url, metric="accuracy").trials
    resumed = [t for t in trials if t.state is TrialState.COMPLETE]
    assert len(trials) == 8 and len(resumed) >= 2
    for trial in resumed:
        assert sorted(trial.intermediate) == list(range(1, 16)), "each epoch reported once"
        assert trial.attrs["checkpoint"] == {"step": 5} and "warnings" not in trial.attrs
    assert all(t.last_step == 5 for t in trials if t.state is TrialState.PAUSED)
    assert "best:" in done.stdout


PORTS = sorted((EXAMPLES / "porting").glob("*_tunelab.py"))


@pytest.mark.parametrize("port", PORTS, ids=[p.stem for p in PORTS])
def test_an_optuna_script_ports_with_at_most_five_changed_lines_and_runs(port, tmp_path):
    """examples/porting: Optuna's own example scripts (offline) beside their tunelab ports."""
    import difflib
    import os

    original = port.with_name(port.name.replace("_tunelab", "_optuna"))
    diff = difflib.unified_diff(
        original.read_text().splitlines(), port.read_text().splitlines(), lineterm="", n=0
    )
    changed = [line for line in diff if line.startswith("-") and not line.startswith("---")]
    assert 1 <= len(changed) <= 5, changed
    done = subprocess.run(
        [sys.executable, str(port)],
        cwd=tmp_path,
        env={**os.environ, "N_TRIALS": "4"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Best" in done.stdout or "FrozenTrial(" in done.stdout
