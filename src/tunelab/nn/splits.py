"""How a data set is cut for a search: one test split kept apart, and the folds trials train on.

A splitter turns a :class:`~tunelab.nn.Dataset` into :class:`Splits`: the test split, cut first
and used once after the search, and one or more :class:`Fold` objects (a training and a
validation split each) from the rest. A holdout gives one fold; cross-validation gives several
from the same rows, so a splitter is the one piece that changes between the two.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from tunelab.errors import SpecError
from tunelab.nn.data import CLASSIFICATION, MIN_SPLIT_ROWS, Dataset, Split, _take, split_dataset

__all__ = ["Fold", "HoldoutSplitter", "KFoldSplitter", "Splits", "Splitter"]


@dataclass(frozen=True, eq=False)
class Fold:
    """A training split and the validation split a trial is scored on."""

    train: Split
    val: Split

    def combined(self) -> Split:
        """Training and validation rows together (training first): what the final model, whose
        configuration is chosen, trains on."""
        return Split(
            np.concatenate([self.train.X, self.val.X]), np.concatenate([self.train.y, self.val.y])
        )


@dataclass(frozen=True, eq=False)
class Splits:
    """A data set cut for a search.

    Attributes:
        dataset: the whole data set (its task, classes, sample shape, ...).
        test: the rows kept apart until the final score.
        folds: the (train, validation) pairs of the other rows; one for a holdout.
    """

    dataset: Dataset
    test: Split
    folds: tuple[Fold, ...]


class Splitter(Protocol):
    """Anything that cuts a data set into :class:`Splits` the same way every time."""

    def split(self, dataset: Dataset) -> Splits: ...


class HoldoutSplitter:
    """Cut off a test split, then hold out a validation split from the rest: one fold.

    Classification splits keep the class proportions where every class is large enough (see
    :func:`~tunelab.nn.split_dataset`).

    Args:
        test_size: the fraction of all rows kept for the test.
        holdout: the fraction of the remaining rows held out for validation.
        seed: the same seed gives the same splits.

    Example:
        >>> from tunelab.nn import load_dataset
        >>> splits = HoldoutSplitter(test_size=0.2, holdout=0.2, seed=0).split(load_dataset("iris"))
        >>> len(splits.folds), len(splits.folds[0].train.y), len(splits.folds[0].val.y), len(splits.test.y)
        (1, 96, 24, 30)
    """

    def __init__(self, test_size: float = 0.2, holdout: float = 0.2, seed: int = 0) -> None:
        self.test_size = test_size
        self.holdout = holdout
        self.seed = seed

    def split(self, dataset: Dataset) -> Splits:
        """The test split and the one fold.

        Raises:
            SpecError: on ``data.test_size`` or ``data.holdout`` for a fraction outside (0, 1)
                or one that leaves a split empty.
        """
        train, val, test = split_dataset(dataset, self.test_size, self.holdout, self.seed)
        return Splits(dataset, test, (Fold(train, val),))


class KFoldSplitter:
    """Cut off a test split, then cut the rest into ``k`` folds, ``repeats`` times over.

    Each fold validates on one k-th of the rows and trains on the others, so every row is
    validated on once per repeat; a score averaged over the folds leans far less on one lucky
    split than a holdout's. Classification folds keep the class proportions (scikit-learn's
    ``StratifiedKFold``) where every class has at least ``k`` rows; a data set with ``groups``
    keeps each group's rows together, in the test split and in the folds (``GroupShuffleSplit``,
    ``StratifiedGroupKFold`` / ``GroupKFold``), so no fold is scored on a group it trained on.
    Repeat ``r`` reshuffles with seed ``seed + r``.

    Args:
        k: folds per repeat (at least 2).
        repeats: how many times the folds are cut afresh (repeated k-fold).
        test_size: the fraction of all rows (or of the groups) kept for the test.
        seed: the same seed gives the same splits.

    Example:
        >>> from tunelab.nn import load_dataset
        >>> splits = KFoldSplitter(k=5, test_size=0.2, seed=0).split(load_dataset("iris"))
        >>> len(splits.folds), len(splits.folds[0].train.y), len(splits.folds[0].val.y), len(splits.test.y)
        (5, 96, 24, 30)
    """

    def __init__(self, k: int = 5, repeats: int = 1, test_size: float = 0.2, seed: int = 0):
        self.k = k
        self.repeats = repeats
        self.test_size = test_size
        self.seed = seed

    def split(self, dataset: Dataset) -> Splits:
        """The test split and ``k * repeats`` folds, in repeat order.

        Raises:
            SpecError: on ``data.validation.kfold`` when a fold would be too small, or
                ``data.test_size`` for a fraction outside (0, 1).
        """
        rest, test = self._test_split(dataset)
        folds = []
        for repeat in range(self.repeats):
            for train, val in self._folds(dataset, rest, self.seed + repeat):
                folds.append(Fold(_take(dataset, rest[train]), _take(dataset, rest[val])))
        smallest = min(min(len(f.train.y), len(f.val.y)) for f in folds)
        if smallest < MIN_SPLIT_ROWS:
            raise SpecError(
                "data.validation.kfold",
                f"{self.k} folds of {len(rest)} rows leave a split of {smallest} rows; a score "
                f"from fewer than {MIN_SPLIT_ROWS} rows means nothing: use fewer folds or more "
                "data",
            )
        return Splits(dataset, _take(dataset, test), tuple(folds))

    def _test_split(self, dataset: Dataset) -> tuple[np.ndarray, np.ndarray]:
        from sklearn.model_selection import GroupShuffleSplit, train_test_split

        if not 0.0 < self.test_size < 1.0:
            raise SpecError(
                "data.test_size",
                f"must be a fraction between 0 and 1 (exclusive), got {self.test_size!r}",
            )
        rows = np.arange(len(dataset.y))
        if dataset.groups is not None:
            cut = GroupShuffleSplit(n_splits=1, test_size=self.test_size, random_state=self.seed)
            return next(cut.split(rows, groups=dataset.groups))
        stratify = dataset.y if self._stratified(dataset.y, 2) else None
        return tuple(
            train_test_split(
                rows, test_size=self.test_size, random_state=self.seed, stratify=stratify
            )
        )

    def _folds(self, dataset: Dataset, rest: np.ndarray, seed: int) -> list:
        from sklearn.model_selection import GroupKFold, KFold, StratifiedGroupKFold, StratifiedKFold

        y, groups = dataset.y[rest], None if dataset.groups is None else dataset.groups[rest]
        stratified = dataset.task == CLASSIFICATION and self._stratified(y, self.k)
        if groups is not None:
            n_groups = len(np.unique(groups))
            if n_groups < self.k:
                raise SpecError(
                    "data.validation.kfold",
                    f"{self.k} folds need at least {self.k} groups, but the rows left after the "
                    f"test split hold {n_groups}; use fewer folds",
                )
            if stratified:
                cutter = StratifiedGroupKFold(self.k, shuffle=True, random_state=seed)
            else:
                cutter = GroupKFold(self.k, shuffle=True, random_state=seed)
        elif stratified:
            cutter = StratifiedKFold(self.k, shuffle=True, random_state=seed)
        else:
            cutter = KFold(self.k, shuffle=True, random_state=seed)
        if len(rest) < self.k:
            raise SpecError(
                "data.validation.kfold",
                f"{self.k} folds need at least {self.k} rows, but {len(rest)} are left",
            )
        return list(cutter.split(rest, y, groups))

    @staticmethod
    def _stratified(y: np.ndarray, k: int) -> bool:
        """Whether every class has the ``k`` rows stratification needs (regression: never)."""
        if y.dtype.kind not in "iu" or not len(y):
            return False
        return bool(np.bincount(y).min() >= k)
