"""What every Strategy must do. Subclass ``StrategyContract`` and provide a ``strategy`` fixture."""

from __future__ import annotations

import pytest

from tunelab.space import Categorical, Float, Int, Space
from tunelab.trial import FrozenTrial, TrialState

SPACE = Space(
    {
        "lr": Float(1e-4, 0.3, log=True, values=(1e-3, 1e-2)),
        "layers": Int(1, 3),
        "opt": Categorical(["sgd", "adam"]),
        "momentum": Float(0.0, 0.99, values=(0.0, 0.9), when={"opt": "sgd"}),
    }
)


def history_of(configs: list[dict], values: list[float] | None = None) -> list[FrozenTrial]:
    """Finished trials with these params (numbers 0..n-1), as a strategy sees them."""
    values = values or [float(i) for i in range(len(configs))]
    return [
        FrozenTrial(id=i + 1, number=i, state=TrialState.COMPLETE, params=c, value=v)
        for i, (c, v) in enumerate(zip(configs, values, strict=True))
    ]


class StrategyContract:
    space = SPACE

    def test_proposals_are_valid_configs(self, strategy):
        proposals = strategy.ask(self.space, [], list(range(8)))
        assert proposals, "a fresh strategy must propose something"
        for proposal in proposals:
            assert self.space.validate(proposal.params) == proposal.params

    def test_one_proposal_per_number_at_most(self, strategy):
        assert len(strategy.ask(self.space, [], [0, 1, 2])) <= 3

    def test_same_history_same_proposals(self, strategy):
        history = history_of([p.params for p in strategy.ask(self.space, [], [0, 1, 2])])
        first = strategy.ask(self.space, history, [3, 4])
        again = strategy.ask(self.space, history, [3, 4])
        assert [p.params for p in first] == [p.params for p in again]

    def test_params_round_trip(self, strategy):
        assert type(strategy)(**strategy.get_params()).get_params() == strategy.get_params()

    @pytest.mark.parametrize("n_failed", [1, 3])
    def test_keeps_proposing_after_failures(self, strategy, n_failed):
        failed = [
            FrozenTrial(id=i + 1, number=i, state=TrialState.FAILED, params=p.params, error="boom")
            for i, p in enumerate(strategy.ask(self.space, [], list(range(n_failed))))
        ]
        assert strategy.ask(self.space, failed, [n_failed])
