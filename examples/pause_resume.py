"""Your own objective that pauses and resumes from a checkpoint: python examples/pause_resume.py

A scheduler may answer a report with PAUSE. The objective then saves what it needs to go on
(``trial.save_checkpoint``) and returns; the trial is stored PAUSED with its reports. When the
scheduler resumes it, in this process or any other, the objective runs again with
``trial.resumed_from`` set to the epoch it paused at, loads the checkpoint and trains on from
there, instead of from scratch. If the checkpoint is missing or unreadable, ``load_checkpoint``
returns None, records a warning on the trial, and the trial starts over from epoch 1.

The scheduler here is deliberately small: it pauses every trial at epoch 5 and resumes the best
paused trials, one by one, once four have reached epoch 5 (a one-rung successive halving).
"""

import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn

import tunelab
from tunelab import Decision, Float, TrialState
from tunelab.schedulers import Scheduler

EPOCHS, RUNG = 15, 5
X, y = load_digits(return_X_y=True)
X_train, X_val, y_train, y_val = train_test_split(X / 16.0, y, test_size=0.25, random_state=0)
X_train, X_val = (torch.tensor(a, dtype=torch.float32) for a in (X_train, X_val))
y_train, y_val = torch.tensor(y_train), torch.tensor(y_val)


def objective(trial):
    torch.manual_seed(trial.seed)
    model = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))
    optimizer = torch.optim.SGD(model.parameters(), lr=trial.params["lr"], momentum=0.9)
    first_epoch = 1
    state = trial.load_checkpoint()  # None on a fresh start
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["rng"])
        first_epoch = trial.resumed_from + 1
    for epoch in range(first_epoch, EPOCHS + 1):
        for batch in torch.randperm(len(X_train)).split(64):
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(X_train[batch]), y_train[batch]).backward()
            optimizer.step()
        with torch.no_grad():
            accuracy = (model(X_val).argmax(1) == y_val).float().mean().item()
        trial.report(epoch, accuracy=accuracy)
        if trial.should_pause():
            trial.save_checkpoint(
                {
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "rng": torch.get_rng_state(),
                }
            )
            return accuracy
        if trial.should_stop():
            break
    return accuracy


class PauseAtRung(Scheduler):
    """Pause each trial at ``rung``; resume the best paused one once ``quorum`` reached it."""

    def __init__(self, rung: int = RUNG, quorum: int = 4) -> None:
        self.rung = rung
        self.quorum = quorum

    def on_report(self, trial, step, study):
        paused_before = "checkpoint" in trial.attrs
        return Decision.PAUSE if step == self.rung and not paused_before else Decision.CONTINUE

    def resume_next(self, study):
        reached = [t for t in study.trials if self.rung in t.intermediate]
        paused = [t for t in reached if t.state is TrialState.PAUSED]
        if len(reached) < self.quorum or not paused:
            return None
        at_rung = sorted(t.intermediate[self.rung][study.metric] for t in reached)
        best = max(paused, key=lambda t: t.intermediate[self.rung][study.metric])
        top_half = at_rung[len(at_rung) // 2]
        return best if best.intermediate[self.rung][study.metric] >= top_half else None


if __name__ == "__main__":
    study = tunelab.Study(
        "pause-resume",
        storage="sqlite:///pause_resume.db",
        metric="accuracy",
        seed=0,
        scheduler=PauseAtRung(),
    )
    study.optimize(objective, {"lr": Float(1e-3, 0.5, log=True)}, trials=8)
    for t in study.trials:
        print(
            f"trial {t.number}: {t.state.value:8} lr={t.params['lr']:.4f} "
            f"epochs={t.last_step:2d} accuracy={t.intermediate[t.last_step]['accuracy']:.3f}"
        )
    print("best:", study.best_trial.number, round(study.best_trial.value, 4))
