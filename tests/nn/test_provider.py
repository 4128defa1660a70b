"""The data of a run is loaded once, split once by an injectable splitter, and carried to workers."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest

from tunelab.errors import SpecError
from tunelab.experiment import Experiment
from tunelab.nn import DataProvider, Fold, HoldoutSplitter, KFoldSplitter, Split, Splits, provider
from tunelab.nn.data import load_dataset, split_dataset
from tunelab.spec import parse_spec
from tunelab.trial import TrialState


def points_csv(path: Path) -> Path:
    rng = np.random.default_rng(0)
    rows = ["a,b,label"] + [
        f"{x:.3f},{y:.3f},{int(x + y > 0)}" for x, y in rng.normal(size=(80, 2))
    ]
    path.write_text("\n".join(rows))
    return path


def test_the_holdout_splitter_gives_split_datasets_splits_as_one_fold():
    ds = load_dataset("iris")
    splits = HoldoutSplitter(test_size=0.25, holdout=0.3, seed=4).split(ds)
    train, val, test = split_dataset(ds, test_size=0.25, holdout=0.3, seed=4)
    assert isinstance(splits, Splits) and splits.dataset is ds and len(splits.folds) == 1
    (fold,) = splits.folds
    for got, expected in ((fold.train, train), (fold.val, val), (splits.test, test)):
        np.testing.assert_array_equal(got.X, expected.X)
        np.testing.assert_array_equal(got.y, expected.y)


def test_a_folds_combined_rows_are_training_then_validation():
    fold = Fold(
        Split(np.zeros((3, 2)), np.array([0, 1, 0])), Split(np.ones((2, 2)), np.array([1, 1]))
    )
    combined = fold.combined()
    assert combined.X.tolist() == [[0, 0]] * 3 + [[1, 1]] * 2
    assert combined.y.tolist() == [0, 1, 0, 1, 1]


def test_a_provider_loads_on_first_use_and_keeps_the_splits(monkeypatch):
    loads = []
    real = provider.load_dataset
    monkeypatch.setattr(provider, "load_dataset", lambda *a, **k: loads.append(a) or real(*a, **k))
    data = DataProvider({"source": "wine"}, HoldoutSplitter())
    assert loads == []  # the constructor only stores
    assert data.splits() is data.splits() and loads == [("wine",)]


def test_a_pickled_provider_carries_its_data(monkeypatch):
    data = DataProvider({"source": "wine"}, HoldoutSplitter())
    payload = pickle.dumps(data)  # loads first: never used before, it still travels loaded
    monkeypatch.setattr(provider, "load_dataset", None)
    clone = pickle.loads(payload)
    np.testing.assert_array_equal(clone.splits().test.X, data.splits().test.X)


def test_the_preprocessing_follows_the_data_section():
    regression = DataProvider({"source": "diabetes", "scaling": "minmax"}, HoldoutSplitter())
    prep = regression.preprocessing()
    assert (prep.scaling, prep.target_scaling) == ("minmax", "standard")
    classification = DataProvider({"source": "iris", "target_scaling": "minmax"}, HoldoutSplitter())
    with pytest.raises(SpecError, match="scales regression targets") as e:
        classification.preprocessing()
    assert e.value.field == "data.target_scaling"


@pytest.mark.slow
@pytest.mark.parametrize("workers", [1, 2])
def test_a_run_loads_its_data_once_for_the_checks_the_search_and_the_final_fit(
    tmp_path, monkeypatch, workers
):
    source = points_csv(tmp_path / "points.csv")
    loads = []
    real = provider.load_dataset

    def load_then_delete(path, **options):
        loads.append(path)
        dataset = real(path, **options)
        Path(path).unlink()  # a second read anywhere, in this process or a worker, would fail
        return dataset

    monkeypatch.setattr(provider, "load_dataset", load_then_delete)
    spec = parse_spec(
        {
            "name": f"once-{workers}",
            "data": {"source": str(source), "target": "label"},
            "metric": {"name": "val_accuracy", "direction": "maximize"},
            "space": {"lr": {"type": "float", "low": 1e-3, "high": 0.1, "log": True}},
            "fixed": {"epochs": 2, "units": 8},
            "budget": {"trials": 4},
            "workers": workers,
            "storage": f"sqlite:///{tmp_path}/t.db",
            "artifacts": str(tmp_path / "artifacts"),
        }
    )
    experiment = Experiment.from_spec(spec)
    experiment.search()
    trials = experiment.study.trials
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 4, [t.error for t in trials]
    assert experiment.finalize()["test_metrics"]["test_accuracy"] > 0
    assert loads == [str(source)]


def test_prepared_splits_are_fitted_on_the_training_split_once_per_fold_and_stay_home():
    data = DataProvider({"source": "iris"}, HoldoutSplitter(seed=0))
    (fold,) = data.splits().folds
    prep, train, val = data.prepared(fold.train, fold.val)
    assert data.prepared(fold.train, fold.val)[1] is train  # the next trial's, kept
    np.testing.assert_allclose(train.X.mean(axis=0), 0, atol=1e-5)  # the training rows' scale
    np.testing.assert_array_equal(val.X, prep.transform(fold.val.X))
    again = Split(fold.train.X.copy(), fold.train.y.copy())
    assert data.prepared(again, fold.val)[1] is not train  # another split: fitted anew
    assert data.prepared(fold.train, fold.val)[1] is not train  # one fold: only the latest kept
    assert pickle.loads(pickle.dumps(data))._prepared == []  # a worker prepares its own


def test_each_fold_of_a_cross_validation_is_prepared_once():
    """Trials on different folds (fused k-fold, or one trial's folds after another's) share."""
    data = DataProvider({"source": "iris"}, KFoldSplitter(k=3, seed=0))
    folds = data.splits().folds
    first = [data.prepared(fold.train, fold.val)[1] for fold in folds]
    again = [data.prepared(fold.train, fold.val)[1] for fold in reversed(folds)]
    assert all(a is b for a, b in zip(first, reversed(again), strict=True))
