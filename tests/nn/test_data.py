from __future__ import annotations

import json
import random
import sys
import time

import numpy as np
import pytest
from sklearn.exceptions import NotFittedError

from tunelab.errors import SpecError
from tunelab.nn.data import (
    BUILTIN_DATASETS,
    CACHE_ENV,
    Dataset,
    Preprocessing,
    Scaler,
    Split,
    cache_dir,
    load_dataset,
    split_dataset,
)


def write_csv(path, text):
    path.write_text(text.strip() + "\n")
    return path


def labelled_dataset(counts: dict[int, int]) -> Dataset:
    """Rows whose only feature is their own index, so splits can be checked for overlap."""
    y = np.concatenate([np.full(n, label) for label, n in counts.items()]).astype(np.int64)
    X = np.arange(len(y), dtype=np.float32).reshape(-1, 1)
    return Dataset(X, y, "classification", list(counts), ["row"], "synthetic")


# --- builtins ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", BUILTIN_DATASETS)
def test_builtin_datasets_have_the_documented_types(name, mnist1d_cache):
    ds = load_dataset(name)
    assert ds.name == name
    assert ds.X.dtype == np.float32 and ds.X.ndim == 2
    assert len(ds.y) == len(ds.X) and len(ds.feature_names) == ds.X.shape[1]
    if name == "diabetes":
        assert ds.task == "regression" and ds.y.dtype == np.float32
        assert ds.classes == [] and ds.n_outputs == 1
    else:
        assert ds.task == "classification" and ds.y.dtype == np.int64
        assert ds.n_outputs == len(ds.classes) == len(np.unique(ds.y))
    assert ds.shape == (ds.X.shape[1],)  # builtins are rows of features; data.shape reshapes


def test_builtin_classes_are_the_original_labels():
    assert load_dataset("iris").classes == ["setosa", "versicolor", "virginica"]


def test_unknown_builtin_suggests_the_close_name_and_lists_all():
    expected = "did you mean 'digits'.*builtins: digits, breast_cancer"
    with pytest.raises(SpecError, match=expected) as e:
        load_dataset("digit")
    assert e.value.field == "data.source"


def test_builtin_rejects_a_target_and_a_conflicting_task():
    with pytest.raises(SpecError, match="brings its own target") as e:
        load_dataset("iris", target="species")
    assert e.value.field == "data.target"
    with pytest.raises(SpecError, match="'diabetes' is a regression data set") as e:
        load_dataset("diabetes", task="classification")
    assert e.value.field == "data.task"


def test_unknown_task_is_rejected():
    with pytest.raises(SpecError, match="expected one of classification, regression, got 'clf'"):
        load_dataset("iris", task="clf")


# --- files ------------------------------------------------------------------------------------


def test_missing_file_names_the_path_and_the_builtins(tmp_path):
    with pytest.raises(SpecError, match=r"nope\.csv.*builtins: digits") as e:
        load_dataset("nope.csv", target="y", base_dir=tmp_path)
    assert e.value.field == "data.source"


def test_unsupported_file_type_is_rejected(tmp_path):
    (tmp_path / "data.xlsx").write_bytes(b"PK")
    with pytest.raises(
        SpecError, match=r"cannot read \.xlsx files.*use a \.csv, \.npz or \.parquet"
    ):
        load_dataset("data.xlsx", base_dir=tmp_path)


def test_csv_with_string_labels_is_label_encoded(tmp_path):
    write_csv(tmp_path / "pets.csv", "a,b,label\n1,2.5,dog\n3,4,cat\n5,6,dog\n7,8,bird")
    ds = load_dataset("pets.csv", target="label", base_dir=tmp_path)
    assert ds.task == "classification" and ds.name == "pets.csv"
    assert ds.classes == ["bird", "cat", "dog"]
    assert ds.y.tolist() == [2, 1, 2, 0] and ds.y.dtype == np.int64
    assert ds.feature_names == ["a", "b"]
    np.testing.assert_array_equal(ds.X, np.array([[1, 2.5], [3, 4], [5, 6], [7, 8]], np.float32))
    assert ds.X.dtype == np.float32


def test_csv_target_column_may_sit_anywhere(tmp_path):
    path = write_csv(tmp_path / "d.csv", "label,a\n0,1\n1,2\n0,3")
    ds = load_dataset(str(path), target="label")  # absolute path, no base_dir needed
    assert ds.feature_names == ["a"] and ds.X[:, 0].tolist() == [1, 2, 3]
    assert ds.classes == [0, 1] and ds.y.tolist() == [0, 1, 0]


def test_csv_relative_path_resolves_against_cwd_by_default(tmp_path, monkeypatch):
    write_csv(tmp_path / "d.csv", "a,label\n1,x\n2,y")
    monkeypatch.chdir(tmp_path)
    assert load_dataset("d.csv", target="label").classes == ["x", "y"]


def test_csv_float_target_is_inferred_as_regression(tmp_path):
    write_csv(tmp_path / "d.csv", "a,price\n1,1.5\n2,2.25\n3,0.5")
    ds = load_dataset("d.csv", target="price", base_dir=tmp_path)
    assert ds.task == "regression" and ds.y.dtype == np.float32 and ds.n_outputs == 1
    assert ds.y.tolist() == [1.5, 2.25, 0.5]


def test_explicit_task_overrides_inference(tmp_path):
    write_csv(tmp_path / "d.csv", "a,count\n1,1\n2,2\n3,3")
    assert load_dataset("d.csv", target="count", base_dir=tmp_path).task == "classification"
    ds = load_dataset("d.csv", target="count", base_dir=tmp_path, task="regression")
    assert ds.task == "regression" and ds.y.tolist() == [1.0, 2.0, 3.0]


def test_csv_unknown_target_lists_the_columns(tmp_path):
    write_csv(tmp_path / "data.csv", "a,b,label\n1,2,x")
    with pytest.raises(
        SpecError, match="column 'price' is not in data.csv; available columns: a, b, label"
    ) as e:
        load_dataset("data.csv", target="price", base_dir=tmp_path)
    assert e.value.field == "data.target"


def test_csv_needs_a_target(tmp_path):
    write_csv(tmp_path / "data.csv", "a,label\n1,x")
    with pytest.raises(SpecError, match="set data.target to one of: a, label") as e:
        load_dataset("data.csv", base_dir=tmp_path)
    assert e.value.field == "data.target"


def test_csv_non_numeric_feature_names_the_column_and_line(tmp_path):
    write_csv(tmp_path / "d.csv", "a,color,label\n1,2,x\n2,red,y")
    with pytest.raises(SpecError, match="column 'color' in d.csv .* line 3 has 'red'") as e:
        load_dataset("d.csv", target="label", base_dir=tmp_path)
    assert e.value.field == "data.source"


def test_csv_missing_feature_value_is_reported(tmp_path):
    write_csv(tmp_path / "d.csv", "a,label\n1,x\n,y")
    with pytest.raises(SpecError, match="column 'a' in d.csv .* line 3 has ''"):
        load_dataset("d.csv", target="label", base_dir=tmp_path)


def test_csv_missing_target_value_is_reported(tmp_path):
    write_csv(tmp_path / "d.csv", "a,label\n1,x\n2,\n3,y")
    with pytest.raises(SpecError, match="'label' in d.csv is empty at line 3"):
        load_dataset("d.csv", target="label", base_dir=tmp_path)


def test_csv_ragged_row_is_reported(tmp_path):
    write_csv(tmp_path / "d.csv", "a,b,label\n1,2,x\n1,y")
    with pytest.raises(SpecError, match="line 3 has 2 fields but the header has 3"):
        load_dataset("d.csv", target="label", base_dir=tmp_path)


def test_text_labels_cannot_be_regressed(tmp_path):
    write_csv(tmp_path / "d.csv", "a,label\n1,x\n2,y")
    with pytest.raises(SpecError, match="regression needs a numeric target") as e:
        load_dataset("d.csv", target="label", base_dir=tmp_path, task="regression")
    assert e.value.field == "data.task"


def test_a_single_class_is_rejected(tmp_path):
    write_csv(tmp_path / "d.csv", "a,label\n1,x\n2,x")
    with pytest.raises(SpecError, match="at least 2 classes"):
        load_dataset("d.csv", target="label", base_dir=tmp_path)


def test_npz_reads_X_and_y_by_default(tmp_path):
    X = np.arange(12, dtype=np.float64).reshape(6, 2)
    np.savez(tmp_path / "d.npz", X=X, y=np.array([3, 5, 3, 5, 3, 5]))
    ds = load_dataset("d.npz", base_dir=tmp_path)
    assert ds.task == "classification" and ds.classes == [3, 5] and ds.y.tolist() == [0, 1] * 3
    assert ds.X.dtype == np.float32 and ds.feature_names == ["x0", "x1"]
    np.testing.assert_array_equal(ds.X, X)


def test_npz_target_names_the_array_and_images_keep_their_shape(tmp_path):
    images = np.arange(24).reshape(4, 2, 3)
    np.savez(tmp_path / "d.npz", X=images, label=np.array(["a", "b", "a", "b"]))
    ds = load_dataset("d.npz", target="label", base_dir=tmp_path)
    assert ds.X.shape == (4, 6) and ds.classes == ["a", "b"]
    assert ds.shape == (2, 3)  # rows are stored flat; the shape says how a network sees them
    np.testing.assert_array_equal(ds.X[1].reshape(ds.shape), images[1])


def test_npz_one_hot_targets_are_label_encoded(tmp_path):
    labels = np.array([2, 0, 1, 2, 0])
    np.savez(tmp_path / "d.npz", X=np.zeros((5, 3)), y=np.eye(3)[labels])
    ds = load_dataset("d.npz", base_dir=tmp_path)
    assert ds.task == "classification" and ds.y.tolist() == labels.tolist()
    assert ds.classes == [0, 1, 2]


def test_npz_with_many_distinct_integers_is_a_regression(tmp_path):
    np.savez(tmp_path / "d.npz", X=np.zeros((60, 1)), y=np.arange(60))
    assert load_dataset("d.npz", base_dir=tmp_path).task == "regression"


def test_npz_errors_name_the_available_arrays(tmp_path):
    np.savez(tmp_path / "d.npz", X=np.zeros((2, 1)), y=np.array([0, 1]))
    with pytest.raises(SpecError, match="array 'label' is not in d.npz; available arrays: X, y"):
        load_dataset("d.npz", target="label", base_dir=tmp_path)
    np.savez(tmp_path / "e.npz", features=np.zeros((2, 1)), y=np.array([0, 1]))
    with pytest.raises(SpecError, match="array named 'X'; available arrays: features, y"):
        load_dataset("e.npz", base_dir=tmp_path)
    np.savez(tmp_path / "f.npz", X=np.zeros((3, 1)), y=np.array([0, 1]))
    with pytest.raises(SpecError, match="3 rows in 'X' but 2 values in 'y'"):
        load_dataset("f.npz", base_dir=tmp_path)


# --- splits -----------------------------------------------------------------------------------


def test_splits_are_disjoint_complete_and_sized():
    ds = labelled_dataset({0: 60, 1: 30, 2: 10})
    train, val, test = split_dataset(ds, test_size=0.2, holdout=0.25, seed=0)
    assert (len(train.y), len(val.y), len(test.y)) == (60, 20, 20)
    rows = [set(s.X[:, 0].tolist()) for s in (train, val, test)]
    assert not rows[0] & rows[1] and not rows[0] & rows[2] and not rows[1] & rows[2]
    assert set().union(*rows) == set(range(100))
    for split in (train, val, test):  # labels travel with their rows
        np.testing.assert_array_equal(split.y, ds.y[split.X[:, 0].astype(int)])


def test_splits_are_stratified():
    ds = labelled_dataset({0: 60, 1: 30, 2: 10})
    train, val, test = split_dataset(ds, test_size=0.2, holdout=0.25, seed=3)
    assert np.bincount(test.y).tolist() == [12, 6, 2]
    assert np.bincount(val.y).tolist() == [12, 6, 2]
    assert np.bincount(train.y).tolist() == [36, 18, 6]


def test_splits_are_deterministic_given_the_seed():
    ds = load_dataset("wine")
    first = split_dataset(ds, 0.2, 0.2, seed=7)
    again = split_dataset(ds, 0.2, 0.2, seed=7)
    other = split_dataset(ds, 0.2, 0.2, seed=8)
    for a, b in zip(first, again, strict=True):
        np.testing.assert_array_equal(a.X, b.X)
        np.testing.assert_array_equal(a.y, b.y)
    assert not np.array_equal(first[2].X, other[2].X)


def test_split_falls_back_when_a_class_is_too_small_to_stratify():
    ds = labelled_dataset({0: 60, 1: 39, 2: 1})
    train, val, test = split_dataset(ds, test_size=0.2, holdout=0.2, seed=0)
    assert (len(train.y), len(val.y), len(test.y)) == (64, 16, 20)


def test_regression_splits_are_not_stratified_but_sized():
    train, val, test = split_dataset(load_dataset("diabetes"), 0.25, 0.5, seed=0)
    assert len(test.y) == 111 and len(val.y) == 166 and len(train.y) == 165


@pytest.mark.parametrize(
    "field, kwargs",
    [
        ("data.test_size", {"test_size": 0.0, "holdout": 0.2}),
        ("data.holdout", {"test_size": 0.2, "holdout": 1.0}),
    ],
)
def test_split_fractions_must_be_between_0_and_1(field, kwargs):
    with pytest.raises(SpecError, match="must be a fraction between 0 and 1") as e:
        split_dataset(load_dataset("iris"), seed=0, **kwargs)
    assert e.value.field == field


# --- shapes ------------------------------------------------------------------------------------


def test_shape_reshapes_rows_into_images():
    ds = load_dataset("digits", shape=[1, 8, 8])
    assert ds.shape == (1, 8, 8) and ds.X.shape == (1797, 64)
    image = load_dataset("digits").X[0].reshape(8, 8)  # scikit-learn's own images, row by row
    np.testing.assert_array_equal(ds.X[0].reshape(ds.shape)[0], image)


@pytest.mark.parametrize("shape", [[1, 8, 9], [0, 64], []])
def test_a_shape_that_does_not_hold_the_row_names_the_field(shape):
    with pytest.raises(SpecError) as e:
        load_dataset("digits", shape=shape)
    assert e.value.field == "data.shape"
    if shape == [1, 8, 9]:
        assert "holds 72 values, but each row of digits has 64 features" in str(e.value)


# --- MNIST-1D ---------------------------------------------------------------------------------

# The generator is deterministic (seed 42): these pin its output, so a cache or a new package
# version that changed the data would fail the test below.
MNIST1D_FIRST_LABELS = [2, 6, 4, 5, 6, 6, 6, 0, 3, 1]
MNIST1D_ABS_SUM = 148316.1726513179


def test_mnist1d_is_generated_once_then_read_from_the_cache(tmp_path, monkeypatch):
    import mnist1d.data

    monkeypatch.setenv(CACHE_ENV, str(tmp_path))
    assert cache_dir() == tmp_path
    calls = []
    generate = mnist1d.data.make_dataset
    monkeypatch.setattr(mnist1d.data, "make_dataset", lambda *a: calls.append(a) or generate(*a))
    python_state, numpy_state = random.getstate(), np.random.get_state()[1].copy()
    first = load_dataset("mnist1d")
    assert len(calls) == 1 and len(list(tmp_path.glob("mnist1d-*.npz"))) == 1
    # the package reseeds the global generators; tunelab hands them back untouched
    assert random.getstate() == python_state
    np.testing.assert_array_equal(np.random.get_state()[1], numpy_state)
    started = time.perf_counter()
    again = load_dataset("mnist1d")
    assert time.perf_counter() - started < 0.5
    assert len(calls) == 1, "the second load must come from the cache"
    np.testing.assert_array_equal(first.X, again.X)
    np.testing.assert_array_equal(first.y, again.y)


def test_mnist1d_is_the_packages_default_data_set(mnist1d_cache):
    ds = load_dataset("mnist1d")
    assert ds.X.shape == (5000, 40) and ds.X.dtype == np.float32 and ds.shape == (40,)
    assert ds.classes == list(range(10)) and ds.task == "classification"
    assert np.bincount(ds.y).min() > 380  # the generator's 500 per class, shuffled
    assert ds.y[:10].tolist() == MNIST1D_FIRST_LABELS
    assert float(np.abs(ds.X.astype(np.float64)).sum()) == pytest.approx(MNIST1D_ABS_SUM, rel=1e-9)


def test_cache_dir_defaults_to_the_user_cache(monkeypatch, tmp_path):
    monkeypatch.delenv(CACHE_ENV, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert cache_dir() == tmp_path / "tunelab"


# --- Parquet ----------------------------------------------------------------------------------


def test_parquet_file_reads_like_a_csv(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    table = pa.table({"a": [1.0, 2.5, 3.0], "b": [4, 5, 6], "label": ["x", "y", "x"]})
    pq.write_table(table, tmp_path / "d.parquet")
    ds = load_dataset("d.parquet", target="label", base_dir=tmp_path)
    assert ds.classes == ["x", "y"] and ds.y.tolist() == [0, 1, 0]
    assert ds.feature_names == ["a", "b"] and ds.name == "d.parquet"
    np.testing.assert_array_equal(ds.X, np.array([[1, 4], [2.5, 5], [3, 6]], np.float32))


def test_parquet_errors_name_the_column(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"a": [1.0, None], "y": [0.5, 1.5]}), tmp_path / "d.parquet")
    with pytest.raises(SpecError, match="column 'a' in d.parquet must hold finite numbers"):
        load_dataset("d.parquet", target="y", base_dir=tmp_path)
    with pytest.raises(SpecError, match="available columns: a, y") as e:
        load_dataset("d.parquet", target="price", base_dir=tmp_path)
    assert e.value.field == "data.target"


def test_parquet_without_pyarrow_names_the_extra(tmp_path, monkeypatch):
    (tmp_path / "d.parquet").write_bytes(b"PAR1")
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # makes `import pyarrow` fail
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    with pytest.raises(SpecError, match=r"needs pyarrow; .*pip install 'tunelab\[parquet\]'"):
        load_dataset("d.parquet", target="y", base_dir=tmp_path)


# --- scalers and preprocessing ----------------------------------------------------------------


def test_standard_scaling_uses_training_statistics_only():
    train, val, test = split_dataset(load_dataset("wine"), 0.2, 0.2, seed=0)
    scaler = Scaler("standard").fit(train.X)
    scaled_train = scaler.transform(train.X)
    assert scaled_train.dtype == np.float32
    np.testing.assert_allclose(scaled_train.mean(axis=0), 0, atol=1e-5)
    np.testing.assert_allclose(scaled_train.std(axis=0), 1, atol=1e-4)
    np.testing.assert_allclose(scaler.to_dict()["offset"], train.X.mean(axis=0), rtol=1e-5)
    for held_out in (val, test):  # centred with someone else's mean: close to 0, never exactly
        means = np.abs(scaler.transform(held_out.X).mean(axis=0))
        assert means.max() > 1e-3


def test_minmax_scaling_maps_the_training_range_to_0_1():
    train, val, _ = split_dataset(load_dataset("wine"), 0.2, 0.2, seed=0)
    scaler = Scaler("minmax").fit(train.X)
    scaled = scaler.transform(train.X)
    np.testing.assert_allclose(scaled.min(axis=0), 0, atol=1e-6)
    np.testing.assert_allclose(scaled.max(axis=0), 1, atol=1e-6)
    held_out = scaler.transform(val.X)  # other rows may fall outside [0, 1]: not refitted
    expected = (val.X - train.X.min(axis=0)) / (train.X.max(axis=0) - train.X.min(axis=0))
    np.testing.assert_allclose(held_out, expected, rtol=1e-4, atol=1e-5)


def test_no_scaling_passes_values_through():
    X = np.array([[1.5, -3.0]], dtype=np.float64)
    scaler = Scaler("none").fit(X)
    assert scaler.transform(X).tolist() == [[1.5, -3.0]] and scaler.to_dict() == {"kind": "none"}


@pytest.mark.parametrize("kind", ["standard", "minmax", "none"])
def test_scalers_round_trip_through_json_and_invert(kind):
    X = np.random.default_rng(0).normal(5, 3, size=(50, 4))
    X[:, 2] = 1.0  # a constant column keeps scale 1 instead of dividing by zero
    scaler = Scaler(kind).fit(X)
    restored = Scaler.from_dict(json.loads(json.dumps(scaler.to_dict())))
    np.testing.assert_array_equal(restored.transform(X), scaler.transform(X))
    assert np.all(np.isfinite(restored.transform(X)))
    np.testing.assert_allclose(restored.inverse_transform(scaler.transform(X)), X, rtol=1e-5)


def test_unknown_scaling_names_the_field():
    with pytest.raises(SpecError, match="expected one of standard, minmax, none, got 'robust'"):
        Preprocessing("robust").fit(Split(np.zeros((2, 1)), np.zeros(2)))


def test_unfitted_scalers_say_to_fit_first():
    with pytest.raises(NotFittedError, match="call fit"):
        Scaler().transform(np.zeros((1, 1)))
    with pytest.raises(NotFittedError, match="call fit"):
        Preprocessing().transform(np.zeros((1, 1)))


def test_preprocessing_scales_shapes_and_round_trips():
    ds = load_dataset("digits", shape=[1, 8, 8])
    train, val, _ = split_dataset(ds, 0.2, 0.2, seed=0)
    prep = Preprocessing("minmax", ds.shape).fit(train)
    ready = prep.transform_split(val)
    assert ready.X.shape == (len(val.y), 1, 8, 8) and ready.X.dtype == np.float32
    assert ready.y is val.y  # targets are the trainer's business (fit scales regression ones)
    restored = Preprocessing.from_dict(json.loads(json.dumps(prep.to_dict())))
    np.testing.assert_array_equal(restored.transform(val.X), ready.X)


def test_regression_target_scaling_is_fitted_on_training_targets():
    train, _, _ = split_dataset(load_dataset("diabetes"), 0.2, 0.2, seed=0)
    prep = Preprocessing(target_scaling="standard").fit(train)
    state = prep.to_dict()["target"]
    assert state["offset"] == pytest.approx([float(train.y.mean())], rel=1e-5)
    assert state["scale"] == pytest.approx([float(train.y.std())], rel=1e-5)
    scaled = prep.target_.transform(train.y.reshape(-1, 1))
    np.testing.assert_allclose(prep.inverse_transform_target(scaled), train.y, rtol=1e-5)
