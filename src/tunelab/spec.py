"""The experiment spec: one YAML file (or dict) that says what to tune, on what, with which budget.

Validated with pydantic; every problem becomes a :class:`~tunelab.errors.SpecError` whose message
names the field path and the fix, e.g. ``space.lr.low: must be > 0 when log is true, but got 0.0``.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from tunelab._names import check_study_name
from tunelab.errors import SpecError
from tunelab.space import Categorical, Float, Int, Param, Space

__all__ = ["ExperimentSpec", "load_spec", "parse_spec"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


#: The range ``auto: true`` stands for until the LR range test has run (the test's own ramp).
AUTO_PLACEHOLDER = (1e-7, 10.0)


class FloatParam(_Strict):
    type: Literal["float"]
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    grid: list[float] | None = None
    when: dict[str, Any] | None = None
    auto: bool | str = False  # the learning rate's range from the LR range test

    @model_validator(mode="after")
    def _bounds(self) -> FloatParam:
        if isinstance(self.auto, str) and self.auto != "narrow":
            raise _FieldError(
                "auto",
                f"must be true, false or narrow, got {self.auto!r}; true sets the range from "
                "the LR range test, narrow meets it with low and high",
            )
        if self.auto is True:
            given = [b for b in ("low", "high") if getattr(self, b) is not None]
            if given:
                raise _FieldError(
                    given[0],
                    "is set by the range test under auto: true; drop low and high, or keep "
                    "them with auto: narrow to search where they and the test's range meet",
                )
        else:
            missing = [b for b in ("low", "high") if getattr(self, b) is None]
            if missing:
                raise _FieldError(
                    missing[0],
                    "is required" + (" with auto: narrow (or use auto: true)" if self.auto else ""),
                )
        if self.auto and (self.step is not None or self.grid is not None):
            raise _FieldError(
                "auto",
                "sets a continuous range, so it takes no step or grid; drop them, or "
                "drop auto to list grid values",
            )
        return self


class IntParam(_Strict):
    type: Literal["int"]
    low: int
    high: int
    log: bool = False
    step: int | None = None
    grid: list[int] | None = None
    when: dict[str, Any] | None = None


class CategoricalParam(_Strict):
    type: Literal["categorical"]
    choices: list[Any]
    when: dict[str, Any] | None = None


ParamSpec = Annotated[FloatParam | IntParam | CategoricalParam, Field(discriminator="type")]


class ValidationSpec(_Strict):
    """``{holdout: 0.2}`` (the default) or ``{kfold: 5, repeats: 1, group: column}``."""

    holdout: float = Field(0.2, gt=0, lt=1)
    kfold: int | None = Field(None, ge=2)
    repeats: int = Field(1, ge=1)
    group: str | None = None

    @model_validator(mode="after")
    def _one_way(self) -> ValidationSpec:
        if self.kfold is None:
            for name in ("repeats", "group"):
                if name in self.model_fields_set:
                    raise _FieldError(name, f"belongs to k-fold; add kfold: 5 (say) or drop {name}")
        elif "holdout" in self.model_fields_set:
            raise _FieldError("holdout", "and kfold are two ways to validate; keep one of them")
        return self


class DataSpec(_Strict):
    source: str
    target: str | None = None
    task: Literal["classification", "regression"] | None = None
    test_size: float = Field(0.2, gt=0, lt=1)
    validation: ValidationSpec = ValidationSpec()
    scaling: Literal["standard", "minmax", "none"] = "standard"
    target_scaling: Literal["standard", "minmax", "none"] | None = None  # regression: standard
    shape: list[Annotated[int, Field(ge=1)]] | None = Field(None, min_length=1)


class MetricSpec(_Strict):
    name: str
    direction: Literal["maximize", "minimize"]


class NamedOptions(_Strict):
    """``strategy: random`` or ``strategy: {name: random, ...options}``."""

    model_config = ConfigDict(extra="allow", frozen=True)
    name: str

    @property
    def options(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class BudgetSpec(_Strict):
    trials: int | None = Field(None, gt=0)
    minutes: float | None = Field(None, gt=0)
    trial_minutes: float | None = Field(None, gt=0)


class ExperimentSpec(_Strict):
    """The whole experiment. See examples/digits.yaml and the README's spec section."""

    name: str = Field(min_length=1)
    data: DataSpec
    model: str = "mlp"
    metric: MetricSpec
    space: dict[str, ParamSpec]
    fixed: dict[str, Any] = {}
    strategy: NamedOptions = NamedOptions(name="random")
    scheduler: NamedOptions = NamedOptions(name="none")
    budget: BudgetSpec
    configs: list[dict[str, Any]] = []
    workers: int = Field(1, ge=1)
    executor: NamedOptions | None = None  # default: in-process for 1 worker, else processes
    fuse: bool = False  # train same-shaped networks as fused groups, in-process or per worker
    seed: int = 0
    reproducible: bool = False  # the outcome depends on the seed alone, not on timing
    device: str = "auto"
    storage: str = "sqlite:///tunelab.db"
    artifacts: str | None = None

    @field_validator("strategy", "scheduler", "executor", mode="before")
    @classmethod
    def _named(cls, value: Any) -> Any:
        return {"name": value} if isinstance(value, str) else value

    def build_space(self) -> Space:
        """The typed search space; bad bounds and conditions raise SpaceError naming the field."""
        return Space({name: _param(name, p) for name, p in self.space.items()})


def _param(name: str, spec: FloatParam | IntParam | CategoricalParam) -> Param:
    when = spec.when or ()  # Space parses the mapping into conditions
    if isinstance(spec, CategoricalParam):
        return Categorical(tuple(spec.choices), when=when, name=name)
    if isinstance(spec, FloatParam) and spec.auto is True:  # until the range test has run
        return Float(*AUTO_PLACEHOLDER, log=True, when=when, name=name)
    cls = Float if isinstance(spec, FloatParam) else Int
    values = tuple(spec.grid) if spec.grid is not None else None
    return cls(spec.low, spec.high, spec.log, spec.step, values=values, when=when, name=name)


class _FieldError(ValueError):
    """A problem with one field of a parameter, raised inside pydantic's validation."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def load_spec(path: str | Path) -> ExperimentSpec:
    """Read and validate a YAML spec; relative data and storage paths are taken from its folder."""
    path = Path(path)
    if not path.is_file():
        raise SpecError("", f"spec file {str(path)!r} not found")
    text = path.read_text()
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or "cannot be read"
        raise SpecError("", f"{path} is not valid YAML{where}: {problem}") from None
    if raw is None:
        raise SpecError(
            "",
            f"{path} is empty; a spec needs name, data, metric, space and budget "
            "(see examples/digits.yaml)",
        )
    return parse_spec(raw, base_dir=path.resolve().parent)


def parse_spec(raw: Any, base_dir: str | Path | None = None) -> ExperimentSpec:
    """Validate a spec given as a dict. ``base_dir`` anchors a relative data-file path."""
    if not isinstance(raw, Mapping):
        raise SpecError("", f"a spec must be a mapping of fields, got {type(raw).__name__}")
    try:
        spec = ExperimentSpec.model_validate(raw)
    except ValidationError as exc:
        raise _spec_error(exc) from None
    check_study_name(spec.name)
    _check_auto(spec)
    if base_dir is not None:
        spec = _anchor_paths(spec, Path(base_dir))
    space = spec.build_space()
    if spec.strategy.name == "grid":
        space.grid()  # a continuous range without listed values fails here, naming the parameter
    for i, config in enumerate(spec.configs):
        space.validate(config, field_prefix=f"configs[{i}]")
    if spec.executor is not None:
        from tunelab.executors import make_executor

        make_executor(spec.executor.name, **spec.executor.options)  # names the bad option
    if spec.budget.trials is None and spec.budget.minutes is None:
        from tunelab.strategies import make_strategy

        strategy = make_strategy(spec.strategy.name, **spec.strategy.options)
        if not strategy.is_finite():
            raise SpecError(
                "budget",
                f"give trials and/or minutes, or a {spec.strategy.name} search never ends",
            )
    return spec


def _check_auto(spec: ExperimentSpec) -> None:
    """``auto`` belongs to the learning rate alone: the range test reads nothing else."""
    autos = [f"space.{n}.auto" for n, p in spec.space.items() if getattr(p, "auto", False)]
    autos += [f"fixed.{n}" for n, value in spec.fixed.items() if value == "auto"]
    for field in autos:
        if field.split(".")[1] != "lr":
            raise SpecError(
                field, "only the learning rate (lr) can be auto: the LR range test finds lr alone"
            )
    if spec.strategy.name == "grid" and autos and autos[0].startswith("space."):
        raise SpecError(
            autos[0],
            "a grid search needs listed values, not a range; list lr's grid, fix lr "
            "(fixed: {lr: auto} takes the test's suggestion), or use random or bayes",
        )


def _anchor_paths(spec: ExperimentSpec, base_dir: Path) -> ExperimentSpec:
    """Relative data files and model files (``models.py:build_model``) from the spec's folder."""
    source = spec.data.source
    if Path(source).suffix and not Path(source).is_absolute():
        data = spec.data.model_copy(update={"source": str((base_dir / source).resolve())})
        spec = spec.model_copy(update={"data": data})
    module, sep, function = spec.model.rpartition(":")
    if sep and module.endswith(".py") and not Path(module).is_absolute():
        model = f"{(base_dir / module).resolve()}:{function}"
        spec = spec.model_copy(update={"model": model})
    return spec


def _spec_error(exc: ValidationError) -> SpecError:
    """The first pydantic error as one readable line, with the field path and a fix."""
    # a misspelt field also makes the real one missing: name the misspelling, it has the hint
    error = min(exc.errors(), key=lambda e: e["type"] != "extra_forbidden")
    loc = [str(part) for part in error["loc"] if part not in ("float", "int", "categorical")]
    cause = (error.get("ctx") or {}).get("error")
    if isinstance(cause, _FieldError):  # a parameter's own check, on one of its fields
        loc.append(cause.field)
    field, kind = ".".join(loc), error["type"]
    if isinstance(cause, _FieldError):
        message = str(cause)
    elif kind == "extra_forbidden":
        message = "unknown field" + _did_you_mean(error["loc"])
    elif kind == "missing":
        message = "is required"
    elif kind in ("union_tag_invalid", "union_tag_not_found"):
        message = "needs type: float, int or categorical"
    elif kind == "literal_error":
        message = f"{error['msg'].lower()}, got {_short(error['input'])}"
    else:
        message = f"{error['msg'][0].lower()}{error['msg'][1:]}, got {_short(error['input'])}"
    more = len(exc.errors()) - 1
    if more:
        message += f" (and {more} more problem{'s' if more > 1 else ''})"
    return SpecError(field, message)


def _short(value: Any) -> str:
    """A bad value as the error line shows it: whole when short, cut when long."""
    text = repr(value)
    return text if len(text) <= 80 else f"{text[:60]}... ({len(text)} characters)"


#: Names other tools use for a field, pointed to ours (difflib finds typos, not synonyms).
_SYNONYMS = {
    "path": "source",
    "file": "source",
    "dataset": "source",
    "target_column": "target",
    "label": "target",
    "n_trials": "trials",
    "max_trials": "trials",
    "sampler": "strategy",
    "pruner": "scheduler",
    "search_space": "space",
}

_PARAM_MODELS = {"float": FloatParam, "int": IntParam, "categorical": CategoricalParam}


def _did_you_mean(loc: tuple) -> str:
    """Suggest the closest allowed field name for an unknown one."""
    model: type[BaseModel] = ExperimentSpec
    for part in loc[:-1]:
        if part in _PARAM_MODELS:
            model = _PARAM_MODELS[part]
            continue
        field = model.model_fields.get(str(part))
        if field is None:
            continue  # a parameter's own name under space
        if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
            model = field.annotation
    allowed = [name for name in model.model_fields if name != "type" or model is ExperimentSpec]
    known = _SYNONYMS.get(str(loc[-1]))
    if known in allowed:
        return f"; did you mean {known!r}?"
    close = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
    return f"; did you mean {close[0]!r}?" if close else f"; allowed: {', '.join(allowed)}"
