import math

import numpy as np
import pytest

from tunelab import Categorical, Float, Int, Study, TrialState
from tunelab.space import Space
from tunelab.strategies import BayesSearch
from tunelab.testing import StrategyContract
from tunelab.testing.strategies import SPACE
from tunelab.trial import FrozenTrial


class TestBayesContract(StrategyContract):
    @pytest.fixture
    def strategy(self):
        return BayesSearch(seed=0, n_initial=2)


def finished(space, n, seed=0, value=None, state=TrialState.COMPLETE):
    rng = np.random.default_rng(seed)
    trials = []
    for i in range(n):
        params = space.decode(rng.random(len(space)))
        v = value(params) if value else float(rng.random())
        trials.append(FrozenTrial(id=i + 1, number=i, state=state, params=params, value=v))
    return trials


def score(params):
    return (
        -((math.log10(params["lr"]) + 2) ** 2)
        + (params["opt"] == "sgd") * 0.5
        - params["layers"] * 0.1
    )


def test_model_proposals_are_valid_in_a_mixed_conditional_space():
    strategy = BayesSearch(seed=0, n_initial=5)
    history = finished(SPACE, 12, value=score)
    for proposal in strategy.ask(SPACE, history, [12, 13, 14]):
        assert SPACE.validate(proposal.params) == proposal.params
        assert proposal.info["phase"] == "model"


def test_each_proposal_records_why():
    history = finished(SPACE, 12, value=score)
    (proposal,) = BayesSearch(seed=0, n_initial=5).ask(SPACE, history, [12])
    info = proposal.info
    assert info["acquisition"] == "log_expected_improvement"
    assert math.isfinite(info["acquisition_value"]) and info["predicted_std"] >= 0
    assert info["n_observations"] == 12 and math.isfinite(info["predicted_mean"])


def test_a_batch_and_running_trials_give_distinct_points():
    space = Space({"x": Float(0, 1), "y": Float(0, 1)})
    history = finished(space, 10, value=lambda p: -((p["x"] - 0.7) ** 2) - (p["y"] - 0.2) ** 2)
    batch = [p.params for p in BayesSearch(seed=0, n_initial=5).ask(space, history, range(10, 14))]
    points = np.array([[p["x"], p["y"]] for p in batch])
    distances = np.linalg.norm(points[:, None] - points[None], axis=-1)[np.triu_indices(4, 1)]
    assert distances.min() > 1e-3, "a pending-aware batch must not repeat a point"
    running = [FrozenTrial(id=99, number=10, state=TrialState.RUNNING, params=batch[0])]
    (after,) = BayesSearch(seed=0, n_initial=5).ask(space, history + running, [11])
    assert after.params != batch[0] and after.info["n_pending"] == 1


def test_failed_and_pruned_trials_keep_it_proposing():
    history = finished(SPACE, 8, value=score)
    history += [
        FrozenTrial(
            id=20, number=8, state=TrialState.FAILED, params=history[0].params, error="diverged"
        ),
        FrozenTrial(id=21, number=9, state=TrialState.PRUNED, params=history[1].params, value=-3.0),
        FrozenTrial(
            id=22, number=10, state=TrialState.PRUNED, params=history[2].params, value=None
        ),
    ]
    (proposal,) = BayesSearch(seed=0, n_initial=5).ask(SPACE, history, [11])
    assert SPACE.validate(proposal.params) == proposal.params


def test_all_trials_failed_still_proposes():
    history = finished(SPACE, 6, state=TrialState.FAILED)
    assert BayesSearch(seed=0, n_initial=3).ask(SPACE, history, [6])


def test_seeded_studies_are_reproducible():
    space = {
        "lr": Float(1e-4, 1.0, log=True),
        "layers": Int(1, 4),
        "opt": Categorical(["sgd", "adam"]),
    }

    def run():
        study = Study("b", storage="sqlite://", strategy=BayesSearch(n_initial=4), seed=3)
        study.optimize(lambda t: score(t.params), space, trials=9)
        return [t.params for t in study.trials]

    assert run() == run()


def test_finds_a_better_optimum_than_its_initial_design_on_a_smooth_function():
    space = {"x": Float(-5, 10), "y": Float(0, 15)}

    def branin(trial):
        x, y = trial.params["x"], trial.params["y"]
        return (
            (y - 5.1 / (4 * math.pi**2) * x**2 + 5 / math.pi * x - 6) ** 2
            + 10 * (1 - 1 / (8 * math.pi)) * math.cos(x)
            + 10
        )

    study = Study("b", storage="sqlite://", direction="minimize", strategy="bayes", seed=0)
    study.optimize(branin, space, trials=25)
    initial = min(t.value for t in study.trials if t.proposal.get("phase") == "initial")
    assert study.best_trial.value < min(initial, 1.0)  # the optimum is 0.398
    assert study.best_trial.proposal["phase"] == "model"


def test_subsamples_past_max_observations():
    history = finished(SPACE, 40, value=score)
    (proposal,) = BayesSearch(seed=0, n_initial=5, max_observations=20).ask(SPACE, history, [40])
    assert proposal.info["n_observations"] == 20


def test_log_scaled_parameters_are_modelled_on_the_log_scale():
    space = {"lr": Float(1e-5, 1e-1, log=True)}
    study = Study("log", storage="sqlite://", strategy=BayesSearch(n_initial=5), seed=0)
    study.optimize(lambda t: -((math.log10(t.params["lr"]) + 4) ** 2), space, trials=14)
    model_phase = [t.params["lr"] for t in study.trials if t.proposal.get("phase") == "model"]
    assert model_phase and 10**-4.5 < study.best_trial.params["lr"] < 10**-3.5
    assert sum(1e-5 <= lr < 1e-3 for lr in model_phase) >= len(model_phase) / 2


def test_reaches_an_optimum_in_a_corner_exactly():
    # Many network optima sit on a bound (largest lr that trains, no weight decay): the
    # acquisition is climbed to the bounds, with the categorical held at its code.
    space = {
        "a": Float(0, 1),
        "b": Float(1e-3, 1, log=True),
        "c": Float(0, 1),
        "opt": Categorical(["sgd", "adam"]),
    }

    def corner(trial):
        p = trial.params
        return p["a"] + math.log10(p["b"]) - p["c"] + (p["opt"] == "adam")

    study = Study("corner", storage="sqlite://", strategy=BayesSearch(n_initial=5), seed=0)
    study.optimize(corner, space, trials=20)
    assert study.best_trial.params == {"a": 1.0, "b": 1.0, "c": 0.0, "opt": "adam"}


def test_a_pruned_trial_ranks_below_every_complete_one():
    # Stopped at epoch 3 with a lucky value, a pruned trial must not pull the model towards it.
    space = Space({"x": Float(0, 1)})
    complete = finished(space, 6, value=lambda p: p["x"])
    pruned = FrozenTrial(id=7, number=6, state=TrialState.PRUNED, params={"x": 0.97}, value=5.0)
    failed = FrozenTrial(id=8, number=7, state=TrialState.FAILED, params={"x": 0.5}, value=None)
    history = [*complete, pruned, failed]
    (proposal,) = BayesSearch(seed=0, n_initial=2).ask(space, history, [8])
    # Modelled at 5.0, the pruned trial would draw the proposal next to it, predicted far above 1.
    assert proposal.info["predicted_mean"] <= max(t.value for t in complete) + 0.2


def curve(number, x, steps, state, final=None):
    """A trial of the 1-d space below whose accuracy at step s is x * s / 9."""
    reports = {s: {"value": x * s / 9} for s in range(1, steps + 1)}
    return FrozenTrial(id=number + 1, number=number, state=state, params={"x": x},
                       value=final, intermediate=reports)  # fmt: skip


def test_with_early_stops_it_learns_at_the_highest_step_enough_trials_reached():
    """As BOHB does: every trial that got to that step counts, scored there, whatever its state;
    pruned ones below it rank under them, paused ones below it may still come back: left out."""
    space = Space({"x": Float(0, 1)})
    xs = np.linspace(0.05, 0.95, 14)
    history = [curve(n, x, 1, TrialState.PAUSED) for n, x in enumerate(xs[:6])]
    history += [curve(n, x, 3, TrialState.PAUSED) for n, x in enumerate(xs[6:11], start=6)]
    history += [curve(11, xs[11], 2, TrialState.PRUNED)]
    history += [curve(n, x, 9, TrialState.COMPLETE, x) for n, x in ((12, xs[12]), (13, xs[13]))]
    (proposal,) = BayesSearch(seed=0, n_initial=5).ask(space, history, [14])
    assert proposal.info["step"] == 3, "7 trials reached step 3, only 2 step 9"
    assert proposal.info["n_observations"] == 7 + 1, "7 scored at step 3, the pruned one below"


def test_early_finishers_do_not_steer_the_search():
    """The trap of TPE with successive halving: two mediocre trials that happened to finish
    first rank above every stopped one. Here the model compares all trials at step 1, where
    the stopped ones show the way to large x."""
    space = Space({"x": Float(0, 1)})
    history = [curve(n, x, 9, TrialState.COMPLETE, x) for n, x in ((0, 0.1), (1, 0.2))]
    history += [
        curve(n, x, 1, TrialState.PAUSED) for n, x in enumerate(np.linspace(0.0, 0.9, 12), start=2)
    ]
    (proposal,) = BayesSearch(seed=0, n_initial=5).ask(space, history, [14])
    assert proposal.info["step"] == 1
    assert proposal.params["x"] > 0.7


def test_a_space_of_categoricals_only_is_modelled_without_a_climb():
    space = Space({"a": Categorical([1, 2, 3]), "b": Categorical(["x", "y"])})
    study = Study("categoricals", storage="sqlite://", strategy=BayesSearch(n_initial=3), seed=0)
    study.optimize(lambda t: t.params["a"] * (1 if t.params["b"] == "x" else 2), space, trials=8)
    assert all(t.state is TrialState.COMPLETE for t in study.trials)
    assert [t.proposal["phase"] for t in study.trials[3:]] == ["model"] * 5
