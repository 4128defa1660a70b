"""The dashboard's web app: static pages, and a JSON API over storage that they read.

The pages are fixed files; every study name, parameter and error reaches the browser as JSON
and is put on the page as text, so nothing a study holds can become markup or script there.

Routes (``name`` is always a query parameter: a study's name may hold any character, ``/``
included, which a path segment could not carry unambiguously):

* ``/``, ``/studies/NAME``, ``/studies/NAME/trials/N``: the pages (NAME percent-encoded).
* ``/api/studies``: every study's summary.
* ``/api/study?name=``: one study's summary: counts by state, best trial, final result.
* ``/api/study/revision?name=``: what the pages poll, cheaply: the study's revision.
* ``/api/study/trials?name=``: a page of the trial table: ``offset``, ``limit`` (at most 500),
  ``sort`` (number, state, value, duration or ``param:NAME``; missing values last), ``order``
  (asc, desc), ``state`` (repeatable or comma-separated), ``q`` (text in params or error).
* ``/api/study/trial?name=&number=``: one trial, its reports and its artifact files.
* ``/api/study/file?name=&number=&path=``: one artifact file, as a download.
* ``/api/study/figure?name=&kind=``: a figure as Plotly JSON; ``numbers=1,2`` picks trials
  (curves), ``params=a,b`` parameters.

Errors come back as ``{"error": message}``: 400 for a bad query, 404 for an unknown study, trial
or figure kind, 422 or 500 for a figure that could not be made.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import logging
import math
import re
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import FileResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from tunelab.dashboard._files import artifacts_root, list_files, trial_file, trial_folder
from tunelab.dashboard._guard import LOOPBACK_HOSTS, Guard
from tunelab.dashboard._table import QueryError, TableQuery, table_page
from tunelab.dashboard._views import Snapshot, Views
from tunelab.errors import StorageError, TunelabError
from tunelab.lr_range import ATTR, describe_auto
from tunelab.readers import best_trial, state_counts, trial_row, validated_on
from tunelab.storage import Storage, get_storage
from tunelab.trial import FrozenTrial
from tunelab.viz import KINDS, figure_data

__all__ = ["create_app", "serve"]

log = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"
#: The most trials one figure request may name (a trial page asks for one).
MAX_FIGURE_TRIALS = 100


def create_app(
    storage: str | Storage,
    *,
    token: str | None = None,
    artifacts_dir: str | Path | None = None,
    preload: bool = False,
    refresh_every: float = 1.0,
) -> Starlette:
    """The dashboard over ``storage`` (a URL or a Storage), read-only.

    A URL is opened with ``create=False``: a missing database raises StorageError naming it, and
    no file is made.

    Args:
        storage: the database the studies are in.
        token: when given, every request must carry it (``?token=...`` once, which sets a cookie);
            when not, only requests addressed to 127.0.0.1 / localhost / [::1] are answered.
        artifacts_dir: where the trial folders are; by default the study's spec says, else the
            folder beside a SQLite file, as :class:`~tunelab.Study` puts them.
        preload: read every study into memory when the server starts, in the background, so the
            first look at a study of 100,000 trials does not wait seconds for it (``serve`` does).
        refresh_every: the most often, in seconds, storage is asked what changed in a study.

    Example:
        >>> from starlette.testclient import TestClient
        >>> from tunelab.storage import get_storage
        >>> storage = get_storage("sqlite://")  # in memory; usually "sqlite:///tunelab.db"
        >>> storage.create_study("demo", "maximize", "score").name
        'demo'
        >>> client = TestClient(create_app(storage), base_url="http://127.0.0.1")
        >>> [study["name"] for study in client.get("/api/studies").json()["studies"]]
        ['demo']
    """
    views = Views(get_storage(storage, create=False), refresh_every)
    api = _Api(views, artifacts_dir)

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        if preload:
            threading.Thread(target=_preload, args=(views,), daemon=True).start()
        yield

    return Starlette(
        routes=api.routes(),
        middleware=[Middleware(Guard, token=token)],
        exception_handlers={_ApiError: _api_error},
        lifespan=lifespan,
    )


def serve(
    storage: str | Storage,
    *,
    host: str = "127.0.0.1",
    port: int = 8080,
    token: str | None = None,
    artifacts_dir: str | Path | None = None,
) -> None:
    """Run the dashboard until interrupted (uvicorn), its studies preloaded.

    Raises TunelabError for a host other than the loopback one without a token: anyone who can
    reach that address would read every study.
    """
    if token is None and f"[{host}]" not in LOOPBACK_HOSTS and host not in LOOPBACK_HOSTS:
        raise TunelabError(
            f"dashboard: serving on {host} shows every study to anyone who can reach it; "
            "give a token, or serve on 127.0.0.1"
        )
    import uvicorn

    app = create_app(storage, token=token, artifacts_dir=artifacts_dir, preload=True)
    uvicorn.run(app, host=host, port=port, log_level="warning")


def _preload(views: Views) -> None:
    try:
        views.snapshots()
    except Exception:  # noqa: BLE001 - a failed warm-up only means the first look is slower
        log.exception("dashboard: preloading the studies failed")


class _ApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


async def _api_error(_request: Request, exc: _ApiError) -> Response:
    return SafeJSONResponse({"error": str(exc)}, status_code=exc.status)


class SafeJSONResponse(Response):
    """JSON that a browser can always parse and never mistake for markup: NaN and infinities
    become null, and ``<``, ``>``, ``&`` are escaped, so a name like ``</script>`` stays data."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return _dumps(content).encode()


def _dumps(content: Any) -> str:
    text = json.dumps(_finite(content), allow_nan=False, separators=(",", ":"), default=str)
    return _escape_markup(text)


def _escape_markup(text: str) -> str:
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(item) for item in value]
    return value


class _Api:
    """The request handlers, over one storage's studies."""

    def __init__(self, views: Views, artifacts_dir: str | Path | None) -> None:
        self.views = views
        self.artifacts_dir = artifacts_dir

    def routes(self) -> list[Route | Mount]:
        return [
            Route("/", _page("index.html")),
            Route("/studies/{rest:path}", _study_pages),
            Route("/api/studies", self.studies),
            Route("/api/study", self.study),
            Route("/api/study/revision", self.revision),
            Route("/api/study/trials", self.trials),
            Route("/api/study/trial", self.trial),
            Route("/api/study/file", self.file),
            Route("/api/study/figure", self.figure),
            Route("/static/plotly.min.js", _plotly_js),
            Mount("/static", StaticFiles(directory=STATIC)),
        ]

    def studies(self, _request: Request) -> Response:
        return SafeJSONResponse({"studies": [_summary(s) for s in self.views.snapshots()]})

    def study(self, request: Request) -> Response:
        return SafeJSONResponse(_summary(self._snapshot(request)))

    def revision(self, request: Request) -> Response:
        snapshot = self._snapshot(request)
        return SafeJSONResponse(
            {
                "revision": snapshot.revision,
                "n_trials": len(snapshot.trials),
                "has_result": _summary(snapshot)["result"] is not None,
            }
        )

    def trials(self, request: Request) -> Response:
        snapshot = self._snapshot(request)
        try:
            query = TableQuery.parse(request.query_params)
        except QueryError as exc:
            raise _ApiError(400, str(exc)) from None
        return SafeJSONResponse(table_page(snapshot, query))

    def trial(self, request: Request) -> Response:
        snapshot = self._snapshot(request)
        trial = self._trial(snapshot, request)
        record = snapshot.record
        root = artifacts_root(self.views.storage, record, self.artifacts_dir)
        return SafeJSONResponse(
            {
                **trial_row(trial),
                "study": record.name,
                "revision": snapshot.revision,
                "metric": record.metric,
                "direction": record.direction,
                "source": trial.source,
                "owner": trial.owner,
                "started_at": trial.started_at,
                "finished_at": trial.finished_at,
                "heartbeat_at": trial.heartbeat_at,
                "intermediate": [
                    {"step": step, "metrics": metrics}
                    for step, metrics in sorted(trial.intermediate.items())
                ],
                "artifacts": list_files(trial_folder(root, record.name, trial.number)),
            }
        )

    def file(self, request: Request) -> Response:
        snapshot = self._snapshot(request)
        trial = self._trial(snapshot, request)
        record = snapshot.record
        root = artifacts_root(self.views.storage, record, self.artifacts_dir)
        relative = request.query_params.get("path", "")
        path = trial_file(trial_folder(root, record.name, trial.number), relative)
        if path is None:
            raise _ApiError(404, f"trial {trial.number} has no file {relative!r}")
        return FileResponse(path, filename=path.name)  # an attachment: never shown as a page

    def figure(self, request: Request) -> Response:
        snapshot = self._snapshot(request)
        kind = request.query_params.get("kind", "")
        if kind not in KINDS:
            raise _ApiError(404, f"kind must be one of {', '.join(KINDS)}, but got {kind!r}")
        numbers = _numbers(request.query_params.get("numbers"))
        params = _names(request.query_params.get("params"))
        status, body = snapshot.memo(
            ("figure", kind, numbers, params),
            lambda: _figure_json(snapshot, kind, numbers, params),
        )
        return Response(body, status_code=status, media_type="application/json")

    def _snapshot(self, request: Request) -> Snapshot:
        name = request.query_params.get("name")
        if name is None:
            raise _ApiError(400, "give the study's name: ?name=...")
        try:
            return self.views.snapshot(name)
        except StorageError as exc:
            raise _ApiError(404, str(exc)) from None

    @staticmethod
    def _trial(snapshot: Snapshot, request: Request) -> FrozenTrial:
        text = request.query_params.get("number", "")
        trial = snapshot.trial(int(text)) if text.isdigit() else None
        if trial is None:
            count = len(snapshot.trials)
            known = f"numbered 0 to {count - 1}" if count else "none yet"
            raise _ApiError(
                404, f"study {snapshot.record.name!r} has no trial {text!r} (its trials: {known})"
            )
        return trial


def _summary(snapshot: Snapshot) -> dict[str, Any]:
    return snapshot.memo("summary", lambda: _make_summary(snapshot))


def _make_summary(snapshot: Snapshot) -> dict[str, Any]:
    """What the studies list and the head of a study page show."""
    record, trials = snapshot.record, snapshot.trials
    best = best_trial(trials, record.direction)
    result = record.attrs.get("result")
    return {
        "name": record.name,
        "direction": record.direction,
        "metric": record.metric,
        "created_at": record.created_at,
        "revision": snapshot.revision,
        "n_trials": len(trials),
        "counts": {state.value: count for state, count in state_counts(trials).items()},
        "best": None
        if best is None
        else {"number": best.number, "value": best.value, "params": best.params},
        "result": None
        if not isinstance(result, dict)
        else {key: result.get(key) for key in ("trial", "test_metrics", "retrained_on")},
        "lr_range": describe_auto(record.attrs[ATTR]) if ATTR in record.attrs else None,
        "validated_on": validated_on(record.spec),
        "params": _param_names(trials),
        "figures": list(KINDS),
    }


def _param_names(trials: tuple[FrozenTrial, ...]) -> list[str]:
    """Every parameter name in the study, in the order they first appear."""
    names: dict[str, None] = {}
    for trial in trials:
        names.update(dict.fromkeys(trial.params or {}))
    return list(names)


def _figure_json(
    snapshot: Snapshot, kind: str, numbers: tuple[int, ...] | None, params: tuple[str, ...] | None
) -> tuple[int, str]:
    """The figure as Plotly JSON, or why it could not be made (the page shows that in its box)."""
    from tunelab.viz import to_plotly  # imports plotly: paid by the first figure, not at start

    try:
        data = figure_data(
            kind,
            snapshot.trials,
            metric=snapshot.record.metric,
            direction=snapshot.record.direction,
            numbers=None if numbers is None else list(numbers),
            params=None if params is None else list(params),
        )
        return 200, _escape_markup(to_plotly(data).to_json())
    except (TunelabError, ValueError) as exc:
        return 422, _dumps({"error": f"{kind}: {exc}"})
    except Exception as exc:  # noqa: BLE001 - one broken figure must not break the page
        log.exception("dashboard: the %s figure of %r failed", kind, snapshot.record.name)
        return 500, _dumps({"error": f"{kind}: {type(exc).__name__}: {exc}"})


def _numbers(text: str | None) -> tuple[int, ...] | None:
    if not text:
        return None
    try:
        numbers = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise _ApiError(400, f"numbers must be trial numbers like 3,7, but got {text!r}") from None
    if len(numbers) > MAX_FIGURE_TRIALS:
        raise _ApiError(400, f"a figure shows at most {MAX_FIGURE_TRIALS} chosen trials")
    return numbers


def _names(text: str | None) -> tuple[str, ...] | None:
    return tuple(text.split(",")) if text else None


_TRIAL_PAGE = re.compile(r"/studies/[^/]+/trials/\d+/?")
_STUDY_PAGE = re.compile(r"/studies/[^/]+/?")


def _study_pages(request: Request) -> Response:
    """The study or trial page, told apart on the path as sent (a study's name, encoded, holds
    no ``/``; decoded, it may)."""
    raw = request.scope.get("raw_path") or request.url.path.encode()
    path = raw.decode("latin-1").split("?", 1)[0]
    if _TRIAL_PAGE.fullmatch(path):
        return FileResponse(STATIC / "trial.html")
    if _STUDY_PAGE.fullmatch(path):
        return FileResponse(STATIC / "study.html")
    return PlainTextResponse("404: no such page", status_code=404)


def _page(name: str) -> Callable[[Request], Response]:
    def page(_request: Request) -> Response:
        return FileResponse(STATIC / name)

    return page


def _plotly_js(_request: Request) -> Response:
    """plotly.js from the installed plotly package: the pages reach nothing beyond this server."""
    spec = importlib.util.find_spec("plotly")
    if spec is None or spec.origin is None:
        return PlainTextResponse("404: the plotly package is not installed", status_code=404)
    return FileResponse(Path(spec.origin).parent / "package_data" / "plotly.min.js")
