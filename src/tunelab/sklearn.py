"""scikit-learn's estimator API over tunelab's networks, and a search-CV that tunes with tunelab.

:class:`NeuralNetClassifier` and :class:`NeuralNetRegressor` are scikit-learn estimators around
tunelab's own parts (:class:`~tunelab.nn.ConfigResolver`, :class:`~tunelab.nn.ModelFactory`,
:class:`~tunelab.nn.Preprocessing`, :func:`~tunelab.nn.fit`: the code a tunelab trial trains
with), and work in Pipelines, ``cross_val_score``, ``GridSearchCV`` and ``RandomizedSearchCV``. :class:`TuneSearchCV` is a
search-CV with scikit-learn's interface whose candidates come from tunelab's strategies (grid,
Sobol random, Bayesian), whose hopeless candidates tunelab's schedulers stop between folds, and
whose trials are recorded in a tunelab :class:`~tunelab.Study`.
"""

from __future__ import annotations

import math
import numbers
import statistics
import time
import uuid
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.special import softmax
from sklearn.base import (
    BaseEstimator,
    ClassifierMixin,
    MetaEstimatorMixin,
    RegressorMixin,
    clone,
    is_classifier,
)
from sklearn.metrics import check_scoring
from sklearn.model_selection import check_cv, train_test_split
from sklearn.utils import _safe_indexing, check_random_state, get_tags, indexable
from sklearn.utils.metaestimators import available_if
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from tunelab.errors import SpecError, TrialPruned, TunelabError
from tunelab.nn import (
    CLASSIFICATION,
    LOSSES,
    REGRESSION,
    TRAINING_DEFAULTS,
    ConfigResolver,
    ModelFactory,
    Preprocessing,
    Split,
    predict,
    resolve_device,
)
from tunelab.nn import fit as fit_network
from tunelab.nn.kfold import fold_scheduler_options
from tunelab.nn.runner import early_stopping
from tunelab.schedulers import Scheduler, make_scheduler
from tunelab.space import Categorical, Param, Space
from tunelab.storage import Storage
from tunelab.strategies import Strategy
from tunelab.study import Study
from tunelab.trial import Decision, FrozenTrial, Trial, TrialState

__all__ = ["NeuralNetClassifier", "NeuralNetRegressor", "TuneSearchCV"]

#: The metric a :class:`TuneSearchCV` study optimises and its trials report after each fold.
METRIC = "mean_test_score"


class _NeuralNet(BaseEstimator):
    """What the classifier and the regressor share: the parameters, the checks and the training
    (see :class:`NeuralNetClassifier` for why the hyperparameters are gathered keyword arguments).
    """

    _task: str  # "classification" or "regression"

    def __init__(
        self,
        model: str | Callable[..., Any] = "mlp",
        *,
        shape: Sequence[int] | None = None,
        scaling: str = "standard",
        validation_fraction: float = 0.1,
        device: str = "auto",
        random_state: int | np.random.RandomState | None = None,
        **hyperparameters: Any,
    ) -> None:
        self.model = model
        self.shape = shape
        self.scaling = scaling
        self.validation_fraction = validation_fraction
        self.device = device
        self.random_state = random_state
        self._hyperparameters = hyperparameters

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """The constructor's arguments and every hyperparameter given, by name."""
        return {**super().get_params(deep=deep), **self._hyperparameters}

    def set_params(self, **params: Any) -> _NeuralNet:
        """Set constructor arguments and hyperparameters; names are checked by ``fit``."""
        own = self._get_param_names()
        for name, value in params.items():
            if name in own:
                setattr(self, name, value)
            else:
                self._hyperparameters = {**self._hyperparameters, name: value}
        return self

    def _fit(
        self, X: np.ndarray, y: np.ndarray, n_outputs: int, target_scaling: str = "none"
    ) -> None:
        """Train a network on prepared rows (``X`` float32, ``y`` encoded) and keep it."""
        config, given = _checked_config(self.model, self._hyperparameters, self._task)
        shape = _input_shape(self.shape, X.shape[1])
        factory = ModelFactory(self.model)
        factory.check_input_shape(shape)
        self.device_ = resolve_device(self.device)
        seed = _seed(self.random_state)
        train, val = self._holdout(X, y, config["patience"] is not None, seed)
        prep = Preprocessing(self.scaling, shape, target_scaling).fit(train)
        network = factory.build(config, given, shape, n_outputs, seed)
        target_scaler = prep.target_ if self._task == REGRESSION else None
        self.history_ = fit_network(
            network,
            prep.transform_split(train),
            None if val is None else prep.transform_split(val),
            task=self._task,
            callbacks=[stopper] if (stopper := early_stopping(config)) else [],
            target_scaler=target_scaler,
            seed=seed,
            device=self.device_,
            **{name: config[name] for name in TRAINING_DEFAULTS},
        )
        self.model_ = network
        self.preprocessing_ = prep
        self.config_ = config

    def _holdout(
        self, X: np.ndarray, y: np.ndarray, early_stopping: bool, seed: int
    ) -> tuple[Split, Split | None]:
        """Every row trains, unless early stopping needs a validation split to watch."""
        if not early_stopping:
            return Split(X, y), None
        fraction = self.validation_fraction
        if not (isinstance(fraction, numbers.Real) and 0.0 < fraction < 1.0):
            raise SpecError(
                "validation_fraction",
                f"must be a fraction in (0, 1) when patience is set, got {fraction!r}; "
                "use e.g. 0.1",
            )
        rows = np.arange(len(y))
        stratify = y if self._task == CLASSIFICATION else None
        try:
            train, val = train_test_split(
                rows, test_size=fraction, random_state=seed, stratify=stratify
            )
        except ValueError:  # a class too small to spread over both parts: a plain shuffle
            train, val = train_test_split(rows, test_size=fraction, random_state=seed)
        return Split(X[train], y[train]), Split(X[val], y[val])

    def _outputs(self, X: Any) -> np.ndarray:
        """The network's outputs for raw rows: logits, or values in the target's own units."""
        check_is_fitted(self)
        X = validate_data(self, X, dtype=np.float32, reset=False)
        target_scaler = self.preprocessing_.target_ if self._task == REGRESSION else None
        return predict(self.model_, self.preprocessing_.transform(X), self.device_, target_scaler)


class NeuralNetClassifier(ClassifierMixin, _NeuralNet):
    """A tunelab network as a scikit-learn classifier.

    The labels may be any values scikit-learn accepts (strings, integers); ``classes_`` keeps
    them and ``predict`` returns them. Features are scaled with the training rows' statistics
    (``scaling``), the network is built and initialised by tunelab's
    :class:`~tunelab.nn.ModelFactory` and trained by :func:`~tunelab.nn.fit`: the code that
    trains a tunelab trial, seeded the same way.

    Why the hyperparameters are keyword arguments gathered in ``**hyperparameters``, with
    ``get_params`` and ``set_params`` overridden (skorch's way), rather than one explicit
    argument each: which names exist depends on ``model``. The builtin models take every name of
    :func:`~tunelab.nn.hyperparameters` (some forty, per-layer widths such as ``units_2`` on
    top), and a builder of your own takes names tunelab has never
    heard of (``width``, ``blocks``). Explicit arguments would copy tunelab's list by hand, drift
    from it, and could not tune a builder's own names at all; gathered ones take whatever the
    model takes, and ``GridSearchCV`` sets them like any other parameter. ``get_params`` lists
    the ones given (the others keep the model's defaults); ``set_params`` takes any name.

    Names and values are checked in ``fit``, as scikit-learn asks (a search may set a value it
    then overrides), by tunelab's :class:`~tunelab.nn.ConfigResolver`. The hyperparameters
    given here are the configuration's fixed part, so a mistake raises a
    :class:`~tunelab.errors.SpecError` on ``fixed.<name>``, one line with the fix.

    Args:
        model: ``"mlp"``, ``"cnn1d"``, ``"cnn2d"``, or your builder
            ``build_model(params, input_shape, n_outputs) -> torch.nn.Module`` (the function, or
            ``"package.module:function"``).
        shape: one sample's shape as the network sees it (tunelab's ``data.shape``), e.g.
            ``(1, 8, 8)`` for digits as images in a ``cnn2d``; None keeps rows flat.
        scaling: ``"standard"``, ``"minmax"`` or ``"none"``, fitted on the training rows.
        validation_fraction: the share of the training rows held out, stratified, to watch
            when early stopping is on (``patience`` set), as scikit-learn's ``MLPClassifier``
            does; otherwise every row trains.
        device: ``"auto"`` (CUDA when present), ``"cpu"``, ``"cuda"``, ``"cuda:N"``.
        random_state: seeds the weights, the batch order and dropout: the same seed gives the
            same predictions on the CPU. None draws a seed from NumPy's global generator.
        **hyperparameters: any hyperparameter of the model, e.g. ``lr``, ``epochs``,
            ``batch_size``, ``optimizer``, ``init``, ``units``, ``n_layers``, ``dropout``
            (``tunelab.nn.hyperparameters("mlp")`` lists them with their defaults).

    Attributes:
        classes_: the labels, sorted.
        n_features_in_: features seen in ``fit`` (and ``feature_names_in_`` for DataFrames).
        model_: the trained ``torch.nn.Module``.
        preprocessing_: the fitted :class:`~tunelab.nn.Preprocessing`.
        history_: one logs dict per epoch (``train_loss``, ``lr``, and ``val_*`` with early
            stopping).
        config_: the whole configuration trained: the model's defaults and what was given.
        device_: the device the network lives on.

    Example:
        >>> from sklearn.datasets import load_iris
        >>> X, y = load_iris(return_X_y=True)
        >>> net = NeuralNetClassifier(epochs=30, lr=0.01, units=16, random_state=0).fit(X, y)
        >>> net.classes_.tolist(), net.predict_proba(X[:2]).shape, net.score(X, y) > 0.9
        ([0, 1, 2], (2, 3), True)
        >>> NeuralNetClassifier(lr=-1).fit(X, y)
        Traceback (most recent call last):
        ...
        tunelab.errors.SpecError: fixed.lr: must be a number > 0, got -1; raise it above 0
    """

    _task = CLASSIFICATION

    def fit(self, X: Any, y: Any) -> NeuralNetClassifier:
        """Train on ``X`` (n_samples, n_features) and labels ``y``.

        Raises:
            SpecError: for an unknown model, hyperparameter name or choice, or a value the
                training refuses (``fixed.<name>``), or a ``shape`` that does not fit ``X``.
        """
        X, y = validate_data(self, X, y, dtype=np.float32)
        check_classification_targets(y)
        self.classes_, codes = np.unique(y, return_inverse=True)
        self._fit(X, codes.astype(np.int64), len(self.classes_))
        return self

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities, one column per entry of ``classes_`` (the softmax of the logits)."""
        return softmax(self._outputs(X).astype(np.float64), axis=1)

    def predict(self, X: Any) -> np.ndarray:
        """The most probable label of each row."""
        logits = self._outputs(X)
        return self.classes_[np.argmax(logits, axis=1)]


class NeuralNetRegressor(RegressorMixin, _NeuralNet):
    """A tunelab network as a scikit-learn regressor (one target).

    The network learns the target scaled with the training rows' statistics
    (``target_scaling``, standard by default, as tunelab's trainer does: a loss in the target's
    own units makes learning rates hard to tune); ``predict`` answers in the target's own units.
    Everything else is :class:`NeuralNetClassifier`'s.

    Args:
        model, shape, scaling, validation_fraction, device, random_state, **hyperparameters:
            as for :class:`NeuralNetClassifier`.
        target_scaling: ``"standard"``, ``"minmax"`` or ``"none"``.

    Attributes:
        n_features_in_, model_, preprocessing_, history_, config_, device_: as for
            :class:`NeuralNetClassifier`.

    Example:
        >>> from sklearn.datasets import load_diabetes
        >>> X, y = load_diabetes(return_X_y=True)
        >>> net = NeuralNetRegressor(epochs=30, lr=0.01, random_state=0).fit(X, y)
        >>> net.predict(X[:3]).shape, net.score(X, y) > 0.4
        ((3,), True)
    """

    _task = REGRESSION

    def __init__(
        self,
        model: str | Callable[..., Any] = "mlp",
        *,
        shape: Sequence[int] | None = None,
        scaling: str = "standard",
        target_scaling: str = "standard",
        validation_fraction: float = 0.1,
        device: str = "auto",
        random_state: int | np.random.RandomState | None = None,
        **hyperparameters: Any,
    ) -> None:
        super().__init__(
            model,
            shape=shape,
            scaling=scaling,
            validation_fraction=validation_fraction,
            device=device,
            random_state=random_state,
            **hyperparameters,
        )
        self.target_scaling = target_scaling

    def fit(self, X: Any, y: Any) -> NeuralNetRegressor:
        """Train on ``X`` (n_samples, n_features) and numeric targets ``y``.

        Raises:
            SpecError: as :meth:`NeuralNetClassifier.fit` does.
        """
        X, y = validate_data(self, X, y, dtype=np.float32, y_numeric=True)
        self._fit(X, np.asarray(y, dtype=np.float32), 1, self.target_scaling)
        return self

    def predict(self, X: Any) -> np.ndarray:
        """Predicted targets, in the target's own units, shape (n_samples,)."""
        return self._outputs(X).reshape(-1)


class TuneSearchCV(MetaEstimatorMixin, BaseEstimator):
    """Cross-validated search with scikit-learn's interface, driven by tunelab.

    ``fit(X, y)`` runs a tunelab :class:`~tunelab.Study` whose trials are candidates: tunelab's
    strategy proposes each candidate's parameters, every candidate is cross-validated as
    ``GridSearchCV`` would (a clone of ``estimator`` per fold, scored by ``scoring``), and the
    scheduler may stop it between folds. Then, as in scikit-learn, ``cv_results_`` (which loads
    into a pandas DataFrame with ``GridSearchCV``'s columns), ``best_params_``, ``best_score_``,
    ``best_index_`` and, with ``refit``, ``best_estimator_`` retrained on all of ``X``.

    **Per-fold pruning.** A trial evaluates its folds in order. After fold k (counted from 1)
    it reports ``trial.report(k, mean_test_score=<the mean of its first k fold scores>)``; when
    the scheduler answers STOP, the trial ends there, PRUNED (its unrun folds are never fitted),
    with that running mean as its value. In ``cv_results_`` a pruned trial's unrun splits are
    NaN, its mean and spread are over the folds it ran, and it ranks below every completed
    trial (a failed one, whose mean is NaN, below those). After the last fold there is nothing
    left to stop: the trial completes. A scheduler that pauses (asha, hyperband) pauses between
    folds; a paused trial has no checkpoint, so one that is resumed runs its folds again.

    Scheduler names get options that suit folds: ``"median"`` judges from the first fold
    (``warmup_steps=1``; its other defaults hold: nothing is stopped before 5 others got as
    far); ``"asha"`` and ``"hyperband"`` count rungs in folds (``max_resource`` = the number of
    folds). A scheduler object is used as it is.

    **Seeds.** ``random_state`` seeds the study: the strategy, and each trial's seed (from it
    and the trial number). An ``estimator`` whose own ``random_state`` is None trains each
    trial with that trial's seed (every fold alike), and the refit with the best trial's, so the
    search repeats exactly; an estimator with a ``random_state`` keeps it, as in
    ``GridSearchCV``.

    Args:
        estimator: a scikit-learn estimator; a :class:`NeuralNetClassifier` or
            :class:`NeuralNetRegressor` gets its hyperparameters and the search space checked
            (tunelab's :class:`~tunelab.nn.ConfigResolver`) before any trial runs.
        param_distributions: names (as ``set_params`` takes them) to tunelab parameters
            (:class:`~tunelab.Float`, :class:`~tunelab.Int`, :class:`~tunelab.Categorical`,
            conditions included) or plain lists of values (a Categorical); or a
            :class:`~tunelab.Space`.
        n_trials: how many candidates (the study's trial budget); None runs a whole grid.
        scoring: None (the estimator's ``score``), a scorer name such as ``"accuracy"``, or a
            callable ``scorer(estimator, X, y)``; greater is better.
        cv: None (5 folds), a number of folds (stratified for classifiers), or a splitter.
        refit: retrain the best candidate on all of ``X`` as ``best_estimator_``.
        strategy: ``"random"``, ``"grid"``, ``"bayes"`` or a tunelab
            :class:`~tunelab.strategies.Strategy`.
        scheduler: None or ``"none"``, ``"median"``, ``"asha"``, ``"hyperband"``, or a tunelab
            :class:`~tunelab.schedulers.Scheduler`.
        storage: where the study is recorded: a database URL or a tunelab storage; the default
            ``"sqlite://"`` keeps it in memory.
        study_name: the study's name; None gives each fit a new one. A named study that
            already has trials is refused: a fit is a new search.
        random_state: an int (or a NumPy RandomState) for a repeatable search; None draws one.
        return_train_score: also score each fold's training rows (``split{i}_train_score``).

    Attributes:
        cv_results_: a dict of NumPy arrays, one row per trial in trial-number order, with
            ``GridSearchCV``'s keys: ``mean_fit_time``, ``std_fit_time``, ``mean_score_time``,
            ``std_score_time``, ``param_<name>`` (masked arrays), ``params``,
            ``split{i}_test_score``, ``mean_test_score``, ``std_test_score``,
            ``rank_test_score`` (and the ``train`` ones with ``return_train_score``).
        best_index_, best_params_, best_score_: the best completed trial's row, parameters and
            mean test score.
        best_estimator_: the best candidate retrained on all of ``X`` (with ``refit``);
            ``refit_time_`` the seconds that took.
        scorer_: the scorer used; ``n_splits_`` the number of folds.
        study_: the tunelab :class:`~tunelab.Study`: each trial's state (PRUNED ones with the
            fold they stopped after), reports and seed; trial ``i`` is row ``i``.

    Example:
        >>> from sklearn.datasets import load_iris
        >>> from tunelab import Float
        >>> X, y = load_iris(return_X_y=True)
        >>> search = TuneSearchCV(
        ...     NeuralNetClassifier(epochs=10, units=16),
        ...     {"lr": Float(1e-3, 1e-1, log=True), "batch_size": [16, 32]},
        ...     n_trials=4, cv=3, random_state=0,
        ... ).fit(X, y)
        >>> sorted(search.best_params_), len(search.cv_results_["params"]), search.n_splits_
        (['batch_size', 'lr'], 4, 3)
    """

    def __init__(
        self,
        estimator: BaseEstimator,
        param_distributions: Mapping[str, Any] | Space,
        *,
        n_trials: int | None = 10,
        scoring: str | Callable[..., float] | None = None,
        cv: int | Any = None,
        refit: bool = True,
        strategy: str | Strategy = "random",
        scheduler: str | Scheduler | None = None,
        storage: str | Storage = "sqlite://",
        study_name: str | None = None,
        random_state: int | np.random.RandomState | None = None,
        return_train_score: bool = False,
    ) -> None:
        self.estimator = estimator
        self.param_distributions = param_distributions
        self.n_trials = n_trials
        self.scoring = scoring
        self.cv = cv
        self.refit = refit
        self.strategy = strategy
        self.scheduler = scheduler
        self.storage = storage
        self.study_name = study_name
        self.random_state = random_state
        self.return_train_score = return_train_score

    def fit(self, X: Any, y: Any = None) -> TuneSearchCV:
        """Run the search on ``X`` and ``y``, then refit the best candidate (with ``refit``).

        Raises:
            SpecError: on ``space.<name>...`` or ``fixed.<name>`` for a search space or
                hyperparameter a tunelab network refuses; on ``study_name`` for a study that
                already has trials; on ``scoring`` for more than one scorer.
            TunelabError: when no trial completed (every one failed or was pruned).
        """
        estimator = self.estimator
        space = _as_space(self.param_distributions)
        if isinstance(estimator, _NeuralNet):
            _checked_config(estimator.model, estimator._hyperparameters, estimator._task, space)
        if isinstance(self.scoring, list | tuple | set | Mapping):
            raise SpecError("scoring", "takes one scorer (a name or a callable), not several")
        scorer = check_scoring(estimator, self.scoring)
        X, y = indexable(X, y)
        splits = list(check_cv(self.cv, y, classifier=is_classifier(estimator)).split(X, y))
        study = self._study(len(splits))
        own = estimator.get_params(deep=False)
        seeded = "random_state" in own and own["random_state"] is None
        objective = _CrossValidation(
            estimator, X, y, splits, scorer, self.return_train_score, seeded
        )
        best = study.optimize(objective, space, trials=self.n_trials)
        trials = study.trials
        if best is None:
            raise TunelabError(_nothing_completed(trials))
        self.cv_results_ = _cv_results(
            trials, objective.folds, len(splits), self.return_train_score
        )
        self.best_index_ = best.number
        self.best_params_ = dict(best.params)
        self.best_score_ = float(best.value)
        self.scorer_ = scorer
        self.n_splits_ = len(splits)
        self.study_ = study
        if self.refit:
            start = time.perf_counter()
            self.best_estimator_ = objective.candidate(best.params, best.seed).fit(X, y)
            self.refit_time_ = time.perf_counter() - start
        return self

    def _study(self, n_splits: int) -> Study:
        name = self.study_name or f"TuneSearchCV-{uuid.uuid4().hex[:12]}"
        study = Study(
            name,
            storage=self.storage,
            direction="maximize",
            metric=METRIC,
            strategy=self.strategy,
            scheduler=_fold_scheduler(self.scheduler, n_splits),
            seed=None if self.random_state is None else _seed(self.random_state),
        )
        if study.trials:
            raise SpecError(
                "study_name",
                f"study {name!r} already has {len(study.trials)} trials, and a fit is a new "
                "search; use another name, or None for a new one each fit",
            )
        return study

    @available_if(lambda self: hasattr(self.estimator, "predict"))
    def predict(self, X: Any) -> np.ndarray:
        """``best_estimator_.predict(X)``."""
        check_is_fitted(self, "best_estimator_")
        return self.best_estimator_.predict(X)

    @available_if(lambda self: hasattr(self.estimator, "predict_proba"))
    def predict_proba(self, X: Any) -> np.ndarray:
        """``best_estimator_.predict_proba(X)``."""
        check_is_fitted(self, "best_estimator_")
        return self.best_estimator_.predict_proba(X)

    def score(self, X: Any, y: Any = None) -> float:
        """The best estimator's score on ``X`` and ``y`` by ``scoring`` (as the search scored)."""
        check_is_fitted(self, "best_estimator_")
        return float(self.scorer_(self.best_estimator_, X, y))

    @property
    def classes_(self) -> np.ndarray:
        """The best estimator's labels."""
        check_is_fitted(self, "best_estimator_")
        return self.best_estimator_.classes_

    @property
    def n_features_in_(self) -> int:
        """Features seen in ``fit``."""
        check_is_fitted(self, "best_estimator_")
        return self.best_estimator_.n_features_in_

    def __sklearn_tags__(self) -> Any:
        # a classifier's search is a classifier (stratified folds when it is cross-validated)
        tags = super().__sklearn_tags__()
        inner = get_tags(self.estimator)
        tags.estimator_type = inner.estimator_type
        tags.classifier_tags = inner.classifier_tags
        tags.regressor_tags = inner.regressor_tags
        return tags


@dataclass(frozen=True)
class _FoldResult:
    """One fold of one trial, as ``cv_results_`` shows it (train_score NaN when not asked)."""

    test_score: float
    train_score: float
    fit_time: float
    score_time: float


class _CrossValidation:
    """The objective of one :class:`TuneSearchCV` fit: a trial's candidate, fitted and scored
    fold by fold, reporting the running mean after each (the per-fold pruning rule).

    It runs in the driver's process and keeps each trial's fold results in :attr:`folds`, by
    trial number, for ``cv_results_``; the study keeps the states, reports and values.
    """

    def __init__(
        self,
        estimator: BaseEstimator,
        X: Any,
        y: Any,
        splits: Sequence[tuple[np.ndarray, np.ndarray]],
        scorer: Callable[..., float],
        train_scores: bool,
        seeded: bool,
    ) -> None:
        self.estimator = estimator
        self.X, self.y = X, y
        self.splits = splits
        self.scorer = scorer
        self.train_scores = train_scores
        self.seeded = seeded
        self.folds: dict[int, list[_FoldResult]] = {}

    def candidate(self, params: Mapping[str, Any], seed: int) -> BaseEstimator:
        """A fresh estimator with a trial's parameters (and its seed, when it takes one)."""
        estimator = clone(self.estimator)
        if self.seeded:
            estimator.set_params(random_state=seed)
        return estimator.set_params(**params)

    def __call__(self, trial: Trial) -> float | None:
        estimator = self.candidate(trial.params, trial.seed)
        done = self.folds[trial.number] = []
        trial.final_step = len(self.splits)
        for k, (train, test) in enumerate(self.splits, start=1):
            done.append(self._fold(estimator, train, test))
            decision = trial.report(k, **{METRIC: statistics.fmean(f.test_score for f in done)})
            if decision is Decision.STOP:
                raise TrialPruned(f"stopped after fold {k} of {len(self.splits)}")
            if decision is Decision.PAUSE:
                return None
        return statistics.fmean(f.test_score for f in done)

    def _fold(self, estimator: BaseEstimator, train: np.ndarray, test: np.ndarray) -> _FoldResult:
        X_train, y_train = _safe_indexing(self.X, train), _safe_indexing(self.y, train)
        X_test, y_test = _safe_indexing(self.X, test), _safe_indexing(self.y, test)
        start = time.perf_counter()
        fitted = clone(estimator).fit(X_train, y_train)
        fit_time = time.perf_counter() - start
        test_score = float(self.scorer(fitted, X_test, y_test))
        score_time = time.perf_counter() - start - fit_time
        train_score = (
            float(self.scorer(fitted, X_train, y_train)) if self.train_scores else math.nan
        )
        return _FoldResult(test_score, train_score, fit_time, score_time)


def _checked_config(
    model: Any, fixed: Mapping[str, Any], task: str, space: Space | None = None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The configuration of a network's hyperparameters (``fixed``), after tunelab's checks of
    the model, every name and value, and the search ``space`` when there is one.

    Raises:
        SpecError: on ``model``, ``fixed.<name>`` or ``space.<name>...``.
    """
    ModelFactory(model).builder()
    resolver = ConfigResolver(model, fixed)
    config, given = resolver.resolve({})
    resolver.check(space)
    for field, loss in resolver.candidates(space or {}, "loss"):
        if loss is not None and loss not in LOSSES[task]:
            raise SpecError(
                field, f"{loss!r} is not a {task} loss; known: {', '.join(LOSSES[task])}"
            )
    return config, given


def _input_shape(shape: Sequence[int] | None, n_features: int) -> tuple[int, ...]:
    if shape is None:
        return (n_features,)
    shape = tuple(int(size) for size in shape)
    if math.prod(shape) != n_features:
        raise SpecError(
            "shape",
            f"{list(shape)} holds {math.prod(shape)} values, but X has {n_features} features; "
            f"give sizes whose product is {n_features}",
        )
    return shape


def _seed(random_state: int | np.random.RandomState | None) -> int:
    """An int seed as it is (tunelab's trial seeds are ints); otherwise one drawn from it."""
    if isinstance(random_state, numbers.Integral):
        return int(random_state)
    return int(check_random_state(random_state).randint(np.iinfo(np.int32).max))


def _as_space(distributions: Mapping[str, Any] | Space) -> Space:
    """A tunelab space from tunelab parameters and plain lists of values (each a Categorical)."""
    if isinstance(distributions, Space):
        return distributions
    if not isinstance(distributions, Mapping):
        raise SpecError(
            "param_distributions",
            f"expected a dict of names to tunelab parameters or lists, got "
            f"{type(distributions).__name__}",
        )
    params = {}
    for name, value in distributions.items():
        if isinstance(value, Param):
            params[name] = value
        elif isinstance(value, Sequence | np.ndarray) and not isinstance(value, str):
            params[name] = Categorical(list(value))
        else:
            raise SpecError(
                f"space.{name}",
                f"expected a tunelab Float, Int or Categorical, or a list of values, got "
                f"{value!r}; e.g. tunelab.Float(1e-4, 1e-1, log=True) or [16, 32, 64]",
            )
    return Space(params)


def _fold_scheduler(scheduler: str | Scheduler | None, n_splits: int) -> Scheduler:
    """A scheduler by name with options that count folds (see :class:`TuneSearchCV`)."""
    if not isinstance(scheduler, str):
        return make_scheduler(scheduler)
    return make_scheduler(scheduler, **fold_scheduler_options(scheduler, n_splits))


def _nothing_completed(trials: Sequence[FrozenTrial]) -> str:
    failed = [t for t in trials if t.state is TrialState.FAILED]
    first = f"; the first failure: {failed[0].error.strip().splitlines()[-1]}" if failed else ""
    return (
        f"no trial completed ({len(trials)} ran: {len(failed)} failed, "
        f"{len(trials) - len(failed)} pruned or paused){first}"
    )


# the order of states in rank_test_score: completed, then stopped early, then failed
_RANK_GROUP = {TrialState.COMPLETE: 0, TrialState.PRUNED: 1, TrialState.PAUSED: 1}


def _cv_results(
    trials: Sequence[FrozenTrial],
    folds: Mapping[int, Sequence[_FoldResult]],
    n_splits: int,
    train_scores: bool,
) -> dict[str, Any]:
    """``cv_results_`` as ``GridSearchCV`` lays it out, one row per trial (see TuneSearchCV)."""

    def per_fold(name: str) -> np.ndarray:
        table = np.full((len(trials), n_splits), np.nan)
        for row, trial in enumerate(trials):
            values = [getattr(result, name) for result in folds.get(trial.number, ())]
            table[row, : len(values)] = values
        return table

    failed = np.array([trial.state is TrialState.FAILED for trial in trials])
    results: dict[str, Any] = {}
    for name in ("fit_time", "score_time"):
        results[f"mean_{name}"], results[f"std_{name}"] = _mean_std(per_fold(name))
    params = [dict(trial.params or {}) for trial in trials]
    results.update(_masked_params(params))
    results["params"] = params
    for kind in ("test", "train") if train_scores else ("test",):
        table = per_fold(f"{kind}_score")
        for split in range(n_splits):
            results[f"split{split}_{kind}_score"] = table[:, split]
        mean, std = _mean_std(table)
        results[f"mean_{kind}_score"] = np.where(failed, np.nan, mean)
        results[f"std_{kind}_score"] = np.where(failed, np.nan, std)
        if kind == "test":
            results["rank_test_score"] = _ranks(trials, results["mean_test_score"])
    return results


def _mean_std(table: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each row's mean and spread over its folds that ran (NaN for a row with none)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an all-NaN row is NaN, not news
        return np.nanmean(table, axis=1), np.nanstd(table, axis=1)


def _ranks(trials: Sequence[FrozenTrial], means: np.ndarray) -> np.ndarray:
    """1 for the best; completed trials by mean, then pruned and paused ones, then the rest;
    equal keys share the lowest rank, as scikit-learn's ``rankdata(method="min")``."""
    keys = [
        (_RANK_GROUP.get(trial.state, 2), -mean if math.isfinite(mean) else math.inf)
        for trial, mean in zip(trials, means, strict=True)
    ]
    return np.array([1 + sum(other < key for other in keys) for key in keys], dtype=np.int32)


def _masked_params(params: Sequence[Mapping[str, Any]]) -> dict[str, np.ma.MaskedArray]:
    """``param_<name>`` columns as scikit-learn builds them: masked where a candidate lacks the
    name (a conditional parameter), a numeric dtype when every value is a number, else object;
    names sorted, as its parameter grids and samplers sort them."""
    columns = {}
    for name in sorted({name for config in params for name in config}):
        values = [config[name] for config in params if name in config]
        try:
            inferred = np.array(values)
        except ValueError:  # sequences of different lengths
            inferred = np.array(values, dtype=object)
        numeric = inferred.dtype.kind != "U" and inferred.ndim == 1
        column = np.ma.MaskedArray(
            np.empty(len(params), dtype=inferred.dtype if numeric else object), mask=True
        )
        for row, config in enumerate(params):
            if name in config:
                column[row] = config[name]
        columns[f"param_{name}"] = column
    return columns
