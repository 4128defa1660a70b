"""Data sets, train/validation/test splits and the standardiser a saved model carries.

A data set is a builtin name (scikit-learn's bundled sets, nothing downloads) or a ``.csv`` or
``.npz`` file. Each becomes one in-memory :class:`Dataset` of float32 features and encoded targets,
so the training loop never has to know where the data came from.
"""

from __future__ import annotations

import csv
import difflib
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sklearn import datasets as sk_datasets
from sklearn.exceptions import NotFittedError
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

from tunelab.errors import SpecError

__all__ = [
    "BUILTIN_DATASETS",
    "CLASSIFICATION",
    "REGRESSION",
    "TASKS",
    "Dataset",
    "Split",
    "Standardizer",
    "check_task",
    "load_dataset",
    "split_dataset",
]

CLASSIFICATION = "classification"
REGRESSION = "regression"
TASKS = (CLASSIFICATION, REGRESSION)

# Targets with more distinct values than this are taken for a regression when the task is not given.
MAX_INFERRED_CLASSES = 50

_BUILTIN_LOADERS: dict[str, tuple[Callable[..., Any], str]] = {
    "digits": (sk_datasets.load_digits, CLASSIFICATION),
    "breast_cancer": (sk_datasets.load_breast_cancer, CLASSIFICATION),
    "wine": (sk_datasets.load_wine, CLASSIFICATION),
    "iris": (sk_datasets.load_iris, CLASSIFICATION),
    "diabetes": (sk_datasets.load_diabetes, REGRESSION),
}
BUILTIN_DATASETS = tuple(_BUILTIN_LOADERS)


@dataclass(frozen=True, eq=False)
class Dataset:
    """A whole data set in memory, ready to split.

    Attributes:
        X: float32 features, shape (n, d).
        y: int64 class indices (classification) or float32 values (regression), shape (n,).
        task: ``"classification"`` or ``"regression"``.
        classes: the original label of each class index; empty for regression.
        feature_names: one name per column of ``X``.
        name: where the data came from (a builtin name or a file name).

    Example:
        >>> ds = load_dataset("iris")
        >>> ds.X.shape, ds.n_outputs, ds.classes[0]
        ((150, 4), 3, 'setosa')
    """

    X: np.ndarray
    y: np.ndarray
    task: str
    classes: list
    feature_names: list[str]
    name: str

    @property
    def n_outputs(self) -> int:
        """How many outputs a network needs: one logit per class, or one value for regression."""
        return len(self.classes) if self.task == CLASSIFICATION else 1


@dataclass(frozen=True, eq=False)
class Split:
    """One part of a data set (train, validation or test)."""

    X: np.ndarray
    y: np.ndarray


def check_task(task: str) -> str:
    """Return ``task`` if tunelab knows it, else raise a :class:`SpecError` on ``data.task``."""
    if task not in TASKS:
        raise SpecError("data.task", f"expected one of {', '.join(TASKS)}, got {task!r}")
    return task


def load_dataset(
    source: str,
    target: str | None = None,
    base_dir: Path | None = None,
    task: str | None = None,
) -> Dataset:
    """Load a builtin data set or a ``.csv`` / ``.npz`` file.

    Args:
        source: a name from :data:`BUILTIN_DATASETS`, or a path (relative to ``base_dir``).
        target: the target column of a CSV file (required there), or the target array of an NPZ
            file (default ``"y"``). Builtin data sets bring their own target.
        base_dir: the directory relative paths start from (the spec's directory); default cwd.
        task: ``"classification"`` or ``"regression"``; inferred from the target when None.

    Raises:
        SpecError: on ``data.source``, ``data.target`` or ``data.task``, naming what to fix.
    """
    if task is not None:
        check_task(task)
    if source in _BUILTIN_LOADERS:
        return _load_builtin(source, target, task)
    path = Path(source).expanduser()
    if not path.is_absolute():
        path = Path.cwd() / path if base_dir is None else Path(base_dir) / path
    if not path.is_file():
        raise SpecError("data.source", _unknown_source_message(source, path))
    file_loader = _FILE_LOADERS.get(path.suffix.lower())
    if file_loader is None:
        raise SpecError(
            "data.source",
            f"cannot read {path.suffix or 'extensionless'} files ({source!r}); "
            "use a .csv or .npz file",
        )
    X, raw_target, feature_names = file_loader(path, target)
    y, task, classes = _encode_target(raw_target, task)
    return Dataset(X, y, task, classes, feature_names, path.name)


def split_dataset(
    ds: Dataset, test_size: float, holdout: float, seed: int
) -> tuple[Split, Split, Split]:
    """Cut a data set into train, validation and test splits.

    The test split is cut first and never seen during tuning; the validation holdout is then a
    fraction of what remains. Classification splits keep the class proportions when every class is
    large enough to be stratified, and fall back to a plain shuffled split otherwise.

    Returns:
        ``(train, val, test)``, the same for the same ``seed``.
    """
    _check_fraction("data.test_size", test_size)
    _check_fraction("data.holdout", holdout)
    stratify = ds.task == CLASSIFICATION
    everything = np.arange(len(ds.y))
    rest, test = _split_indices("data.test_size", everything, ds.y, test_size, seed, stratify)
    train, val = _split_indices("data.holdout", rest, ds.y, holdout, seed, stratify)
    return _take(ds, train), _take(ds, val), _take(ds, test)


class Standardizer:
    """Centre and scale features with statistics from the training split only.

    A thin wrapper over :class:`sklearn.preprocessing.StandardScaler` that returns float32 and saves
    to plain JSON, so a saved model carries exactly the preprocessing it was trained with.

    Example:
        >>> scaler = Standardizer().fit(np.array([[0.0], [2.0]]))
        >>> scaler.transform(np.array([[4.0]])).tolist()
        [[3.0]]
        >>> Standardizer.from_dict(scaler.to_dict()).transform(np.array([[4.0]])).tolist()
        [[3.0]]
    """

    def fit(self, X: np.ndarray) -> Standardizer:
        """Learn each column's mean and standard deviation (constant columns keep scale 1)."""
        self.scaler_ = StandardScaler().fit(X)
        return self

    def transform(self, X: np.ndarray) -> np.ndarray:
        """Standardise ``X`` with the fitted statistics, as float32."""
        return self._fitted_scaler().transform(X).astype(np.float32)

    def to_dict(self) -> dict[str, list[float]]:
        """The fitted statistics as JSON-safe lists."""
        scaler = self._fitted_scaler()
        return {"mean": scaler.mean_.tolist(), "scale": scaler.scale_.tolist()}

    @classmethod
    def from_dict(cls, state: dict[str, Sequence[float]]) -> Standardizer:
        """Rebuild a fitted standardiser from :meth:`to_dict`'s output."""
        scaler = StandardScaler()
        scaler.mean_ = np.asarray(state["mean"], dtype=np.float64)
        scaler.scale_ = np.asarray(state["scale"], dtype=np.float64)
        scaler.var_ = scaler.scale_**2
        scaler.n_features_in_ = len(scaler.mean_)
        standardizer = cls()
        standardizer.scaler_ = scaler
        return standardizer

    def _fitted_scaler(self) -> StandardScaler:
        if not hasattr(self, "scaler_"):
            raise NotFittedError("this Standardizer is not fitted yet; call fit(X_train) first")
        return self.scaler_


def _load_builtin(name: str, target: str | None, task: str | None) -> Dataset:
    loader, builtin_task = _BUILTIN_LOADERS[name]
    if target is not None:
        raise SpecError(
            "data.target",
            f"the builtin data set {name!r} brings its own target, but got target={target!r}; "
            "remove data.target",
        )
    if task is not None and task != builtin_task:
        raise SpecError(
            "data.task",
            f"{name!r} is a {builtin_task} data set, but got task={task!r}; "
            f"remove data.task or set it to {builtin_task!r}",
        )
    bunch = loader()
    X = np.asarray(bunch.data, dtype=np.float32)
    feature_names = [str(f) for f in bunch.feature_names]
    if builtin_task == REGRESSION:
        return Dataset(X, bunch.target.astype(np.float32), REGRESSION, [], feature_names, name)
    classes = bunch.target_names.tolist()
    return Dataset(X, bunch.target.astype(np.int64), CLASSIFICATION, classes, feature_names, name)


def _unknown_source_message(source: str, path: Path) -> str:
    close = difflib.get_close_matches(source, BUILTIN_DATASETS, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return (
        f"{source!r} is neither a builtin data set nor an existing file (looked for {path}); "
        f"{hint}builtins: {', '.join(BUILTIN_DATASETS)}; or give the path to a .csv or .npz file"
    )


def _read_csv(path: Path, target: str | None) -> tuple[np.ndarray, np.ndarray, list[str]]:
    with path.open(newline="", encoding="utf-8-sig") as handle:
        rows = [row for row in csv.reader(handle) if row]
    if len(rows) < 2:
        raise SpecError("data.source", f"{path.name} needs a header row and at least one data row")
    header = [name.strip() for name in rows[0]]
    if target is None:
        raise SpecError(
            "data.target",
            f"a CSV file needs the name of its target column; set data.target to one of: "
            f"{', '.join(header)}",
        )
    if target not in header:
        raise SpecError(
            "data.target",
            f"column {target!r} is not in {path.name}; available columns: {', '.join(header)}",
        )
    for line, row in enumerate(rows[1:], start=2):
        if len(row) != len(header):
            raise SpecError(
                "data.source",
                f"{path.name} line {line} has {len(row)} fields but the header has {len(header)}",
            )
    columns = dict(zip(header, zip(*rows[1:], strict=True), strict=True))
    raw_target = _target_column(target, columns.pop(target), path)
    feature_names = list(columns)
    if not feature_names:
        raise SpecError("data.source", f"{path.name} has no feature columns besides {target!r}")
    X = np.column_stack([_feature_column(n, v, path) for n, v in columns.items()])
    return X.astype(np.float32), raw_target, feature_names


def _feature_column(name: str, values: Sequence[str], path: Path) -> np.ndarray:
    column = np.array([_to_float(value) for value in values])
    bad = np.flatnonzero(~np.isfinite(column))
    if bad.size:
        raise SpecError(
            "data.source",
            f"column {name!r} in {path.name} must hold finite numbers, but line {bad[0] + 2} has "
            f"{values[bad[0]]!r}; encode the column as numbers, fill the gaps, or drop it",
        )
    return column


def _target_column(name: str, values: Sequence[str], path: Path) -> np.ndarray:
    for line, value in enumerate(values, start=2):
        if not value.strip():
            raise SpecError(
                "data.target",
                f"column {name!r} in {path.name} is empty at line {line}; fill or drop those rows",
            )
    numbers = _as_floats(values)
    return np.array([v.strip() for v in values]) if numbers is None else numbers


def _as_floats(values: Sequence[str]) -> np.ndarray | None:
    try:
        return np.array(values, dtype=np.float64)
    except ValueError:
        return None


def _to_float(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return math.nan


def _read_npz(path: Path, target: str | None) -> tuple[np.ndarray, np.ndarray, list[str]]:
    target = "y" if target is None else target
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files}
    except ValueError as exc:  # object arrays need pickle, which a data file must not run
        raise SpecError("data.source", f"cannot read {path.name}: {exc}") from exc
    available = ", ".join(arrays)
    if "X" not in arrays:
        raise SpecError(
            "data.source",
            f"{path.name} needs the features in an array named 'X'; available arrays: {available}",
        )
    if target not in arrays:
        raise SpecError(
            "data.target",
            f"array {target!r} is not in {path.name}; available arrays: {available}",
        )
    X = arrays["X"].reshape(len(arrays["X"]), -1)
    y = arrays[target].reshape(-1)
    if len(y) != len(X):
        raise SpecError(
            "data.target",
            f"{path.name} has {len(X)} rows in 'X' but {len(y)} values in {target!r}; "
            "they must match",
        )
    if X.dtype.kind not in "biuf" or not np.isfinite(X).all():
        raise SpecError(
            "data.source",
            f"'X' in {path.name} must hold finite numbers, got dtype {X.dtype}; "
            "encode non-numeric features and fill missing values",
        )
    return X.astype(np.float32), y, [f"x{i}" for i in range(X.shape[1])]


_FILE_LOADERS = {".csv": _read_csv, ".npz": _read_npz}


def _encode_target(raw: np.ndarray, task: str | None) -> tuple[np.ndarray, str, list]:
    numeric = raw.dtype.kind in "biuf"
    if numeric and not np.isfinite(raw).all():
        raise SpecError("data.target", "the target has missing or infinite values; drop those rows")
    integer_like = numeric and bool(np.all(raw == np.round(raw)))
    if integer_like:
        raw = raw.astype(np.int64)
    if task is None:
        few_values = len(np.unique(raw)) <= MAX_INFERRED_CLASSES
        task = CLASSIFICATION if not numeric or (integer_like and few_values) else REGRESSION
    if task == REGRESSION:
        if not numeric:
            raise SpecError(
                "data.task",
                "regression needs a numeric target, but the target holds text labels; "
                "set data.task to 'classification' or pick a numeric target",
            )
        return raw.astype(np.float32), REGRESSION, []
    classes, y = np.unique(raw, return_inverse=True)
    if len(classes) < 2:
        raise SpecError(
            "data.target",
            f"classification needs at least 2 classes, but the target has only {classes.tolist()}",
        )
    return y.astype(np.int64), CLASSIFICATION, classes.tolist()


def _take(ds: Dataset, indices: np.ndarray) -> Split:
    return Split(ds.X[indices], ds.y[indices])


def _check_fraction(field: str, value: float) -> None:
    if not 0.0 < value < 1.0:
        raise SpecError(field, f"must be a fraction between 0 and 1 (exclusive), got {value!r}")


def _split_indices(
    field: str, indices: np.ndarray, y: np.ndarray, size: float, seed: int, stratify: bool
) -> list[np.ndarray]:
    if stratify:
        try:
            return train_test_split(indices, test_size=size, random_state=seed, stratify=y[indices])
        except ValueError:
            pass  # a class too small to spread over both parts: fall back to a plain shuffle
    try:
        return train_test_split(indices, test_size=size, random_state=seed)
    except ValueError as exc:
        raise SpecError(field, f"cannot split {len(indices)} rows with {size}: {exc}") from exc
