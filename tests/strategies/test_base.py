"""The sequence position strategies derive from trial numbers."""

from tunelab.strategies.base import History, strategy_index
from tunelab.trial import FrozenTrial, TrialState


def test_the_driver_history_gives_the_same_position_as_counting_by_a_bisect():
    sources = ["strategy", "queue", "strategy", "strategy", "queue", "queue", "strategy"]
    trials = [
        FrozenTrial(id=n + 1, number=n, state=TrialState.COMPLETE, params={}, source=source)
        for n, source in enumerate(sources)
    ]
    history = History(trials, [t.number for t in trials if t.source != "strategy"])
    for number in range(len(trials) + 1):  # up to the next number, the one a driver asks for
        assert strategy_index(history, number) == strategy_index(list(trials), number)
    assert strategy_index(history, 7) == 4
