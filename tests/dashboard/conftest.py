"""Studies the dashboard tests read: real SQLite files made by a real :class:`tunelab.Study`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from tunelab import Categorical, Float, Study, TrialState
from tunelab.schedulers import MedianScheduler
from tunelab.storage import Storage, get_storage

#: A name and a parameter name that would run as script if a page ever used them as markup.
XSS = "<script>alert(1)</script>"
XSS_VALUE = "<img src=x onerror=alert(2)>"
XSS_ERROR = "RuntimeError: <b onmouseover=alert(3)>boom</b>"
SPACE = {"x": Float(0, 1), "opt": Categorical(["a", "b"])}
FAILS, WARNS = 3, 7  # the demo study's trials that fail, and that warn


def objective(trial):
    """Reports four steps of a curve and stops when the scheduler says so (trials 5, 6, 9, 10 and
    11 are pruned); trial 3 raises, trial 7 warns, and trial 0 saves files in its folder."""
    x = trial.params["x"]
    for step in range(4):
        trial.report(step, score=x * (step + 1) / 4, loss=1 - x)
        if trial.should_stop():
            return None
    if trial.number == FAILS:
        raise RuntimeError("boom in user code")
    if trial.number == WARNS:
        trial.warn("the learning rate was clipped")
    if trial.number == 0:
        (trial.dir / "logs").mkdir(parents=True)
        (trial.dir / "model.pt").write_bytes(b"w" * 1000)
        (trial.dir / "logs" / "train.log").write_text("epoch 1\n")
    return x + (0.5 if trial.params["opt"] == "b" else 0.0)


def demo_study(url: str, trials: int = 12) -> Study:
    study = Study(
        "demo",
        storage=url,
        direction="maximize",
        metric="score",
        scheduler=MedianScheduler(warmup_steps=1, min_trials=3),
        seed=0,
    )
    study.optimize(objective, SPACE, trials=trials)
    return study


def add_xss_study(storage: Storage) -> None:
    """A study whose name, parameter name, parameter value and error are all markup."""
    record = storage.create_study(XSS, "minimize", XSS)
    good = storage.create_trial(record.id, 0, "t", {XSS: XSS_VALUE}, seed=1, proposal={})
    storage.add_report(good.id, 0, {XSS: 0.5}, owner="t")
    storage.finish_trial(good.id, TrialState.COMPLETE, value=0.5, metrics={XSS: 0.5}, owner="t")
    bad = storage.create_trial(record.id, 1, "t", {XSS: "plain"}, seed=2, proposal={})
    storage.finish_trial(bad.id, TrialState.FAILED, error=XSS_ERROR, owner="t")


@dataclass(frozen=True)
class Demo:
    url: str
    db: Path
    study: Study


@pytest.fixture(scope="session")
def demo(tmp_path_factory) -> Demo:
    """The demo study (with a final result stored) and the XSS study, in one database."""
    db = tmp_path_factory.mktemp("dashboard") / "t.db"
    url = f"sqlite:///{db}"
    study = demo_study(url)
    study.set_attr(
        "result",
        {
            "trial": study.best_trial.number,
            "test_metrics": {"score": 0.9},
            "retrained_on": "train+validation",
        },
    )
    add_xss_study(get_storage(url))
    return Demo(url, db, study)
