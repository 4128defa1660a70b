"""Shared fixtures: a small data set standardised like the objective does it, and a reporter."""

from __future__ import annotations

import pytest

from tunelab.nn.data import Split, Standardizer, load_dataset, split_dataset
from tunelab.trial import Decision


@pytest.fixture(scope="session")
def iris_splits() -> tuple[Split, Split, Split]:
    """Iris, split and standardised with training statistics (tiny, so fits take milliseconds)."""
    train, val, test = split_dataset(load_dataset("iris"), test_size=0.2, holdout=0.2, seed=0)
    scaler = Standardizer().fit(train.X)
    return tuple(Split(scaler.transform(s.X), s.y) for s in (train, val, test))


class RecordingReporter:
    """Records every report and answers CONTINUE, or STOP from ``stop_at`` on."""

    def __init__(self, stop_at: int | None = None) -> None:
        self.stop_at = stop_at
        self.calls: list[tuple[int, int, dict[str, float]]] = []

    def __call__(self, number: int, step: int, metrics: dict[str, float]) -> Decision:
        self.calls.append((number, step, metrics))
        if self.stop_at is not None and step >= self.stop_at:
            return Decision.STOP
        return Decision.CONTINUE

    @property
    def steps(self) -> list[int]:
        return [step for _, step, _ in self.calls]


@pytest.fixture
def make_reporter() -> type[RecordingReporter]:
    """The reporter class, so a test can choose when it says STOP."""
    return RecordingReporter
