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

from tunelab.nn.data import Dataset, Split, split_dataset

__all__ = ["Fold", "HoldoutSplitter", "Splits", "Splitter"]


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
