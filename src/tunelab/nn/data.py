"""Data sets, train/validation/test splits, and the preprocessing a saved model carries.

A data set is a builtin name (scikit-learn's bundled sets, or MNIST-1D generated offline) or a
``.csv``, ``.npz`` or ``.parquet`` file. Each becomes one in-memory :class:`Dataset` of float32
feature rows and encoded targets, plus the shape one row has as a network input (``(64,)`` for a
table, ``(1, 8, 8)`` for a one-channel image), so the training loop never has to know where the
data came from.
"""

from __future__ import annotations

import csv
import difflib
import hashlib
import json
import math
import os
import random
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
from sklearn import datasets as sk_datasets
from sklearn.exceptions import NotFittedError
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import MinMaxScaler, StandardScaler

from tunelab.errors import SpecError

__all__ = [
    "BUILTIN_DATASETS",
    "CLASSIFICATION",
    "REGRESSION",
    "SCALINGS",
    "TASKS",
    "Dataset",
    "Preprocessing",
    "Scaler",
    "Split",
    "cache_dir",
    "check_task",
    "load_dataset",
    "split_dataset",
]

CLASSIFICATION = "classification"
REGRESSION = "regression"
TASKS = (CLASSIFICATION, REGRESSION)

#: Feature (and regression target) scalings; each is fitted on the training split only.
SCALINGS = ("standard", "minmax", "none")

#: Each of the training, validation and test splits needs at least this many rows: a score from
#: fewer (a 3-row CSV once reported a test accuracy of 1.0 from one row) means nothing.
MIN_SPLIT_ROWS = 10

# Targets with more distinct values than this are taken for a regression when the task is not given.
MAX_INFERRED_CLASSES = 50

#: Where generated data sets (MNIST-1D) are cached; overrides ``$XDG_CACHE_HOME/tunelab``.
CACHE_ENV = "TUNELAB_CACHE_DIR"


@dataclass(frozen=True, eq=False)
class Dataset:
    """A whole data set in memory, ready to split.

    Attributes:
        X: float32 features, one flat row per sample, shape (n, d).
        y: int64 class indices (classification) or float32 values (regression), shape (n,).
        task: ``"classification"`` or ``"regression"``.
        classes: the original label of each class index; empty for regression.
        feature_names: one name per column of ``X``.
        name: where the data came from (a builtin name or a file name).
        shape: the shape of one sample as a network sees it; its product is ``d``. ``(d,)`` for
            tables; an NPZ file's own sample shape; whatever ``data.shape`` says.
        groups: each row's group (a file's ``group`` column), or None; cross-validation keeps
            a group's rows in one fold, so a model is never scored on a group it trained on.

    Example:
        >>> ds = load_dataset("iris")
        >>> ds.X.shape, ds.n_outputs, ds.classes[0], ds.shape
        ((150, 4), 3, 'setosa', (4,))
    """

    X: np.ndarray
    y: np.ndarray
    task: str
    classes: list
    feature_names: list[str]
    name: str
    shape: tuple[int, ...] = ()
    groups: np.ndarray | None = None

    def __post_init__(self) -> None:
        if not self.shape:
            object.__setattr__(self, "shape", (self.X.shape[1],))

    @property
    def n_outputs(self) -> int:
        """How many outputs a network needs: one logit per class, or one value for regression."""
        return len(self.classes) if self.task == CLASSIFICATION else 1


@dataclass(frozen=True, eq=False)
class Split:
    """One part of a data set (train, validation or test).

    ``X`` holds flat rows straight from the :class:`Dataset`, or network inputs of shape
    ``(n, *shape)`` once :meth:`Preprocessing.transform_split` has run.
    """

    X: np.ndarray
    y: np.ndarray


def check_task(task: str) -> str:
    """Return ``task`` if tunelab knows it, else raise a :class:`SpecError` on ``data.task``."""
    if task not in TASKS:
        raise SpecError("data.task", f"expected one of {', '.join(TASKS)}, got {task!r}")
    return task


def cache_dir() -> Path:
    """The folder generated data sets are cached in: ``$TUNELAB_CACHE_DIR``, else
    ``$XDG_CACHE_HOME/tunelab``, else ``~/.cache/tunelab``."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "tunelab"


def load_dataset(
    source: str,
    target: str | None = None,
    base_dir: Path | None = None,
    task: str | None = None,
    shape: Sequence[int] | None = None,
    group: str | None = None,
) -> Dataset:
    """Load a builtin data set or a ``.csv`` / ``.npz`` / ``.parquet`` file.

    Args:
        source: a name from :data:`BUILTIN_DATASETS`, or a path (relative to ``base_dir``).
        target: the target column of a CSV or Parquet file (required there), or the target array
            of an NPZ file (default ``"y"``). Builtin data sets bring their own target.
        base_dir: the directory relative paths start from (the spec's directory); default cwd.
        task: ``"classification"`` or ``"regression"``; inferred from the target when None.
        shape: the shape of one sample as a network input, e.g. ``[1, 8, 8]`` to see digits' 64
            columns as a one-channel 8x8 image; its product must be the number of features.
        group: the column (an array of an NPZ file) naming each row's group; it is not a
            feature. Builtin data sets have none.

    Raises:
        SpecError: on ``data.source``, ``data.target``, ``data.task``, ``data.shape`` or
            ``data.validation.group``, naming what to fix.
    """
    if task is not None:
        check_task(task)
    if source in _BUILTIN_LOADERS:
        if group is not None:
            raise SpecError(
                "data.validation.group",
                f"the builtin data set {source!r} has no group column; remove group, or use a "
                "file with one",
            )
        ds = _load_builtin(source, target, task)
    else:
        ds = _load_file(source, target, base_dir, task, group)
    return ds if shape is None else _reshaped(ds, shape)


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
    for name, rows in (("training", train), ("validation", val), ("test", test)):
        if len(rows) < MIN_SPLIT_ROWS:
            raise SpecError(
                "data",
                f"the {name} split would hold {len(rows)} rows ({len(everything)} in all, "
                f"test_size {test_size}, holdout {holdout}); a score from fewer than "
                f"{MIN_SPLIT_ROWS} rows means nothing: use more data, or larger fractions",
            )
    return _take(ds, train), _take(ds, val), _take(ds, test)


class Scaler:
    """Scale columns with statistics from the training split only; save them to plain JSON.

    ``kind`` is ``"standard"`` (zero mean, unit variance: scikit-learn's ``StandardScaler``),
    ``"minmax"`` (each column to [0, 1] on the training range: ``MinMaxScaler``) or ``"none"``.
    Constant columns are left unscaled instead of divided by zero. A saved model carries its
    scalers, so it always sees data prepared exactly as in training.

    Example:
        >>> scaler = Scaler("standard").fit(np.array([[0.0], [2.0]]))
        >>> scaler.transform(np.array([[4.0]])).tolist()
        [[3.0]]
        >>> Scaler.from_dict(scaler.to_dict()).inverse_transform(np.array([[3.0]])).tolist()
        [[4.0]]
    """

    def __init__(self, kind: str = "standard") -> None:
        self.kind = kind

    def fit(self, X: np.ndarray) -> Scaler:
        """Learn each column's statistics from ``X`` (the training rows)."""
        self.scaler_ = _new_sklearn_scaler(self.kind)
        if self.scaler_ is not None:
            self.scaler_.fit(X)
        return self

    def transform(self, X: np.ndarray) -> np.ndarray:
        """Scale ``X`` with the fitted statistics, as float32."""
        scaler = self._fitted()
        return np.asarray(X if scaler is None else scaler.transform(X), dtype=np.float32)

    def inverse_transform(self, X: np.ndarray) -> np.ndarray:
        """Undo :meth:`transform` (regression predictions back to the target's units)."""
        scaler = self._fitted()
        return np.asarray(X if scaler is None else scaler.inverse_transform(X), dtype=np.float32)

    def to_dict(self) -> dict[str, Any]:
        """The fitted statistics as JSON-safe lists."""
        scaler = self._fitted()
        if scaler is None:
            return {"kind": self.kind}
        offset = scaler.mean_ if self.kind == "standard" else scaler.min_
        return {"kind": self.kind, "offset": offset.tolist(), "scale": scaler.scale_.tolist()}

    @classmethod
    def from_dict(cls, state: Mapping[str, Any]) -> Scaler:
        """Rebuild a fitted scaler from :meth:`to_dict`'s output."""
        scaler = cls(state["kind"])
        scaler.scaler_ = _new_sklearn_scaler(scaler.kind)
        if scaler.scaler_ is not None:
            offset = np.asarray(state["offset"], dtype=np.float64)
            scale = np.asarray(state["scale"], dtype=np.float64)
            if scaler.kind == "standard":
                scaler.scaler_.mean_, scaler.scaler_.var_ = offset, scale**2
            else:
                scaler.scaler_.min_ = offset
            scaler.scaler_.scale_ = scale
            scaler.scaler_.n_features_in_ = len(scale)
        return scaler

    def _fitted(self) -> StandardScaler | MinMaxScaler | None:
        if not hasattr(self, "scaler_"):
            raise NotFittedError("this Scaler is not fitted yet; call fit(X_train) first")
        return self.scaler_


class Preprocessing:
    """Everything between raw rows and a network: feature scaling, the input shape, and (for a
    regression) the target scaling, all fitted on the training rows only.

    Regression targets are standardised by default because a loss in the target's own units
    (diabetes: MSE in the thousands) makes learning rates hard to tune and SGD diverge. The
    network learns the scaled target (``target_``, handed to :func:`~tunelab.nn.fit`); metrics
    and :meth:`inverse_transform_target` give values back in the target's own units.

    Args:
        scaling: how to scale features: ``"standard"``, ``"minmax"`` or ``"none"``.
        shape: the shape one sample takes as a network input; None keeps rows flat.
        target_scaling: ``"standard"``, ``"minmax"`` or ``"none"`` for regression targets.

    Example:
        >>> train = Split(np.arange(8, dtype=np.float32).reshape(2, 4), np.array([0, 1]))
        >>> prep = Preprocessing("minmax", shape=(1, 2, 2)).fit(train)
        >>> prep.transform(train.X).shape, float(prep.transform(train.X).max())
        ((2, 1, 2, 2), 1.0)
    """

    def __init__(
        self,
        scaling: str = "standard",
        shape: Sequence[int] | None = None,
        target_scaling: str = "none",
    ) -> None:
        self.scaling = scaling
        self.shape = shape
        self.target_scaling = target_scaling

    def fit(self, train: Split) -> Preprocessing:
        """Learn the feature (and target) statistics from the training split."""
        _check_scaling("data.scaling", self.scaling)
        _check_scaling("data.target_scaling", self.target_scaling)
        self.features_ = Scaler(self.scaling).fit(train.X)
        self.target_ = Scaler(self.target_scaling).fit(np.reshape(train.y, (-1, 1)))
        return self

    def transform(self, X: np.ndarray) -> np.ndarray:
        """Scaled features of flat rows ``X``, reshaped to ``(n, *shape)``."""
        scaled = self._features().transform(X)
        return scaled if self.shape is None else scaled.reshape(len(scaled), *self.shape)

    def transform_split(self, split: Split) -> Split:
        """A split ready for a network: scaled, shaped features; the targets stay as they are
        (:func:`~tunelab.nn.fit` scales regression targets itself with :attr:`target_`)."""
        return Split(self.transform(split.X), split.y)

    def inverse_transform_target(self, values: np.ndarray) -> np.ndarray:
        """Network outputs (scaled targets) back in the target's own units, shape (n,)."""
        return self._target().inverse_transform(np.reshape(values, (-1, 1))).reshape(-1)

    def to_dict(self) -> dict[str, Any]:
        """Everything a saved model needs to prepare raw rows, as JSON-safe values."""
        return {
            "features": self._features().to_dict(),
            "shape": None if self.shape is None else list(self.shape),
            "target": self._target().to_dict(),
        }

    @classmethod
    def from_dict(cls, state: Mapping[str, Any]) -> Preprocessing:
        """Rebuild a fitted preprocessing from :meth:`to_dict`'s output."""
        features, target = state["features"], state["target"]
        prep = cls(features["kind"], state["shape"], target["kind"])
        prep.features_ = Scaler.from_dict(features)
        prep.target_ = Scaler.from_dict(target)
        return prep

    def _features(self) -> Scaler:
        if not hasattr(self, "features_"):
            raise NotFittedError("this Preprocessing is not fitted yet; call fit(train) first")
        return self.features_

    def _target(self) -> Scaler:
        self._features()
        return self.target_


# --- builtins ---------------------------------------------------------------------------------


def _load_sklearn(loader: Callable[..., Any]) -> Callable[[], tuple[Any, ...]]:
    def load() -> tuple[np.ndarray, np.ndarray, list, list[str]]:
        bunch = loader()
        classes = bunch.target_names.tolist() if hasattr(bunch, "target_names") else []
        return bunch.data, bunch.target, classes, [str(f) for f in bunch.feature_names]

    return load


def _load_mnist1d() -> tuple[np.ndarray, np.ndarray, list, list[str]]:
    """MNIST-1D (Greydanus, 2020): 5000 one-dimensional digits of length 40, generated offline.

    The package's own generator with its default arguments (seed 42) makes the same data on
    every machine; the arrays are cached in :func:`cache_dir` so only the first load pays the
    few seconds it takes. Its fixed 4000/1000 train/test split is not kept: the rows are pooled
    and split like any other data set (``data.test_size``), stratified by class.
    """
    try:
        from mnist1d.data import get_dataset_args, make_dataset
    except ImportError as exc:
        raise SpecError(
            "data.source",
            "the mnist1d data set needs the mnist1d package; install it with: pip install mnist1d",
        ) from exc
    args = get_dataset_args(as_dict=True)
    args.pop("url", None)  # where the package would download from; never used here
    key = json.dumps({"args": args, "version": metadata.version("mnist1d")}, sort_keys=True)
    path = cache_dir() / f"mnist1d-{hashlib.sha256(key.encode()).hexdigest()[:16]}.npz"
    if not path.is_file():
        python_state, numpy_state = random.getstate(), np.random.get_state()
        try:  # the generator reseeds the global generators; give them back as they were
            data = make_dataset(get_dataset_args())
        finally:
            random.setstate(python_state)
            np.random.set_state(numpy_state)
        X = np.concatenate([data["x"], data["x_test"]]).astype(np.float32)
        y = np.concatenate([data["y"], data["y_test"]]).astype(np.int64)
        _save_npz_atomically(path, X=X, y=y)
    with np.load(path, allow_pickle=False) as archive:
        X, y = archive["X"], archive["y"]
    return X, y, list(range(10)), [f"t{i}" for i in range(X.shape[1])]


def _save_npz_atomically(path: Path, **arrays: np.ndarray) -> None:
    """Write then rename, so parallel workers generating at once never read a torn file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(dir=path.parent, suffix=".npz.tmp")
    try:
        with os.fdopen(handle, "wb") as out:
            np.savez(out, **arrays)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


_BUILTIN_LOADERS: dict[str, tuple[Callable[[], tuple[Any, ...]], str]] = {
    "digits": (_load_sklearn(sk_datasets.load_digits), CLASSIFICATION),
    "breast_cancer": (_load_sklearn(sk_datasets.load_breast_cancer), CLASSIFICATION),
    "wine": (_load_sklearn(sk_datasets.load_wine), CLASSIFICATION),
    "iris": (_load_sklearn(sk_datasets.load_iris), CLASSIFICATION),
    "diabetes": (_load_sklearn(sk_datasets.load_diabetes), REGRESSION),
    "mnist1d": (_load_mnist1d, CLASSIFICATION),
}
BUILTIN_DATASETS = tuple(_BUILTIN_LOADERS)


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
    X, y, classes, feature_names = loader()
    X = np.asarray(X, dtype=np.float32)
    if builtin_task == REGRESSION:
        return Dataset(X, y.astype(np.float32), REGRESSION, [], feature_names, name)
    return Dataset(X, y.astype(np.int64), CLASSIFICATION, classes, feature_names, name)


def _reshaped(ds: Dataset, shape: Sequence[int]) -> Dataset:
    shape = tuple(int(size) for size in shape)
    if not shape or min(shape) < 1:
        raise SpecError("data.shape", f"needs positive sizes such as [1, 8, 8], got {list(shape)}")
    if math.prod(shape) != ds.X.shape[1]:
        raise SpecError(
            "data.shape",
            f"{list(shape)} holds {math.prod(shape)} values, but each row of {ds.name} has "
            f"{ds.X.shape[1]} features; give sizes whose product is {ds.X.shape[1]}",
        )
    return Dataset(ds.X, ds.y, ds.task, ds.classes, ds.feature_names, ds.name, shape, ds.groups)


# --- files ------------------------------------------------------------------------------------


def _load_file(
    source: str, target: str | None, base_dir: Path | None, task: str | None, group: str | None
) -> Dataset:
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
            "use a .csv, .npz or .parquet file",
        )
    if group is not None and group == target:
        raise SpecError("data.validation.group", f"{group!r} is the target; name another column")
    X, raw_target, feature_names, shape, groups = file_loader(path, target, group)
    y, task, classes = _encode_target(raw_target, task)
    return Dataset(X, y, task, classes, feature_names, path.name, shape, groups)


def _unknown_source_message(source: str, path: Path) -> str:
    close = difflib.get_close_matches(source, BUILTIN_DATASETS, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return (
        f"{source!r} is neither a builtin data set nor an existing file (looked for {path}); "
        f"{hint}builtins: {', '.join(BUILTIN_DATASETS)}; or give the path to a .csv, .npz or "
        ".parquet file"
    )


#: features, raw target, feature names, sample shape, groups (None without a group column)
_FileContents = tuple[np.ndarray, np.ndarray, list[str], tuple[int, ...], np.ndarray | None]


def _group_column(path: Path, group: str | None, columns: dict[str, Any]) -> np.ndarray | None:
    """The group column taken out of ``columns`` (so it is no feature), as text labels."""
    if group is None:
        return None
    if group not in columns:
        raise SpecError(
            "data.validation.group",
            f"column {group!r} is not in {path.name}; available columns: {', '.join(columns)}",
        )
    return np.array([str(value).strip() for value in columns.pop(group)])


def _read_csv(path: Path, target: str | None, group: str | None = None) -> _FileContents:
    with path.open(newline="", encoding="utf-8-sig") as handle:
        rows = [row for row in csv.reader(handle) if row]
    if len(rows) < 2:
        raise SpecError("data.source", f"{path.name} needs a header row and at least one data row")
    header = [name.strip() for name in rows[0]]
    _check_target_column(path, target, header)
    for line, row in enumerate(rows[1:], start=2):
        if len(row) != len(header):
            raise SpecError(
                "data.source",
                f"{path.name} line {line} has {len(row)} fields but the header has {len(header)}",
            )
    columns = dict(zip(header, zip(*rows[1:], strict=True), strict=True))
    raw_target = _text_target(target, columns.pop(target), path)
    groups = _group_column(path, group, columns)
    features = {name: np.array([_to_float(v) for v in values]) for name, values in columns.items()}
    X, names = _table(path, target, features, columns)
    return X, raw_target, names, (X.shape[1],), groups


def _read_parquet(path: Path, target: str | None, group: str | None = None) -> _FileContents:
    try:
        import pyarrow.parquet as pq
    except ImportError as exc:
        raise SpecError(
            "data.source",
            f"reading {path.name} needs pyarrow; install it with: pip install 'tunelab[parquet]'",
        ) from exc
    try:
        table = pq.read_table(path)
    except Exception as exc:  # noqa: BLE001 - pyarrow raises several types for a bad file
        raise SpecError("data.source", f"cannot read {path.name}: {exc}") from exc
    header = table.column_names
    _check_target_column(path, target, header)
    columns = {name: table.column(name).to_pylist() for name in header}
    raw = columns.pop(target)
    if any(value is None for value in raw):
        line = raw.index(None)
        raise SpecError(
            "data.target",
            f"column {target!r} in {path.name} is empty at row {line}; fill or drop those rows",
        )
    raw_target = _as_floats(raw)
    raw_target = np.array([str(v) for v in raw]) if raw_target is None else raw_target
    groups = _group_column(path, group, columns)
    features = {name: _numbers_or_nan(values) for name, values in columns.items()}
    X, names = _table(path, target, features, columns, first_line=0, unit="row")
    return X, raw_target, names, (X.shape[1],), groups


def _check_target_column(path: Path, target: str | None, header: Sequence[str]) -> None:
    if target is None:
        raise SpecError(
            "data.target",
            f"{path.name} needs the name of its target column; set data.target to one of: "
            f"{', '.join(header)}",
        )
    if target not in header:
        raise SpecError(
            "data.target",
            f"column {target!r} is not in {path.name}; available columns: {', '.join(header)}",
        )


def _table(
    path: Path,
    target: str,
    features: Mapping[str, np.ndarray],
    raw: Mapping[str, Sequence[Any]],
    first_line: int = 2,
    unit: str = "line",
) -> tuple[np.ndarray, list[str]]:
    """Feature columns as one float32 matrix; a column that is not all finite numbers is named."""
    if not features:
        raise SpecError("data.source", f"{path.name} has no feature columns besides {target!r}")
    for name, column in features.items():
        bad = np.flatnonzero(~np.isfinite(column))
        if bad.size:
            raise SpecError(
                "data.source",
                f"column {name!r} in {path.name} must hold finite numbers, but {unit} "
                f"{bad[0] + first_line} has {raw[name][bad[0]]!r}; encode the column as numbers, "
                "fill the gaps, or drop it",
            )
    return np.column_stack(list(features.values())).astype(np.float32), list(features)


def _text_target(name: str, values: Sequence[str], path: Path) -> np.ndarray:
    for line, value in enumerate(values, start=2):
        if not value.strip():
            raise SpecError(
                "data.target",
                f"column {name!r} in {path.name} is empty at line {line}; fill or drop those rows",
            )
    numbers = _as_floats(values)
    return np.array([v.strip() for v in values]) if numbers is None else numbers


def _as_floats(values: Sequence[Any]) -> np.ndarray | None:
    if any(isinstance(value, bool) for value in values):
        return None
    try:
        return np.array(values, dtype=np.float64)
    except (TypeError, ValueError):
        return None


def _numbers_or_nan(values: Sequence[Any]) -> np.ndarray:
    numbers = (
        v if isinstance(v, int | float) and not isinstance(v, bool) else math.nan for v in values
    )
    return np.array(list(numbers), dtype=np.float64)


def _to_float(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return math.nan


def _read_npz(path: Path, target: str | None, group: str | None = None) -> _FileContents:
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
    images = arrays["X"]
    X = images.reshape(len(images), -1)
    y = _decode_one_hot(arrays[target])
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
    shape = tuple(int(size) for size in images.shape[1:]) or (1,)
    groups = None
    if group is not None:
        if group not in arrays or len(arrays[group]) != len(X):
            raise SpecError(
                "data.validation.group",
                f"{path.name} needs an array {group!r} with one group per row of 'X'; "
                f"available arrays: {available}",
            )
        groups = np.array([str(value) for value in arrays[group].reshape(-1)])
    return X.astype(np.float32), y, [f"x{i}" for i in range(X.shape[1])], shape, groups


def _decode_one_hot(y: np.ndarray) -> np.ndarray:
    """One-hot rows (n, k) become class indices (Keras-style targets); anything else is flattened."""
    one_hot = (
        y.ndim == 2
        and y.shape[1] > 1
        and y.dtype.kind in "biuf"
        and bool(np.isin(y, (0, 1)).all())
        and bool((y.sum(axis=1) == 1).all())
    )
    return y.argmax(axis=1) if one_hot else y.reshape(-1)


_FILE_LOADERS = {".csv": _read_csv, ".npz": _read_npz, ".parquet": _read_parquet}


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


# --- splits and scalers -----------------------------------------------------------------------


def _take(ds: Dataset, indices: np.ndarray) -> Split:
    return Split(ds.X[indices], ds.y[indices])


def _check_fraction(field: str, value: float) -> None:
    if not 0.0 < value < 1.0:
        raise SpecError(field, f"must be a fraction between 0 and 1 (exclusive), got {value!r}")


def _check_scaling(field: str, kind: str) -> None:
    if kind not in SCALINGS:
        raise SpecError(field, f"expected one of {', '.join(SCALINGS)}, got {kind!r}")


def _new_sklearn_scaler(kind: str) -> StandardScaler | MinMaxScaler | None:
    _check_scaling("data.scaling", kind)
    return {"standard": StandardScaler, "minmax": MinMaxScaler}.get(kind, lambda: None)()


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
