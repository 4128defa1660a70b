"""Fuzzing the spec: any mutation of a valid spec either runs, or fails with exactly one line and
exit 2 before anything is stored. Never a traceback.

The suite runs a few dozen cases; run more by hand with, e.g.,
``TUNELAB_FUZZ_EXAMPLES=2000 pytest tests/test_spec_fuzz.py --hypothesis-show-statistics``
(the statistics count the cases that ran and, per field, those refused).
"""

from __future__ import annotations

import copy
import os
import sqlite3
import sys
from pathlib import Path

import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from tunelab.cli import main

VALID = {
    "name": "fuzz",
    "data": {"source": "iris", "test_size": 0.2, "validation": {"holdout": 0.25}},
    "model": "mlp",
    "metric": {"name": "val_accuracy", "direction": "maximize"},
    "space": {
        "lr": {"type": "float", "low": 0.001, "high": 0.1, "log": True},
        "units": {"type": "categorical", "choices": [8, 16]},
        "optimizer": {"type": "categorical", "choices": ["sgd", "adam"]},
        "momentum": {"type": "float", "low": 0.0, "high": 0.9, "when": {"optimizer": "sgd"}},
        "n_layers": {"type": "int", "low": 1, "high": 2},
    },
    "fixed": {"epochs": 2, "batch_size": 32},
    "strategy": "random",
    "scheduler": "median",
    "budget": {"trials": 2},
    "workers": 1,
    "seed": 0,
}

# values a careless edit puts in a spec: wrong types, out-of-range numbers, near-miss names
WORDS = ["", "x", "iris", "wine", "mlp", "cnn1d", "sgd", "adam", "random", "grid", "bayes",
         "median", "none", "float", "int", "categorical", "maximize", "minimize", "val_loss",
         "1e-3", "../x", "auto", "cpu", "processes", "inline", "asha"]  # fmt: skip
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 3),
    st.floats(-2.0, 2.0),
    st.sampled_from([float("nan"), float("inf"), 1e300]),
    st.sampled_from(WORDS),
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.sampled_from(WORDS), inner, max_size=3)
    ),
    max_leaves=6,
)


def paths(node, prefix=()):
    """Every key path in a nested spec."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield (*prefix, key)
            yield from paths(value, (*prefix, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield (*prefix, i)
            yield from paths(value, (*prefix, i))


ALL_PATHS = list(paths(VALID))
MUTATION = st.tuples(
    st.sampled_from(["replace", "delete", "add", "rename"]),
    st.sampled_from(ALL_PATHS),
    VALUES,
    st.sampled_from(WORDS + ["budgett", "sources", "lr_", "epoch", "when"]),
)


def mutate(spec, mutation):
    kind, path, value, word = mutation
    parent = spec
    for key in path[:-1]:
        parent = parent[key]
    last = path[-1]
    if kind == "replace":
        parent[last] = value
    elif kind == "delete":
        del parent[last]
    elif kind == "add" and isinstance(parent, dict):
        parent[word] = value
    elif kind == "rename" and isinstance(parent, dict):
        parent[word] = parent.pop(last)
    return spec


def run_cli(args, capsys):
    argv = sys.argv
    sys.argv = ["tunelab", *args]
    try:
        main()
        code = 0
    except SystemExit as exc:
        code = exc.code or 0
    finally:
        sys.argv = argv
    return code, capsys.readouterr().err


@settings(
    max_examples=int(os.environ.get("TUNELAB_FUZZ_EXAMPLES", "25")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    derandomize=not os.environ.get("TUNELAB_FUZZ_EXAMPLES"),
)
@given(mutations=st.lists(MUTATION, min_size=1, max_size=3))
def test_a_mutated_spec_runs_or_fails_in_one_line_before_storage(
    tmp_path_factory, capsys, mutations
):
    folder = tmp_path_factory.mktemp("fuzz")
    spec = copy.deepcopy(VALID)
    for mutation in mutations:
        try:
            spec = mutate(spec, mutation)
        except (KeyError, IndexError, TypeError):
            pass  # the path no longer exists after an earlier mutation
    if isinstance(spec, dict):
        spec["storage"] = f"sqlite:///{folder}/tunelab.db"
        if isinstance(spec.get("budget"), dict) and isinstance(spec["budget"].get("trials"), int):
            spec["budget"]["trials"] = min(spec["budget"]["trials"], 3)  # keep runs short
    (folder / "spec.yaml").write_text(yaml.safe_dump(spec))
    code, stderr = run_cli(["run", str(folder / "spec.yaml")], capsys)
    db = Path(folder / "tunelab.db")
    if code == 0:
        event("ran")
        return
    assert code == 2, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    event("refused: " + lines[0].removeprefix("error: ").split(":")[0])
    if db.exists():  # only a run that started may fail after storage opened (no trial completed)
        with sqlite3.connect(db) as conn:
            assert conn.execute("SELECT COUNT(*) FROM tunelab_trials").fetchone()[0] > 0, lines[0]
