"""After the search: re-run a stored trial to see that it reproduces, export a model into a folder
of its own, and predict with an exported model.

A study's database says what was trained (the spec, each trial's config and seed), so a trial can
be trained again and its numbers compared with the stored ones: :func:`reproduce` does that in
this process and writes nothing to the study. :func:`export` writes the weights, architecture and
preprocessing of a trial's model retrained on train+validation (or copies the study's own final
model) into a folder that needs neither the database nor pickle; :func:`predict` loads such a
folder and predicts for new rows.

Code is imported only from what you name yourself (README, "Security"): a study that trains your
own model is rebuilt from the spec file you pass (``spec=``), never from the spec the database
holds, and an exported folder's builder is imported only with ``trust_code=True``.

Example:
    >>> check = reproduce("digits-mlp", 3)  # doctest: +SKIP
    >>> check.verdict()  # doctest: +SKIP
    'identical: the re-run of trial 3 gave the same 64 numbers (8 steps and the final metrics)'
    >>> export("digits-mlp", "digits-model")  # doctest: +SKIP
    >>> predict("digits-model", "new_rows.csv")["prediction"][:3]  # doctest: +SKIP
    array([3, 0, 7])
"""

from __future__ import annotations

import csv
import json
import math
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from tunelab.errors import SpecError, StorageError, TrialDiverged, TunelabError
from tunelab.nn import load_model, torch_threads
from tunelab.nn import predict as network_outputs
from tunelab.nn.data import CLASSIFICATION
from tunelab.nn.objective import ARCHITECTURE_FILE, PREPROCESSING_FILE, WEIGHTS_FILE
from tunelab.readers import best_summary, best_trial
from tunelab.spec import ExperimentSpec, load_spec
from tunelab.storage import DEFAULT_STORAGE, Storage, StudyRecord, get_storage
from tunelab.trial import Decision, FrozenTrial, Trial, TrialState

if TYPE_CHECKING:
    from tunelab.nn import Callback, NetworkObjective

__all__ = ["Reproduction", "Row", "export", "predict", "reproduce"]

#: Trials that can be re-run or exported: their config and seed are final. A paused trial is
#: re-run up to its pause.
_REUSABLE = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.PAUSED)

#: How a re-run ends at the step where the stored trial's reports ended.
_LAST_DECISION = {TrialState.PRUNED: Decision.STOP, TrialState.PAUSED: Decision.PAUSE}

#: The files of a saved model (:func:`tunelab.nn.load_model` reads them).
_MODEL_FILES = (WEIGHTS_FILE, ARCHITECTURE_FILE, PREPROCESSING_FILE)

#: The spec fields that decide what a trial trains; a ``--spec`` must agree with the study's.
_TRAINING_FIELDS = ("data", "model", "metric", "space", "fixed", "seed")


class Row(NamedTuple):
    """One number of a trial as stored and as re-run (None where that side did not report it).
    ``step`` is None for a final metric (what the objective returned)."""

    step: int | None
    metric: str
    stored: float | None
    rerun: float | None

    @property
    def where(self) -> str:
        """``val_loss at step 3``, or ``final val_loss``."""
        return f"final {self.metric}" if self.step is None else f"{self.metric} at step {self.step}"

    @property
    def gap(self) -> float:
        """The absolute difference: 0.0 for the same number (two NaNs are the same diverged
        value), infinite when one side lacks the number or only one side is NaN."""
        if self.stored is None or self.rerun is None:
            return 0.0 if self.stored is self.rerun else math.inf
        if math.isnan(self.stored) or math.isnan(self.rerun):
            return 0.0 if math.isnan(self.stored) and math.isnan(self.rerun) else math.inf
        return 0.0 if self.stored == self.rerun else abs(self.stored - self.rerun)


@dataclass(frozen=True)
class Reproduction:
    """A stored trial beside its re-run: every metric at every step, and the final metrics.

    Attributes:
        study: the study's name.
        number: the trial's number.
        metric: the study's metric (the one the table shows per step).
        stored: the stored trial's final metrics; empty for a paused trial, which has none.
        rerun: the re-run's final metrics (empty when the trial was paused, or the re-run failed).
        stored_steps: the stored reports, step -> metrics.
        rerun_steps: the re-run's reports, step -> metrics.
        error: why the re-run failed (it diverged), or None.
    """

    study: str
    number: int
    metric: str
    stored: dict[str, float]
    rerun: dict[str, float]
    stored_steps: dict[int, dict[str, float]]
    rerun_steps: dict[int, dict[str, float]]
    error: str | None = None

    def rows(self) -> list[Row]:
        """What the table shows: the study metric at each step, then each final metric."""
        steps = sorted({*self.stored_steps, *self.rerun_steps})
        per_step = [self._step_row(step, self.metric) for step in steps]
        return per_step + self._final_rows()

    def differences(self) -> list[Row]:
        """Every number that differs, every metric at every step included, largest gap first."""
        return sorted((row for row in self._every_row() if row.gap), key=lambda row: -row.gap)

    @property
    def identical(self) -> bool:
        """Whether every number of the re-run matches the stored one exactly."""
        return self.error is None and not self.differences()

    def verdict(self) -> str:
        """One line: ``identical: ...``, or ``differs: ...`` with the largest difference and
        where it is."""
        steps, count = len(self.stored_steps), len(self._every_row())
        if self.identical:
            return (
                f"identical: the re-run of trial {self.number} gave the same {count} numbers "
                f"({steps} step{'s' * (steps != 1)}{' and the final metrics' * bool(self.stored)})"
            )
        if self.error is not None:
            return f"differs: the re-run of trial {self.number} failed: {self.error}"
        differences = self.differences()
        top, share = differences[0], f"{len(differences)} of {count} numbers differ"
        if top.stored is None or top.rerun is None:
            side = "stored trial" if top.rerun is None else "re-run"
            return f"differs: {top.where} was reported by the {side} only ({share})"
        if math.isinf(top.gap):
            return f"differs: {top.where} is {top.stored} stored, {top.rerun} re-run ({share})"
        return f"differs: largest absolute difference {top.gap:.3g}, {top.where} ({share})"

    def _every_row(self) -> list[Row]:
        steps = sorted({*self.stored_steps, *self.rerun_steps})
        per_step = [
            self._step_row(step, name)
            for step in steps
            for name in sorted({*self.stored_steps.get(step, {}), *self.rerun_steps.get(step, {})})
        ]
        return per_step + self._final_rows()

    def _step_row(self, step: int, name: str) -> Row:
        stored, rerun = self.stored_steps.get(step, {}), self.rerun_steps.get(step, {})
        return Row(step, name, stored.get(name), rerun.get(name))

    def _final_rows(self) -> list[Row]:
        names = sorted({*self.stored, *self.rerun})
        return [Row(None, name, self.stored.get(name), self.rerun.get(name)) for name in names]


def reproduce(
    name: str, number: int, storage: str | Storage | None = None, spec: str | Path | None = None
) -> Reproduction:
    """Train a stored trial again, from its config and seed, and compare it with the record.

    The trial runs in this process with the study's objective (its spec; an ``auto`` learning
    rate from the stored range tests, never a new test) and the torch thread count it trained
    with (a worker of a study with 2 workers on 2 cores had 1). Its reports stay in memory: the
    study is not written to. Where the stored trial's reports ended, the re-run gets the decision the
    stored trial got: STOP for a pruned trial, PAUSE for a paused one (it ends there), so a trial
    its scheduler stopped is replayed to the same step.

    Args:
        name: the study.
        number: the trial's number.
        storage: the database URL (default: the spec's, else ``sqlite:///tunelab.db``).
        spec: the spec file the study was run with; needed for a study that trains your own
            model code, which tunelab never imports on a database's word.

    Returns:
        The stored and re-run numbers side by side; see :meth:`Reproduction.verdict`.

    Raises:
        TunelabError: for a trial that failed, or is queued or running (nothing final to
            compare); SpecError on ``--spec`` or ``model`` (see ``spec``).
    """
    record, trials, objective = _open(name, storage, spec)
    stored = _trial(record, trials, number)
    last, end = stored.last_step, _LAST_DECISION.get(stored.state, Decision.CONTINUE)
    reports: dict[int, dict[str, float]] = {}

    def replay(_number: int, step: int, metrics: dict[str, float]) -> Decision:
        reports[step] = metrics
        return end if step == last else Decision.CONTINUE

    error, final = None, {}
    with (
        tempfile.TemporaryDirectory(prefix="tunelab-reproduce-") as directory,
        torch_threads(stored.user_attrs.get("torch_threads")),
    ):
        trial = Trial(stored.number, stored.params, stored.seed, Path(directory), replay)
        try:
            final = objective(trial)
        except TrialDiverged as exc:
            error = str(exc)
    if stored.state is TrialState.PAUSED:
        final = {}  # a paused trial has no final metrics to compare with
    return Reproduction(
        name, number, record.metric, stored.metrics, final, stored.intermediate, reports, error
    )


def export(
    name: str,
    out_dir: str | Path,
    number: int | None = None,
    storage: str | Storage | None = None,
    spec: str | Path | None = None,
    callbacks: Sequence[Callback] = (),
) -> dict[str, Any]:
    """Write a trial's model, retrained on train+validation, into a folder of its own.

    The folder holds ``model.pt`` (weights, loaded with ``weights_only=True``), ``model.json``
    (architecture, config, params, task, classes, feature names) and ``preprocessing.json``;
    for your own model, the builder's file is copied beside them and named relative to the
    folder (``models.py:build_model``), so the folder can move. A builder imported as a module
    (``pkg.mod:build_model``) stays named as it is. :func:`predict` and
    :func:`tunelab.nn.load_model` read the folder without the study.

    When the study's final model (``tunelab run``'s retrain) is of this trial, its files are
    copied; else the trial's config is retrained with its seed, as ``tunelab run`` does.

    Args:
        name: the study.
        out_dir: a new or empty folder.
        number: the trial; default the best one.
        storage: the database URL (default: the spec's, else ``sqlite:///tunelab.db``).
        spec: the spec file the study was run with; needed for a study that trains your code.
        callbacks: more training callbacks for a retrain (a progress bar).

    Returns:
        What ``tunelab best --json`` shows, for this trial: ``study``, ``trial``, ``params``,
        ``value``, ``test_metrics`` ..., with ``artifacts`` (file name -> path in ``out_dir``)
        and ``reused`` (True when the study's final model was copied).

    Raises:
        SpecError: on ``out_dir`` when the folder has files; on ``--spec`` or ``model``.
        TunelabError: no trial completed, or trial ``number`` failed or has not run.
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise SpecError("--output", f"{out_dir} is not an empty folder; give a new folder")
    record, trials, objective = _open(name, storage, spec)
    if number is None:
        trial = best_trial(trials, record.direction)
        if trial is None:
            raise TunelabError(
                f"no trial of {name!r} completed, so there is no best model; see why with: "
                f"tunelab trials {name}, or export one with --trial N"
            )
    else:
        trial = _trial(record, trials, number)
    summary = best_summary(name, record.metric, trial)
    result = record.attrs.get("result") or {}
    saved = result.get("artifacts") or {}
    reused = result.get("trial") == trial.number and all(
        Path(saved.get(file, "")).is_file() for file in _MODEL_FILES
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    if reused:
        for file in _MODEL_FILES:
            shutil.copyfile(saved[file], out_dir / file)
        test_metrics = result["test_metrics"]
    else:
        final = objective.final_fit(
            trial.params, seed=trial.seed, out_dir=out_dir, callbacks=callbacks
        )
        test_metrics = final["test_metrics"]
    files = [*_MODEL_FILES, *_bundle_builder(out_dir, objective.model)]
    artifacts = {file: str(out_dir / file) for file in files}
    return {
        **summary,
        "test_metrics": test_metrics,
        "retrained_on": "train+validation",
        "artifacts": artifacts,
        "reused": reused,
    }


def predict(
    model_dir: str | Path,
    data: str | Path | np.ndarray,
    proba: bool = False,
    trust_code: bool = False,
) -> dict[str, np.ndarray]:
    """Predict with a model :func:`export` (or ``tunelab run``) saved, on the CPU.

    Args:
        model_dir: the model's folder.
        data: feature rows: an array (rows of the model's features, flat or shaped), a ``.csv``
            file whose columns are taken by the feature names the model was trained with (other
            columns, the target say, are ignored), or a ``.npz`` file with the rows in ``X``.
        proba: for a classifier, add each class's probability.
        trust_code: import the model builder the folder names (a model of your own); importing
            it runs that code, so only for a folder you trust.

    Returns:
        The output table's columns: ``prediction`` (class labels as the training data had
        them, or values in the target's units) and, with ``proba``, ``proba_<label>`` per class.

    Raises:
        SpecError: on ``data`` for a missing column, a value that is not a number, or rows of
            another width; on ``--proba`` for a regression.
        TunelabError: a model of your own without ``trust_code``.
    """
    if not (Path(model_dir) / ARCHITECTURE_FILE).is_file():
        raise SpecError(
            "model_dir",
            f"{model_dir} holds no {ARCHITECTURE_FILE}; give a folder tunelab export wrote",
        )
    model, prep, meta = load_model(model_dir, trust_code=trust_code)
    rows = _rows(data, meta["feature_names"])
    if meta["task"] != CLASSIFICATION:
        if proba:
            raise SpecError("--proba", "the model is a regression, with no classes; drop --proba")
        values = network_outputs(model, prep.transform(rows), "cpu", prep.target_)
        return {"prediction": values.reshape(-1)}
    logits = network_outputs(model, prep.transform(rows), "cpu").astype(np.float64)
    classes = np.asarray(meta["classes"])
    columns = {"prediction": classes[logits.argmax(axis=1)]}
    if proba:
        shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
        probabilities = shifted / shifted.sum(axis=1, keepdims=True)
        for index, label in enumerate(meta["classes"]):
            columns[f"proba_{label}"] = probabilities[:, index]
    return columns


# Helpers -----------------------------------------------------------------------------------------
def _open(
    name: str, storage: str | Storage | None, spec_file: str | Path | None
) -> tuple[StudyRecord, list[FrozenTrial], NetworkObjective]:
    """The stored study, its trials, and its objective as its trials trained with."""
    from tunelab.experiment import _objective, stored_spec
    from tunelab.lr_range import ATTR, apply_auto, uses_auto
    from tunelab.nn.config import is_builtin

    given = None if spec_file is None else load_spec(spec_file)
    default = DEFAULT_STORAGE if given is None else given.storage
    store = get_storage(storage or default, create=False)
    record = store.get_study(name)
    spec = stored_spec(record)
    if given is not None:
        _check_same_training(given, spec, spec_file)
        spec = given
    elif not is_builtin(spec.model):
        raise SpecError(
            "model",
            f"study {name!r} trains your code ({spec.model}); tunelab never imports code a "
            "database names, so give the spec file you trust: --spec SPEC",
        )
    objective = _objective(spec)
    if uses_auto(spec):
        lr_range = record.attrs.get(ATTR)
        if lr_range is None:
            raise StorageError(
                f"study {name!r} has an auto learning rate but no stored range test "
                f"({ATTR!r}), so its trials' rate is unknown; run it once with: tunelab run SPEC"
            )
        _, objective.fixed, _ = apply_auto(spec, lr_range)
    return record, store.get_trials(record.id), objective


def _check_same_training(given: ExperimentSpec, stored: ExperimentSpec, path: Any) -> None:
    if given.name != stored.name:
        raise SpecError(
            "--spec", f"{path} is the spec of study {given.name!r}, not of {stored.name!r}"
        )
    ours, theirs = (s.model_dump(mode="json", exclude_defaults=True) for s in (given, stored))
    changed = [key for key in _TRAINING_FIELDS if ours.get(key) != theirs.get(key)]
    if changed:
        raise SpecError(
            "--spec",
            f"{path} differs from the stored study {stored.name!r} in {', '.join(changed)}; "
            "give the spec file the study was run with",
        )


def _trial(record: StudyRecord, trials: list[FrozenTrial], number: int) -> FrozenTrial:
    """Trial ``number``, refused in one line unless its config and seed are final."""
    found = next((t for t in trials if t.number == number), None)
    if found is None:
        raise TunelabError(
            f"study {record.name!r} has no trial {number} (it has {len(trials)} trials, "
            f"numbered from 0); see them with: tunelab trials {record.name}"
        )
    if found.state not in _REUSABLE:
        why = "failed" if found.state is TrialState.FAILED else f"is {found.state.value.lower()}"
        raise TunelabError(
            f"trial {number} of {record.name!r} {why}, so it has no final result to reuse; "
            f"pick a completed, pruned or paused one (tunelab trials {record.name})"
        )
    return found


def _bundle_builder(out_dir: Path, model: str) -> tuple[str, ...]:
    """Copy the file of a builder named ``path/to/file.py:function`` into ``out_dir`` and name
    it relative to the folder in ``model.json``, so the folder carries its code and can move.
    Returns the copied file's name; nothing for a builtin model or a module's builder (the
    module stays where it is installed)."""
    path, sep, function = model.rpartition(":")
    if not (sep and path.endswith(".py")):
        return ()
    source = Path(path)
    shutil.copyfile(source, out_dir / source.name)
    architecture = out_dir / ARCHITECTURE_FILE
    meta = json.loads(architecture.read_text())
    meta["model"] = f"{source.name}:{function}"
    architecture.write_text(json.dumps(meta, indent=2))
    return (source.name,)


def _rows(data: str | Path | np.ndarray, feature_names: list[str]) -> np.ndarray:
    """Feature rows as float32, ``(n, features)``, in the order the model was trained with."""
    if isinstance(data, str | Path):
        path = Path(data)
        if not path.is_file():
            raise SpecError("data", f"file {str(path)!r} not found")
        if path.suffix.lower() == ".csv":
            data = _csv_rows(path, feature_names)
        elif path.suffix.lower() == ".npz":
            data = _npz_rows(path)
        else:
            raise SpecError("data", f"cannot read {path.name}; give a .csv or .npz file")
    rows = np.asarray(data, dtype=np.float32)
    if not len(rows):
        raise SpecError("data", "holds no rows to predict; give at least one")
    rows = rows.reshape(len(rows), -1)
    if rows.shape[1] != len(feature_names):
        raise SpecError(
            "data",
            f"rows of {rows.shape[1]} values, but the model takes {len(feature_names)} features; "
            "give rows of the data the model was trained on",
        )
    bad = np.argwhere(~np.isfinite(rows))
    if bad.size:
        row, column = bad[0]
        raise SpecError(
            "data",
            f"row {row} (counting from 0) holds {rows[row, column]} in feature {feature_names[column]!r}; "
            "predictions need finite numbers: fill or drop that row",
        )
    return rows


def _npz_rows(path: Path) -> np.ndarray:
    """The rows in array ``X`` of an NPZ file (read without pickle, as training data is)."""
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files}
    except ValueError as exc:  # object arrays need pickle, which a data file must not run
        raise SpecError("data", f"cannot read {path.name}: {exc}") from exc
    if "X" not in arrays:
        raise SpecError(
            "data",
            f"{path.name} needs the rows in an array named 'X'; it has "
            f"{', '.join(arrays) or 'none'}",
        )
    return arrays["X"]


def _csv_rows(path: Path, feature_names: list[str]) -> np.ndarray:
    """The columns named ``feature_names`` of a CSV file; any other column is ignored."""
    with path.open(newline="", encoding="utf-8-sig") as handle:
        table = [row for row in csv.reader(handle) if row]
    header = [name.strip() for name in table[0]] if table else []
    missing = [name for name in feature_names if name not in header]
    if missing:
        more = f" (and {len(missing) - 1} more of the model's features)" if len(missing) > 1 else ""
        raise SpecError(
            "data",
            f"{path.name} has no column {missing[0]!r}{more}; the model takes the columns "
            f"{', '.join(map(repr, feature_names))}, named as in the data it was trained on",
        )
    where = [header.index(name) for name in feature_names]
    rows = np.empty((len(table) - 1, len(where)), dtype=np.float32)
    for line, row in enumerate(table[1:], start=2):
        for column, index in enumerate(where):
            text = row[index] if index < len(row) else ""
            try:
                value = float(text)
            except ValueError:
                value = math.nan
            if not math.isfinite(value):
                raise SpecError(
                    "data",
                    f"column {feature_names[column]!r} in {path.name} must hold finite numbers, "
                    f"but line {line} has {text!r}; fill or drop that row",
                )
            rows[line - 2, column] = value
    return rows
