"""Shared fixtures: a small data set standardised like the objective does it, a reporter, and a
private cache for generated data sets."""

from __future__ import annotations

import os

import pytest

from tunelab.nn import torch_threads
from tunelab.nn.data import CACHE_ENV, Scaler, Split, load_dataset, split_dataset
from tunelab.trial import Decision


@pytest.fixture(scope="session", autouse=True)
def one_torch_thread():
    """The networks here are tiny: a second intra-op thread only adds synchronisation, and on a
    busy machine OpenMP's spinning threads make each step up to 50 times slower. One thread
    keeps these tests fast and their timing independent of what else the machine runs."""
    with torch_threads(1):
        yield


@pytest.fixture(scope="session")
def iris_splits() -> tuple[Split, Split, Split]:
    """Iris, split and standardised with training statistics (tiny, so fits take milliseconds)."""
    train, val, test = split_dataset(load_dataset("iris"), test_size=0.2, holdout=0.2, seed=0)
    scaler = Scaler().fit(train.X)
    return tuple(Split(scaler.transform(s.X), s.y) for s in (train, val, test))


@pytest.fixture(scope="session")
def mnist1d_cache(tmp_path_factory):
    """A cache folder of the session's own, with MNIST-1D generated in it once (a few seconds),
    so tests never write to the user's cache and never depend on what it holds."""
    folder = tmp_path_factory.mktemp("cache")
    previous = os.environ.get(CACHE_ENV)
    os.environ[CACHE_ENV] = str(folder)
    load_dataset("mnist1d")
    yield folder
    if previous is None:
        del os.environ[CACHE_ENV]
    else:
        os.environ[CACHE_ENV] = previous


class RecordingReporter:
    """Records every report and answers CONTINUE, or STOP from ``stop_at`` on, or PAUSE at the
    step ``pause_at`` (a scheduler resumes a paused trial with a reporter of its own)."""

    def __init__(self, stop_at: int | None = None, pause_at: int | None = None) -> None:
        self.stop_at = stop_at
        self.pause_at = pause_at
        self.calls: list[tuple[int, int, dict[str, float]]] = []

    def __call__(self, number: int, step: int, metrics: dict[str, float]) -> Decision:
        self.calls.append((number, step, metrics))
        if self.stop_at is not None and step >= self.stop_at:
            return Decision.STOP
        if step == self.pause_at:
            return Decision.PAUSE
        return Decision.CONTINUE

    @property
    def steps(self) -> list[int]:
        return [step for _, step, _ in self.calls]


@pytest.fixture
def make_reporter() -> type[RecordingReporter]:
    """The reporter class, so a test can choose when it says STOP or PAUSE."""
    return RecordingReporter
