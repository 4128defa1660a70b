import pytest

from tunelab.space import Categorical, Float, Int, Space
from tunelab.strategies import GridSearch
from tunelab.testing import StrategyContract
from tunelab.testing.strategies import history_of


class TestGridContract(StrategyContract):
    @pytest.fixture
    def strategy(self):
        return GridSearch()


def test_visits_every_combination_once_then_stops():
    space = Space({"a": Int(1, 2), "b": Categorical(["x", "y", "z"])})
    proposals = GridSearch().ask(space, [], range(10))
    assert len(proposals) == 6
    assert len({tuple(sorted(p.params.items())) for p in proposals}) == 6


def test_grid_position_comes_from_history():
    space = Space({"a": Float(0, 1, values=(0.0, 0.5, 1.0))})
    first = GridSearch().ask(space, [], [0])
    rest = GridSearch().ask(space, history_of([first[0].params]), [1, 2, 3])
    assert [p.params["a"] for p in first + rest] == [0.0, 0.5, 1.0]
