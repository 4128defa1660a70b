"""The examples the README lists run: each spec end to end on a small budget, the script in full.

The full budgets (and their measured times and scores) are in the README; here every spec runs
two trials of three epochs, enough to prove that its fields, space and conditions still work.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tunelab.experiment import Experiment
from tunelab.spec import parse_spec
from tunelab.trial import TrialState

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
README = (ROOT / "README.md").read_text()
SPECS = sorted(EXAMPLES.glob("*.yaml"))


def test_the_readme_lists_every_example_with_its_command():
    listed = set(re.findall(r"`(?:tunelab run|python) (examples/[\w.]+)`", README))
    on_disk = {f"examples/{p.name}" for p in [*SPECS, EXAMPLES / "custom_model.py"]}
    assert on_disk <= listed, on_disk - listed


@pytest.mark.slow
@pytest.mark.parametrize("path", SPECS, ids=[p.stem for p in SPECS])
def test_each_example_spec_runs_end_to_end_on_a_small_budget(path, tmp_path, mnist1d_cache):
    raw = yaml.safe_load(path.read_text())
    raw.update(budget={"trials": 2}, workers=1, storage=f"sqlite:///{tmp_path}/t.db")
    raw["fixed"] = {**raw.get("fixed", {}), "epochs": 3}  # warm-up takes up to 2
    experiment = Experiment.from_spec(parse_spec(raw, base_dir=EXAMPLES))
    experiment.search()
    trials = experiment.study.trials
    assert {t.state for t in trials} == {TrialState.COMPLETE}, [t.error for t in trials]
    result = experiment.finalize()
    assert set(result["test_metrics"]) >= {"test_loss"}
    assert all(Path(p).is_file() for p in result["artifacts"].values())


def test_the_readmes_networks_example_runs(capsys):
    block = next(b for b in re.findall(r"```python\n(.*?)```", README, re.S) if "build_cnn" in b)
    exec(compile(block, "README.md", "exec"), {})
    epochs, accuracy = capsys.readouterr().out.split()
    assert 1 <= int(epochs) <= 5 and float(accuracy) > 0.8


@pytest.mark.slow
def test_the_custom_model_script_runs(tmp_path):
    script = (EXAMPLES / "custom_model.py").read_text()
    small = script.replace("trials=12, workers=2", "trials=2, workers=2").replace(
        '"epochs": 20', '"epochs": 2'
    )
    assert small != script
    (tmp_path / "custom_model.py").write_text(small)
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    run = subprocess.run(
        [sys.executable, "custom_model.py"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert run.returncode == 0, run.stderr
    assert "test_accuracy" in run.stdout
    assert f"reloaded {tmp_path / 'custom_model.py'}:build_model" in run.stdout
