"""Bayesian optimisation: a Gaussian process of "config -> score" (BoTorch/GPyTorch) chooses each next
trial by expected improvement.

How the pieces fit the spaces of this project:

* **Features.** Floats and ints enter as their unit-cube position (log scale already applied by the
  space), categoricals as integer codes handled by BoTorch's categorical (Hamming) kernel in
  ``MixedSingleTaskGP``. A parameter that is inactive (its ``when`` is false) gets a value of its own:
  0.5 for a number, an extra code for a categorical.
* **Observations.** Without early stopping, every finished trial counts: COMPLETE ones with their
  value, FAILED ones (crash, divergence, time limit) with the worst value seen, so the model learns
  to stay away without crashing on them. With a scheduler that pauses or prunes (ASHA, Hyperband,
  the median rule), most trials stop after a few epochs; as in BOHB, the model then learns at the
  highest step that enough trials reached (``n_initial`` of them), each scored at that step
  whatever its state (paused at a later rung, still running, complete), so every rung's results
  count and a few trials that happened to finish first do not outrank the rest (the trap of TPE
  with a successive-halving pruner). Trials pruned below that step rank under all of them; paused
  ones below it are left out, since they may yet be promoted. The GP fits a noise term, so a
  noisy metric is smoothed, not interpolated.
* **Running trials.** Those not yet scored at the model's step are pending: their configs are
  "believed" at the model's own prediction (kriging believer):
  the GP is conditioned on them, their uncertainty collapses, and the next proposal goes elsewhere.
  A batch of n proposals is built the same way, one at a time.
* **Acquisition.** log expected improvement (numerically sound where plain EI underflows). It is
  scored on Sobol candidates and perturbations of the best configs (categoricals included), then
  the numbers of ten of them (the best candidate, the best observed config and eight drawn by
  roulette on their expected improvement, as Optuna's GPSampler does) climb it by L-BFGS-B, all
  in one batched problem, with categoricals and inactive parameters held: gradients reach the
  bounds and corners that sampling rarely hits exactly. Integers are rounded by the space after.
* **Cost.** The GP's hyperparameters are re-optimised only when the history has grown by a tenth
  (every ask up to 30 trials), on that prefix of the history (at most 64 of its trials: the best
  half and an even spread of the rest), and reused in between: a proposal stays a function of the
  history alone, so a resumed study proposes what an uninterrupted one would. Past
  ``max_observations`` trials, the model itself is conditioned on the best half and a random half
  of the rest (the GP is cubic in observations). At 200 trials a proposal takes about 0.5 s, 0.9 s
  when it refits (bench/bayes_speed.py). Beyond a few thousand trials the plan is a trust region
  (TuRBO-style local GPs), not a bigger subsample. A study that stops trials early asks for many
  cheap trials: there each proposal scores a quarter of the candidates without the ascent, and
  the hyperparameters are refitted when the model's step changes or its observations grow by a
  tenth (about 30 ms a proposal).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from tunelab.space import Categorical, Space
from tunelab.strategies.base import Proposal, Strategy, strategy_index
from tunelab.strategies.random import RandomSearch
from tunelab.trial import FrozenTrial, TrialState

__all__ = ["BayesSearch"]

_INACTIVE_NUMBER = 0.5
_ASCENT_STARTS = 10
_ASCENT_EVALUATIONS = 30  # of the batched acquisition: each costs ~10 ms at 200 trials
_MAX_FIT_POINTS = 64
_MAX_FIT_ITERATIONS = 50  # ~0.4 s a refit; not converged, but close (bench/bayes_speed.py)


class BayesSearch(Strategy):
    """Gaussian-process Bayesian optimisation with log expected improvement.

    Args:
        n_initial: Sobol trials before the model takes over (default: 2 per dimension, 5..10).
        direction: set by the study ("maximize" or "minimize").
        metric: set by the study; the metric read in reports when the model learns at a step.
        n_candidates: random candidates scored per proposal (plus as many local ones).
        max_observations: beyond this many, fit on a subset (see the module docstring).
        seed: seeds the initial design and the candidate search.

    Example:
        >>> from tunelab import Float, Study
        >>> study = Study("bo", storage="sqlite://", direction="minimize", strategy=BayesSearch(seed=0))
        >>> best = study.optimize(lambda t: (t.params["x"] - 0.3) ** 2, {"x": Float(0, 1)}, trials=15)
        >>> abs(best.params["x"] - 0.3) < 0.05
        True
    """

    def __init__(
        self,
        n_initial: int | None = None,
        direction: str = "maximize",
        metric: str = "value",
        n_candidates: int = 1024,
        max_observations: int = 300,
        seed: int | None = None,
    ) -> None:
        self.n_initial = n_initial
        self.direction = direction
        self.metric = metric
        self.n_candidates = n_candidates
        self.max_observations = max_observations
        self.seed = seed

    def ask(
        self, space: Space, history: Sequence[FrozenTrial], numbers: Sequence[int]
    ) -> list[Proposal]:
        first = strategy_index(history, numbers[0]) if numbers else 0
        n_initial = self.n_initial or min(10, max(5, 2 * len(space)))
        sign = 1.0 if self.direction == "maximize" else -1.0
        observed = _observations(history, self.metric, sign, n_initial)
        if first < n_initial or len(observed.trials) < 2:
            initial = RandomSearch(seed=self.seed).ask(space, history, numbers)
            return [Proposal(p.params, {**p.info, "phase": "initial"}) for p in initial]
        import torch

        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # the GP is small: threads cost more than they give
        try:
            return _Proposer(self, space, history, observed, first).propose(len(numbers))
        finally:
            torch.set_num_threads(threads)


class _Proposer:
    """One ask: fit the GP on what is known, then pick configs one by one."""

    def __init__(
        self,
        strategy: BayesSearch,
        space: Space,
        history: Sequence[FrozenTrial],
        observed: _Observations,
        index: int,
    ) -> None:
        import torch

        self.torch = torch
        self.strategy = strategy
        self.space = space
        self.encoder = _Encoder(space)
        self.rng = np.random.default_rng([strategy.seed or 0, index])
        self.sign = 1.0 if strategy.direction == "maximize" else -1.0
        self.level = observed.level
        # A study that stops trials early (ASHA, Hyperband, the median rule) asks for many: each
        # proposal buys a few epochs, not a whole training, so it gets a quarter of the candidates
        # and no gradient ascent (about 30 ms instead of 150 ms at 50 observations).
        self.light = observed.early_stops
        self.n_observed = len(observed.trials)
        self.observed, self.targets = self._subsample(observed.trials, observed.targets)
        self.seen = {_key(t.params) for t in history if t.params is not None}
        learnt = {t.id for t in observed.trials}
        self.pending = [  # running, not yet observed at the model's step: their outcome is to come
            t.params
            for t in history
            if t.state is TrialState.RUNNING and t.params is not None and t.id not in learnt
        ]

    def _subsample(
        self, observed: list[FrozenTrial], targets: np.ndarray
    ) -> tuple[list[FrozenTrial], np.ndarray]:
        """All observations, or past the limit the best half of it plus a random rest."""
        limit = self.strategy.max_observations
        if len(observed) <= limit:
            return observed, targets
        order = np.argsort(-targets)
        best, rest = order[: limit // 2], order[limit // 2 :]
        picks = self.rng.choice(rest, size=limit - len(best), replace=False)
        kept = sorted([*best, *picks])
        return [observed[i] for i in kept], targets[kept]

    def propose(self, n: int) -> list[Proposal]:
        torch = self.torch
        X = self.encoder.features([t.params for t in self.observed])
        y = self.targets
        model = _gp(torch, X, y, self.encoder.categorical_dims)
        model.load_state_dict(self._hyperparameters(X), strict=False)
        model.eval()
        best_f = float(y.max())
        proposals = []
        pending = list(self.pending)
        for _ in range(n):
            believed = _believe(torch, model, self.encoder.features(pending)) if pending else model
            params, info = self._maximise(believed, best_f)
            proposals.append(Proposal(params, info))
            pending.append(params)
            self.seen.add(_key(params))
        return proposals

    def _hyperparameters(self, X: np.ndarray) -> dict[str, Any]:
        """Kernel and noise hyperparameters, re-optimised only at a schedule of history sizes.

        Fitted on the first ``m`` observations (by trial number), ``m`` from :func:`_refit_size`
        (at most ``_MAX_FIT_POINTS`` of them, see :func:`_fit_rows`), and cached under that prefix:
        the fit is a function of the history alone (a resumed study proposes what an uninterrupted
        one would), yet most asks skip the costly optimisation.
        """
        subsampled = len(self.observed) < self.n_observed
        m = len(self.observed) if subsampled else _refit_size(len(self.observed))
        prefix = zip(self.observed[:m], self.targets[:m], strict=True)
        # Short trials (ASHA) reach the model's step out of number order, which would change the
        # prefix at almost every ask: there, a refit waits until the step or the size changes.
        content = () if self.light else tuple((_key(t.params), y) for t, y in prefix)
        key = (subsampled, self.level, m, content)
        cache = self.strategy.__dict__.setdefault("_fits_", {})
        if key not in cache:
            y = self.targets[:m]
            rows = _fit_rows(y)
            model = _gp(self.torch, X[:m][rows], y[rows], self.encoder.categorical_dims)
            _optimise(model)
            cache.clear()  # one entry: the next prefix extends this one
            cache[key] = {
                name: value.detach().clone()
                for name, value in model.state_dict().items()
                if not name.startswith("outcome_transform")
            }
        return cache[key]

    def _maximise(self, model: Any, best_f: float) -> tuple[dict[str, Any], dict[str, Any]]:
        from botorch.acquisition.analytic import LogExpectedImprovement

        torch = self.torch
        acquisition = LogExpectedImprovement(model, best_f=best_f)
        configs = self._candidates()
        scores = self._score(acquisition, configs)
        # Then gradient ascent on the numbers (categoricals and inactive parameters held) from the
        # best candidate, the best observed config and a few more drawn in proportion to their
        # expected improvement: it walks to the bounds and corners that sampling rarely hits exactly.
        if not self.light:
            ascended = self._ascend(acquisition, self._starts(configs, scores))
            scores = np.concatenate([scores, self._score(acquisition, ascended)])
            configs = configs + ascended
        for i in np.argsort(-scores):
            if _key(configs[i]) not in self.seen:
                break
        chosen = configs[i]
        with torch.no_grad():
            posterior = model.posterior(
                torch.as_tensor(self.encoder.features([chosen]), dtype=torch.double)
            )
            mean = float(posterior.mean.squeeze()) * self.sign
            std = float(posterior.variance.clamp_min(0).sqrt().squeeze())
        info = {
            "phase": "model",
            "acquisition": "log_expected_improvement",
            "acquisition_value": float(scores[i]),
            "predicted_mean": mean,
            "predicted_std": std,
            "n_observations": len(self.observed),
            "step": self.level,
            "n_pending": len(self.pending),
        }
        return chosen, info

    def _score(self, acquisition: Any, configs: list[dict[str, Any]]) -> np.ndarray:
        with self.torch.no_grad():
            feats = self.torch.as_tensor(self.encoder.features(configs), dtype=self.torch.double)
            return acquisition(feats.unsqueeze(1)).numpy()

    def _starts(self, configs: list[dict[str, Any]], scores: np.ndarray) -> list[dict[str, Any]]:
        """Where the ascent starts: the best candidate, the best observed config, and candidates
        drawn by roulette on exp(log EI) (Optuna's GPSampler does the same), for diversity."""
        best = int(np.argmax(scores))
        incumbent = self.observed[int(np.argmax(self.targets))].params
        weights = np.exp(scores - scores[best])
        weights[best] = 0.0
        n_drawn = min(_ASCENT_STARTS - 2, int(np.count_nonzero(weights > 0)))
        drawn = []
        if n_drawn:
            drawn = self.rng.choice(len(configs), n_drawn, replace=False, p=weights / weights.sum())
        return [configs[best], incumbent, *(configs[i] for i in drawn)]

    def _ascend(self, acquisition: Any, configs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """L-BFGS-B on the acquisition over the active numeric features of each config, all starts
        as one problem (their sum; the gradients are independent), rounded back to configs by the
        space (integers, steps)."""
        from scipy.optimize import minimize

        torch = self.torch
        x0 = self.encoder.features(configs)
        held = np.zeros_like(x0, dtype=bool)
        held[:, self.encoder.categorical_dims] = True
        for j, name in enumerate(self.space):
            held[:, j] |= np.array([name not in config for config in configs])
        if held.all():  # only categoricals (or nothing active): nothing to climb
            return configs
        bounds = np.stack([np.where(held, x0, 0.0), np.where(held, x0, 1.0)], -1).reshape(-1, 2)

        def negative(flat: np.ndarray) -> tuple[float, np.ndarray]:
            x = torch.as_tensor(flat, dtype=torch.double).view(len(configs), 1, -1).requires_grad_()
            loss = -acquisition(x).sum()
            (grad,) = torch.autograd.grad(loss, x)
            return float(loss), grad.numpy().reshape(-1)

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = minimize(
                negative,
                x0.reshape(-1),
                jac=True,
                method="L-BFGS-B",
                bounds=bounds,
                options={"maxfun": _ASCENT_EVALUATIONS},
            )
        u = result.x.reshape(len(configs), -1).copy()
        names = list(self.space)
        for j in self.encoder.categorical_dims:  # codes back to unit positions for decode
            n = len(self.space[names[j]].choices)
            u[:, j] = (np.minimum(x0[:, j], n - 1) + 0.5) / n
        return [self.space.decode(row) for row in np.clip(u, 0.0, 1.0)]

    def _candidates(self) -> list[dict[str, Any]]:
        from scipy.stats import qmc

        n = self.strategy.n_candidates // 4 if self.light else self.strategy.n_candidates
        sobol = qmc.Sobol(len(self.space), scramble=True, seed=self.rng.integers(2**31))
        configs = [self.space.decode(u) for u in sobol.random(n)]
        best = [self.observed[i].params for i in np.argsort(-self.targets)[:5]]
        per_incumbent = max(1, n // (2 * len(best)))
        for config in best:
            configs += self._perturb(config, per_incumbent, scale=0.1)
        return configs

    def _perturb(self, config: dict[str, Any], n: int, scale: float) -> list[dict[str, Any]]:
        """Neighbours of ``config``: numbers jittered in the unit cube, categoricals resampled."""
        u = self.space.encode(config)
        out = []
        for _ in range(n):
            v = u.copy()
            for j, param in enumerate(self.space.values()):
                if isinstance(param, Categorical):
                    if self.rng.random() < 0.2 or np.isnan(v[j]):
                        v[j] = self.rng.random()
                elif np.isnan(v[j]):
                    v[j] = self.rng.random()
                else:
                    v[j] = np.clip(v[j] + self.rng.normal(0, scale), 0.0, 1.0)
            out.append(self.space.decode(v))
        return out


@dataclass(frozen=True)
class _Observations:
    """What the model learns from: trials and their scores (to maximise) at one step."""

    trials: list[FrozenTrial]
    targets: np.ndarray
    level: int | None  # the step the scores are taken at; None: the trials' final values
    early_stops: bool  # the study pauses or prunes trials: many of them run a few epochs only


def _observations(
    history: Sequence[FrozenTrial], metric: str, sign: float, n_min: int
) -> _Observations:
    """Every trial's score at the highest step that at least ``n_min`` trials reached.

    A study whose scheduler stops or pauses trials (ASHA, Hyperband, the median rule) has few
    complete trials and many that ran a few epochs. Ranking each complete trial above each stopped
    one lets whichever trials finished first steer the search (Optuna's TPE with its
    successive-halving pruner did worse than random search for this reason). Instead, as BOHB
    does, the model learns from the highest step with enough trials, every trial that got that
    far scored at that step, whatever its state: complete, paused at a later rung, still running.
    Trials pruned below that step rank under all of them (the scheduler judged them for good);
    paused ones below it are left out (they may yet be promoted); failed ones get the worst score.
    """
    trials = [t for t in history if t.params is not None and t.state is not TrialState.WAITING]
    stops = {
        t.last_step
        for t in trials
        if t.state in (TrialState.PAUSED, TrialState.PRUNED) and t.last_step is not None
    }
    chosen: tuple[int, int | None, list] = (-1, None, [])
    for level in [None, *sorted(stops, reverse=True)]:
        scored = [(t, v) for t in trials if (v := _score_at(t, level, metric)) is not None]
        usable = sum(math.isfinite(v) for _, v in scored)
        if usable > chosen[0]:
            chosen = (usable, level, scored)
        if usable >= n_min:
            break
    _, level, scored = chosen
    values = np.array([sign * v for _, v in scored])
    finite = values[np.isfinite(values)]
    floor = finite.min() if finite.size else 0.0
    below = [
        t
        for t in trials
        if t.state is TrialState.PRUNED
        and (level is None or t.last_step is None or t.last_step < level)
    ]
    kept = [t for t, _ in scored] + below
    targets = np.concatenate(
        [np.where(np.isfinite(values), values, floor), np.full(len(below), floor)]
    )
    order = sorted(range(len(kept)), key=lambda i: kept[i].number)
    return _Observations([kept[i] for i in order], targets[order], level, bool(stops))


def _score_at(trial: FrozenTrial, level: int | None, metric: str) -> float | None:
    """The trial's score at step ``level`` (None: final values only): NaN for a failed or
    diverged trial, None when it has no score there."""
    if trial.state is TrialState.FAILED:
        return math.nan
    last = trial.last_step
    if trial.state is TrialState.COMPLETE and (level is None or last is None or last <= level):
        return math.nan if trial.value is None else trial.value
    if level is None or last is None or last < level:
        return None
    first = min(s for s in trial.intermediate if s >= level)
    value = trial.intermediate[first].get(metric)
    return math.nan if value is None or not math.isfinite(value) else value


class _Encoder:
    """Configs -> GP features: unit positions for numbers, integer codes for categoricals."""

    def __init__(self, space: Space) -> None:
        self.space = space
        self.categorical_dims = [
            j for j, param in enumerate(space.values()) if isinstance(param, Categorical)
        ]

    def features(self, configs: Sequence[dict[str, Any]]) -> np.ndarray:
        """A parameter a config lacks is inactive there; so is a value outside the space's
        range (a define-by-run objective may have suggested it in another range)."""
        rows = np.empty((len(configs), len(self.space)))
        for i, config in enumerate(configs):
            for j, (name, param) in enumerate(self.space.items()):
                active = name in config and param.contains(config[name], config)
                if isinstance(param, Categorical):
                    n = len(param.choices)
                    rows[i, j] = param.choices.index(config[name]) if active else n
                else:
                    rows[i, j] = param.to_unit(config[name], config) if active else _INACTIVE_NUMBER
        return rows


def _refit_size(n: int) -> int:
    """The history size whose fit serves ``n`` observations: every size up to 30, then the sizes
    at which the history has grown by another tenth (30, 33, 37, 41, ... about 30 refits to 600)."""
    m = min(n, 30)
    while math.ceil(m * 1.1) <= n and n > 30:
        m = math.ceil(m * 1.1)
    return m


def _fit_rows(y: np.ndarray) -> np.ndarray:
    """Which observations the hyperparameters are fitted on: all, or past ``_MAX_FIT_POINTS`` the
    best half of that many and the rest evenly spaced, so a refit costs the same at any size."""
    if len(y) <= _MAX_FIT_POINTS:
        return np.arange(len(y))
    order = np.argsort(-y, kind="stable")
    best, rest = order[: _MAX_FIT_POINTS // 2], np.sort(order[_MAX_FIT_POINTS // 2 :])
    spread = rest[np.linspace(0, len(rest) - 1, _MAX_FIT_POINTS - len(best)).round().astype(int)]
    return np.sort(np.concatenate([best, spread]))


def _gp(torch: Any, X: np.ndarray, y: np.ndarray, categorical_dims: list[int]) -> Any:
    """A GP with a noise term on standardised targets; categoricals get BoTorch's Hamming kernel."""
    from botorch.models import MixedSingleTaskGP, SingleTaskGP
    from botorch.models.transforms import Standardize

    train_X = torch.as_tensor(X, dtype=torch.double)
    train_y = torch.as_tensor(y, dtype=torch.double).unsqueeze(-1)
    if np.ptp(y) == 0:  # all equal: a tiny deterministic spread lets the targets standardise
        train_y = train_y + 1e-6 * torch.arange(len(y), dtype=torch.double).unsqueeze(-1)
    outcome = Standardize(m=1)
    if categorical_dims:
        return MixedSingleTaskGP(
            train_X, train_y, cat_dims=categorical_dims, outcome_transform=outcome
        )
    return SingleTaskGP(train_X, train_y, outcome_transform=outcome)


def _optimise(model: Any) -> None:
    """Maximise the marginal likelihood over the hyperparameters (bounded L-BFGS steps)."""
    from botorch.fit import fit_gpytorch_mll
    from gpytorch.mlls import ExactMarginalLogLikelihood

    mll = ExactMarginalLogLikelihood(model.likelihood, model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # BoTorch warns on ill-conditioning it then handles itself
        fit_gpytorch_mll(mll, optimizer_kwargs={"options": {"maxiter": _MAX_FIT_ITERATIONS}})


def _believe(torch: Any, model: Any, X_pending: np.ndarray) -> Any:
    """The model conditioned on the pending configs at its own predicted values."""
    X = torch.as_tensor(X_pending, dtype=torch.double)
    with torch.no_grad():
        mean = model.posterior(X).mean
    return model.condition_on_observations(model.transform_inputs(X), mean)


def _key(params: dict[str, Any]) -> tuple:
    return tuple(sorted((k, repr(v)) for k, v in params.items()))
