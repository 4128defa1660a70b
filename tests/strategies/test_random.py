import numpy as np
import pytest

from tunelab.space import Float, Space
from tunelab.strategies import RandomSearch
from tunelab.testing import StrategyContract
from tunelab.testing.strategies import history_of


class TestRandomContract(StrategyContract):
    @pytest.fixture
    def strategy(self):
        return RandomSearch(seed=0)


def test_seeded_sequence_is_reproducible_and_seed_dependent():
    space = Space({"x": Float(0, 1), "y": Float(0, 1)})
    a = [p.params for p in RandomSearch(seed=1).ask(space, [], range(5))]
    b = [p.params for p in RandomSearch(seed=1).ask(space, [], range(5))]
    c = [p.params for p in RandomSearch(seed=2).ask(space, [], range(5))]
    assert a == b and a != c


def test_continues_the_sequence_from_history_as_a_resumed_study_would():
    space = Space({"x": Float(0, 1)})
    all_at_once = [p.params for p in RandomSearch(seed=0).ask(space, [], range(6))]
    first = RandomSearch(seed=0).ask(space, [], range(3))
    rest = RandomSearch(seed=0).ask(space, history_of([p.params for p in first]), [3, 4, 5])
    assert [p.params for p in first + rest] == all_at_once


def test_sobol_covers_the_space_evenly():
    space = Space({"x": Float(0, 1)})
    xs = np.array([p.params["x"] for p in RandomSearch(seed=0).ask(space, [], range(64))])
    counts, _ = np.histogram(xs, bins=8, range=(0, 1))
    assert (counts == 8).all()  # a Sobol point set of 2^k fills equal cells exactly


def test_log_scale_is_respected():
    space = Space({"lr": Float(1e-5, 1e-1, log=True)})
    lrs = np.array([p.params["lr"] for p in RandomSearch(seed=0).ask(space, [], range(256))])
    assert 0.4 < np.mean(lrs < 1e-3) < 0.6  # half the draws below the geometric midpoint
