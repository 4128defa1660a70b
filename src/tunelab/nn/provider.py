"""The data of a search, loaded and split once per run and carried to the worker processes.

Loading is the slow part of a small trial: a CSV is parsed in Python, MNIST-1D is generated (or
read from its cache). A :class:`DataProvider` loads on first use and keeps the result; pickled (as
an executor does to send the objective to its workers) it loads first and takes the arrays along,
so a worker never reads the file again, however many trials it runs.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tunelab.errors import SpecError
from tunelab.nn.data import CLASSIFICATION, Preprocessing, Split, load_dataset
from tunelab.nn.splits import Splits, Splitter

__all__ = ["DataProvider"]


class DataProvider:
    """Loads the data a spec's ``data`` section names, once, and cuts it with a splitter.

    Args:
        data: the spec's data section: ``source``, and optionally ``target``, ``task``,
            ``base_dir``, ``shape`` (see :func:`~tunelab.nn.load_dataset`), ``scaling`` and
            ``target_scaling`` (see :meth:`preprocessing`).
        splitter: cuts the data set into a test split and folds, e.g. a
            :class:`~tunelab.nn.HoldoutSplitter`.

    Example:
        >>> from tunelab.nn import HoldoutSplitter
        >>> provider = DataProvider({"source": "iris"}, HoldoutSplitter(seed=0))
        >>> provider.splits().dataset.task, len(provider.splits().folds)
        ('classification', 1)
    """

    def __init__(self, data: Mapping[str, Any], splitter: Splitter) -> None:
        self.data = data
        self.splitter = splitter
        self._splits: Splits | None = None
        #: (train, val, preprocessing, train ready, val ready) per fold, the latest first
        self._prepared: list[tuple[Split, Split | None, Preprocessing, Split, Split | None]] = []

    def __getstate__(self) -> dict[str, Any]:
        self.splits()  # the arrays travel with the provider: a worker never loads them again
        return {**self.__dict__, "_prepared": []}  # a worker prepares its own

    def splits(self) -> Splits:
        """The data set and its splits, loaded and cut on the first call.

        Raises:
            SpecError: on ``data.<field>`` for a source, target, task or shape that does not fit.
        """
        if self._splits is None:
            dataset = load_dataset(
                self.data["source"],
                target=self.data.get("target"),
                base_dir=self.data.get("base_dir"),
                task=self.data.get("task"),
                shape=self.data.get("shape"),
                group=self.data.get("group"),
            )
            self._splits = self.splitter.split(dataset)
        return self._splits

    def preprocessing(self) -> Preprocessing:
        """A new, unfitted :class:`~tunelab.nn.Preprocessing` as the data section asks: feature
        ``scaling`` (default ``standard``) and, for a regression, ``target_scaling`` (default
        ``standard``). Fit it on each training split alone.

        Raises:
            SpecError: on ``data.target_scaling`` given for a classification.
        """
        dataset = self.splits().dataset
        target_scaling = self.data.get("target_scaling")
        if dataset.task == CLASSIFICATION:
            if target_scaling not in (None, "none"):
                raise SpecError(
                    "data.target_scaling",
                    f"scales regression targets, but {dataset.name} is a classification; "
                    "remove data.target_scaling",
                )
            target_scaling = "none"
        return Preprocessing(
            self.data.get("scaling", "standard"), dataset.shape, target_scaling or "standard"
        )

    def prepared(
        self, train: Split, val: Split | None = None
    ) -> tuple[Preprocessing, Split, Split | None]:
        """The :meth:`preprocessing` fitted on ``train``, and ``train`` and ``val`` transformed
        by it. The pairs of the latest folds asked for are kept, as many as the splits have
        folds: every trial on a fold needs the same (a small network's trial would otherwise
        spend a tenth of its time preparing them), and cross-validated trials ask for each fold
        in turn, so k folds keep k prepared copies of the data."""
        for kept in self._prepared:
            if kept[0] is train and kept[1] is val:
                break
        else:
            prep = self.preprocessing().fit(train)
            ready = None if val is None else prep.transform_split(val)
            kept = (train, val, prep, prep.transform_split(train), ready)
        self._prepared = [kept, *(k for k in self._prepared if k is not kept)]
        del self._prepared[max(1, len(self.splits().folds)) :]
        return kept[2], kept[3], kept[4]
