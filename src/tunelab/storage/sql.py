"""SQL storage on SQLAlchemy 2: SQLite by default, PostgreSQL by URL.

Why several processes can share one SQLite file without 'database is locked': the database runs in
WAL mode (readers never block the writer), every transaction starts with ``BEGIN IMMEDIATE`` (it takes
the write lock up front, so two transactions never deadlock upgrading a read lock, which is what makes
SQLite give up at once), and a busy connection waits up to a minute for the lock instead of failing.
Each method is one short transaction.

Trial writes are single conditional UPDATEs (state and owner in the WHERE clause), so the rules of
:data:`~tunelab.storage.base.TRANSITIONS` hold on PostgreSQL too, where transactions interleave.

On PostgreSQL a lost connection (a server restart, a killed backend, a network blip) is retried:
the whole transaction runs again on a new connection (see :meth:`SQLStorage._transaction`).
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import math
import random
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from types import SimpleNamespace
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.exc import ArgumentError, IntegrityError, NoSuchModuleError
from sqlalchemy.pool import StaticPool

from tunelab.clock import Clock, RealClock
from tunelab.errors import StorageError
from tunelab.storage.base import (
    SCHEMA_VERSION,
    TRANSITIONS,
    Storage,
    StorageUnavailable,
    StudyNameTaken,
    StudyRecord,
    TrialNumberTaken,
    TrialStateError,
    check_transition,
)
from tunelab.trial import FrozenTrial, TrialState

__all__ = ["SQLStorage"]

_BUSY_TIMEOUT_S = 60
_PREFIX = "tunelab_"
#: How long a PostgreSQL connection may stay lost before the driver gives up, and the pauses
#: between tries (doubling from the first to the last).
_RETRY_S = 60.0
_FIRST_PAUSE_S = 0.1
_LAST_PAUSE_S = 5.0
#: SQLSTATEs of a server that ended or refused the session (besides class 08, connection
#: exceptions): admin_shutdown (a restart, pg_terminate_backend), crash_shutdown, and
#: cannot_connect_now (starting up or shutting down).
_SERVER_GONE = ("57P01", "57P02", "57P03")

logger = logging.getLogger("tunelab")
_T = TypeVar("_T")

metadata = sa.MetaData()

studies = sa.Table(
    f"{_PREFIX}studies",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(255), nullable=False, unique=True),
    sa.Column("direction", sa.String(16), nullable=False),
    sa.Column("metric", sa.String(255), nullable=False),
    sa.Column("spec", sa.Text),
    sa.Column("attrs", sa.Text, nullable=False, default="{}"),
    sa.Column("created_at", sa.Float, nullable=False),
    # Bumped by every write to the study's trials; trials carry the revision of their last change,
    # so a driver reads only what changed since it last looked.
    sa.Column("revision", sa.BigInteger, nullable=False, default=0),
)

trials = sa.Table(
    f"{_PREFIX}trials",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("study_id", sa.ForeignKey(studies.c.id, ondelete="CASCADE"), nullable=False),
    sa.Column("number", sa.Integer, nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("params", sa.Text),
    sa.Column("value", sa.Float),
    sa.Column("metrics", sa.Text),
    sa.Column("seed", sa.BigInteger),
    sa.Column("source", sa.String(32), nullable=False),
    sa.Column("proposal", sa.Text),
    sa.Column("error", sa.Text),
    sa.Column("owner", sa.String(255)),
    sa.Column("retries", sa.Integer, nullable=False, default=0),
    sa.Column("started_at", sa.Float),
    sa.Column("finished_at", sa.Float),
    sa.Column("heartbeat_at", sa.Float),
    sa.Column("updated_at", sa.Float, nullable=False),
    sa.Column("revision", sa.BigInteger, nullable=False),
    sa.Column("attrs", sa.Text),  # schema 2
    sa.UniqueConstraint("study_id", "number", name=f"{_PREFIX}trials_study_number"),
    sa.Index(f"{_PREFIX}trials_study_revision", "study_id", "revision"),
    sa.Index(f"{_PREFIX}trials_study_state", "study_id", "state"),
)

reports = sa.Table(
    f"{_PREFIX}reports",
    metadata,
    sa.Column("trial_id", sa.ForeignKey(trials.c.id, ondelete="CASCADE"), primary_key=True),
    sa.Column("step", sa.Integer, primary_key=True),
    sa.Column("metrics", sa.Text, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
)


version = sa.Table(
    f"{_PREFIX}version",
    metadata,
    sa.Column("version", sa.Integer, nullable=False),
)


def _upgrade_1_to_2(conn: sa.Connection) -> None:
    """Per-trial attributes (PAUSED needs no change: states are strings)."""
    conn.execute(sa.text(f"ALTER TABLE {trials.name} ADD COLUMN attrs TEXT"))


#: ``_UPGRADES[v]`` takes a database from schema version v to v + 1.
_UPGRADES = {1: _upgrade_1_to_2}

_SCHEMA_LOCK = 0x7475_6E65  # "tune": the advisory lock id under which the schema is prepared
_ALL_STATES = tuple(state.value for state in TrialState)
_RUNNING = TrialState.RUNNING.value
_WAITING = TrialState.WAITING.value
_PAUSED = TrialState.PAUSED.value
#: For each state, the states a trial may move to it from.
_SOURCES = {
    to: tuple(s.value for s, targets in TRANSITIONS.items() if to in targets) for to in TrialState
}

# Prebuilt statements. Building a SQLAlchemy statement costs several times what running it on SQLite
# does, so the frequent ones are built once, with bound parameters; SQLAlchemy also compiles each
# once. An INSERT or an UPDATE given no values takes them, and its columns, from the parameters it
# is executed with (so no WHERE parameter is named after a column of the table written).


def _one_of(column: sa.ColumnElement, values: Iterable[str]) -> sa.ColumnElement[bool]:
    """``column IN values`` for values fixed when the statement is built: plain bound values,
    which spares SQLAlchemy expanding an IN list at every execution."""
    return sa.or_(*(column == value for value in values))


def _bump_revision(study_id: sa.ColumnElement, xid: bool) -> sa.Update:
    """Take the study's next revision; with ``xid``, also return the id of the transaction
    (PostgreSQL: see SQLStorage._transaction)."""
    returned = [studies.c.revision, sa.func.txid_current()] if xid else [studies.c.revision]
    return (
        studies.update()
        .where(studies.c.id == study_id)
        .values(revision=studies.c.revision + 1)
        .returning(*returned)
    )


_OF_TRIAL = (
    sa.select(trials.c.study_id).where(trials.c.id == sa.bindparam("trial_id")).scalar_subquery()
)
#: [xid][by trial]: the revision bumps, by study id or by trial id, with the transaction id or not
_BUMP = [
    [_bump_revision(of, xid) for of in (sa.bindparam("study_id"), _OF_TRIAL)] for xid in (0, 1)
]
_STUDY_REVISION = sa.select(studies.c.revision).where(studies.c.id == sa.bindparam("study_id"))
_TRIAL = trials.select().where(trials.c.id == sa.bindparam("trial_id"))
_TRIAL_ATTRS = sa.select(trials.c.attrs).where(trials.c.id == sa.bindparam("trial_id"))
_NEXT_WAITING = (
    sa.select(trials.c.id)
    .where(trials.c.study_id == sa.bindparam("study_id"), trials.c.state == _WAITING)
    .order_by(trials.c.number)
    .limit(1)
)
#: Claims of a WAITING trial, and of one that may also be PAUSED (a resume).
_CLAIM = {
    claimable: trials.update()
    .where(trials.c.id == sa.bindparam("trial_id"), _one_of(trials.c.state, claimable))
    .values(started_at=sa.func.coalesce(trials.c.started_at, sa.bindparam("now", type_=sa.Float)))
    for claimable in [(_WAITING,), (_WAITING, _PAUSED)]
}
_INSERT_TRIAL = trials.insert()
_INSERT_REPORT = reports.insert()
_DELETE_REPORT = reports.delete().where(
    reports.c.trial_id == sa.bindparam("trial_id"), reports.c.step == sa.bindparam("step")
)
_XID = sa.text("SELECT txid_current()")
_XID_STATUS = sa.text("SELECT txid_status(:xid)")


@functools.cache
def _guarded_update(sources: tuple[str, ...], retry: bool) -> sa.Update:
    """The UPDATE of trial ``trial_id`` that writes it only in one of ``sources`` and, while it is
    RUNNING, only for its owner ``writer``; with ``retry`` it counts one more retry."""
    update = trials.update().where(
        trials.c.id == sa.bindparam("trial_id"),
        _one_of(trials.c.state, sources),
        # not "=": a writer of None must match an owner of NULL, as check_transition has it
        sa.or_(
            trials.c.state != _RUNNING,
            trials.c.owner.is_not_distinct_from(sa.bindparam("writer")),
        ),
    )
    return update.values(retries=trials.c.retries + 1) if retry else update


def _trial_queries(*where: sa.ColumnElement[bool]) -> tuple[sa.Select, sa.Select]:
    """The trials that match ``where`` in number order, and their reports by trial and step."""
    return (
        trials.select().where(*where).order_by(trials.c.number),
        sa.select(reports.c.trial_id, reports.c.step, reports.c.metrics)
        .where(reports.c.trial_id.in_(sa.select(trials.c.id).where(*where)))
        .order_by(reports.c.trial_id, reports.c.step),
    )


_IN_STUDY = trials.c.study_id == sa.bindparam("study_id")
_CHANGED_TRIALS = _trial_queries(_IN_STUDY, trials.c.revision > sa.bindparam("after_revision"))


@functools.cache
def _trials_in(states: tuple[str, ...] | None) -> tuple[sa.Select, sa.Select]:
    """:func:`_trial_queries` for a study's trials in ``states`` (None: all of them)."""
    if states is None:
        return _trial_queries(_IN_STUDY)
    return _trial_queries(_IN_STUDY, _one_of(trials.c.state, states))


class _Row(SimpleNamespace):
    """A trial row we just wrote, shaped like a fetched one (saves reading it back)."""


def _dumps(value: Any) -> str:
    return json.dumps(value, allow_nan=True, separators=(",", ":"))


def _loads(text: str | None, default: Any = None) -> Any:
    return default if text is None else json.loads(text)


def _loads_all(texts: Iterable[str | None]) -> list[Any]:
    """Many JSON documents decoded at once (None for SQL NULL): one call of the C decoder on
    their joined text, where one call each cost half the time of reading 100,000 trials."""
    return json.loads("[" + ",".join("null" if text is None else text for text in texts) + "]")


def _params_value(params: Mapping[str, Any] | None) -> dict[str, str]:
    return {} if params is None else {"params": _dumps(dict(params))}


def _finite_or_none(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def _switch_to_wal(cursor: Any) -> None:
    """``PRAGMA journal_mode=WAL``, retried: when two connections switch a new file at the same
    instant, SQLite answers one 'database is locked' at once instead of waiting (it would
    deadlock), so the busy timeout does not help. Once the file is in WAL mode this is a read."""
    deadline = time.monotonic() + _BUSY_TIMEOUT_S
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(random.uniform(0.001, 0.02))


def _sqlite_file(database: str, create: bool) -> None:
    """Check (and with ``create``, prepare) the place of a SQLite file, naming what is wrong."""
    path = Path(database).expanduser()
    if path.is_dir():
        raise StorageError(
            f"storage: {path} is a folder, not a database file; give a file such as "
            f"sqlite:///{path / 'tunelab.db'}"
        )
    if not create:
        if not path.is_file():
            raise StorageError(
                f"storage: no database at {path.resolve()}; run a study there first "
                "(tunelab run SPEC), or point --storage at the database that holds it"
            )
        return
    blocker = next((p for p in path.parents if p.exists() and not p.is_dir()), None)
    if blocker is not None:
        raise StorageError(
            f"storage: cannot put a database at {path}: {blocker} is a file, not a folder"
        )
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StorageError(
            f"storage: cannot make the folder {path.parent}: {exc.strerror}"
        ) from None


def _sqlite_engine(url: sa.URL, create: bool) -> Engine:
    database = url.database
    in_memory = not database or database == ":memory:"
    if in_memory:  # one connection shared by the process's threads (SQLStorage serialises them)
        engine = sa.create_engine(
            url, poolclass=StaticPool, connect_args={"check_same_thread": False}
        )
    else:
        _sqlite_file(database, create)
        engine = sa.create_engine(url, connect_args={"timeout": _BUSY_TIMEOUT_S})

    @event.listens_for(engine, "connect")
    def _configure(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = (
            None  # SQLAlchemy's "begin" event below opens transactions
        )
        cursor = dbapi_connection.cursor()
        if not in_memory:
            _switch_to_wal(cursor)
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute(f"PRAGMA busy_timeout={_BUSY_TIMEOUT_S * 1000}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(connection: Any) -> None:
        read_only = connection.get_execution_options().get("tunelab_read_only", False)
        connection.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")

    return engine


def _engine(parsed: sa.URL, url: str, create: bool) -> Engine:
    """The engine for a URL; an unknown kind of database or a missing driver is one line."""
    backend = parsed.get_backend_name()
    try:
        if backend == "sqlite":
            return _sqlite_engine(parsed, create)
        return sa.create_engine(parsed, pool_pre_ping=True)
    except NoSuchModuleError:
        raise StorageError(
            f"storage: {url!r} names a database tunelab cannot reach ({parsed.drivername!r}); "
            "use sqlite:///path/to/file.db or postgresql+psycopg://user@host/db"
        ) from None
    except ModuleNotFoundError as exc:
        raise StorageError(
            f"storage: {url!r} needs the Python driver {exc.name!r}, which is not installed; "
            "for PostgreSQL use postgresql+psycopg://... and pip install 'tunelab[postgres]'"
        ) from None


def _database_error(url: str, exc: sa.exc.DBAPIError) -> StorageError:
    """A database's complaint as one line that names the database and, where known, the fix."""
    text = str(exc.orig).strip().splitlines()[0] if exc.orig is not None else str(exc)
    where = sa.make_url(url).database or url
    if "file is not a database" in text or "malformed" in text:
        return StorageError(
            f"storage: {where} is not a SQLite database, or it is damaged; point --storage at "
            "another file (sqlite3's .recover command may save what it holds)"
        )
    if "readonly" in text or "read-only" in text:
        return StorageError(
            f"storage: {where} is read-only; make the file and its folder writable, or copy it"
        )
    if "unable to open database file" in text:
        return StorageError(f"storage: cannot open {where}; check that its folder is writable")
    return StorageError(f"storage: {sa.make_url(url).render_as_string()} failed: {text}")


def _connection_lost(exc: sa.exc.DBAPIError) -> bool:
    """Whether a PostgreSQL error says the connection is gone (so the transaction may run again
    on a new one), rather than that the server refused what was asked."""
    if exc.connection_invalidated:  # SQLAlchemy's reading: "server closed the connection", ...
        return True
    if not isinstance(exc, sa.exc.OperationalError):
        return False
    state = getattr(exc.orig, "sqlstate", None) or getattr(exc.orig, "pgcode", None)
    # no SQLSTATE: the client could not reach the server at all (connection refused, reset, ...)
    return state is None or state.startswith("08") or state in _SERVER_GONE


def _first_line(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None) or exc
    return (str(orig).strip().splitlines() or [type(orig).__name__])[0]


class SQLStorage(Storage):
    """Storage in any database SQLAlchemy reaches; tables are prefixed ``tunelab_``.

    Args:
        url: ``sqlite:///path.db``, ``sqlite://`` (in memory) or ``postgresql+psycopg://...``.
        clock: where timestamps come from (the real clock by default).
        create: make the database and tables when missing (read commands say False).
        retry_s: how long a lost PostgreSQL connection is retried before
            :class:`~tunelab.storage.base.StorageUnavailable` (SQLite needs no retries).

    Example:
        >>> storage = SQLStorage("sqlite://")  # in memory; "sqlite:///tunelab.db" for a file
        >>> storage.create_study("demo", "maximize", "value").name
        'demo'
    """

    def __init__(
        self,
        url: str,
        clock: Clock | None = None,
        create: bool = True,
        retry_s: float = _RETRY_S,
    ) -> None:
        try:
            parsed = sa.make_url(url)
        except ArgumentError:
            raise StorageError(
                f"storage: cannot read {url!r} as a database URL; use e.g. sqlite:///tunelab.db "
                "or postgresql+psycopg://user@host/db"
            ) from None
        self.url = url
        self.clock = clock or RealClock()
        self.create = create
        self.retry_s = retry_s
        self._lock = threading.RLock()  # the heartbeat thread shares this object with the driver
        self._engine = _engine(parsed, url, create)
        self._conn: sa.Connection | None = None
        self._retries = parsed.get_backend_name() == "postgresql"
        self._server = f"{parsed.host or 'localhost'}:{parsed.port or 5432}/{parsed.database}"
        self._connected = False  # a server never reached (a wrong URL) is not retried
        self._lost_at: float | None = None  # when the connection was lost, until it is back
        self._loss: sa.exc.DBAPIError | None = None  # what the last try said
        self._xid: int | None = None  # the open write transaction's id, once a write noted it
        self._transaction(self._prepare_schema)  # serialised, so concurrent first runs do not race

    def _prepare_schema(self, conn: sa.Connection) -> None:
        """Create the tables, or upgrade an older database in place, step by step.

        Drivers that open a new database together take turns: SQLite's write lock is held from
        BEGIN IMMEDIATE; PostgreSQL needs a lock of its own (two CREATE TABLEs would collide)."""
        if conn.dialect.name == "postgresql":
            conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_SCHEMA_LOCK)))
        existing = set(sa.inspect(conn).get_table_names())
        if not self.create and studies.name not in existing:
            raise StorageError(f"storage: {self.url} holds no tunelab studies")
        metadata.create_all(conn)
        found = conn.execute(sa.select(version.c.version)).scalar()
        if found is None:  # a new database, or one from before versions were stored
            found = 1 if studies.name in existing else SCHEMA_VERSION
            conn.execute(version.insert().values(version=found))
        if found > SCHEMA_VERSION:
            raise StorageError(
                f"storage: {self.url} was written by a newer tunelab (schema {found}; this one "
                f"reads up to {SCHEMA_VERSION}); upgrade tunelab with: pip install -U tunelab"
            )
        for step in range(found, SCHEMA_VERSION):
            _UPGRADES[step](conn)
        if found < SCHEMA_VERSION:
            conn.execute(version.update().values(version=SCHEMA_VERSION))

    def _transaction(self, work: Callable[[sa.Connection], _T], read_only: bool = False) -> _T:
        """``work(conn)`` in one transaction, committed when it returns, rolled back when it
        raises; every public method is one call of this. On SQLite a write transaction takes the
        lock up front (BEGIN IMMEDIATE); a read-only one takes none.

        One connection is kept per storage object (checking one out of the pool per transaction
        costs a third of a small transaction); the lock serialises the threads sharing it.

        On PostgreSQL a lost connection runs ``work`` again on a new one, after pauses that double
        from 0.1 s to 5 s, until the connection has been gone for ``retry_s``; then
        StorageUnavailable says so in one line. The server drops an unfinished transaction with
        its connection, so a retry never leaves half a write. Nothing else is retried: a
        constraint, a missing database, a server this object never reached (a wrong URL).

        The one doubt is a COMMIT sent but not acknowledged: it may have landed. So a write notes
        its transaction id before COMMIT (trial writes get it with the revision they take, at no
        cost) and, after reconnecting, asks the server what became of it (txid_status):
        committed, and the first run's result stands; aborted, and ``work`` runs again; in
        progress, and it asks again after the next pause. A write thus never runs twice (no second
        trial, claim or queued config) and never meets its own earlier success as a refusal (a
        state or owner guard, a taken trial number or study name). The writes that note no id
        (heartbeats, a study attribute, the schema) come out the same when run twice.
        """
        unsure: tuple[int, _T] | None = None  # (xid, result) of a run whose COMMIT went unanswered
        pause, since = _FIRST_PAUSE_S, None
        while True:
            with self._lock:
                xid = None
                try:
                    conn = self._connection()
                    status = None if unsure is None else self._status(conn, unsure[0])
                    if status == "committed":
                        return self._regained(unsure[1])
                    if status != "in progress":  # aborted, or there was no doubt: run it
                        unsure = self._xid = None
                        conn.execution_options(tunelab_read_only=read_only)
                        with conn.begin():
                            result = work(conn)
                            xid = self._xid
                        return self._regained(result)
                except sa.exc.IntegrityError:
                    raise  # a constraint did its job (a taken name or number): the caller decides
                except sa.exc.DBAPIError as exc:
                    if not (self._retries and self._connected and _connection_lost(exc)):
                        raise _database_error(self.url, exc) from exc
                    self._lost(exc)
                    if xid is not None:  # the COMMIT was sent: it may have landed
                        unsure = (xid, result)
            since = since or time.monotonic()
            self._pause(pause, since)
            pause = min(2 * pause, _LAST_PAUSE_S)

    def _connection(self) -> sa.Connection:
        if self._conn is None or self._conn.invalidated:
            self._conn = self._engine.connect()
            self._connected = True
        return self._conn

    @staticmethod
    def _status(conn: sa.Connection, xid: int) -> str | None:
        """What became of transaction ``xid``: committed, aborted, in progress (None: unknown)."""
        status = conn.execute(_XID_STATUS, {"xid": xid}).scalar()
        conn.rollback()
        return status

    def _lost(self, exc: sa.exc.DBAPIError) -> None:
        """Drop the dead connection; the first loss of an outage is one warning."""
        if self._conn is not None:
            with contextlib.suppress(sa.exc.SQLAlchemyError):
                self._conn.invalidate()
                self._conn.close()
            self._conn = None
        self._loss = exc
        if self._lost_at is None:
            self._lost_at = time.monotonic()
            logger.warning(
                "storage: lost the connection to %s (%s); retrying for up to %g s",
                self._server,
                _first_line(exc),
                self.retry_s,
            )

    def _regained(self, result: _T) -> _T:
        if self._lost_at is not None:
            logger.warning(
                "storage: the connection to %s is back after %.1f s",
                self._server,
                time.monotonic() - self._lost_at,
            )
            self._lost_at = None
        return result

    def _pause(self, pause: float, since: float) -> None:
        """Wait before the next try; once the connection has been gone for ``retry_s`` (counted
        from this call's first failure, or from the outage's start if earlier: every call after
        that fails after one try, until the server answers again), raise StorageUnavailable."""
        start = since if self._lost_at is None else min(since, self._lost_at)
        left = start + self.retry_s - time.monotonic()
        if left <= 0:
            shown = sa.make_url(self.url).render_as_string(hide_password=True)
            raise StorageUnavailable(
                f"storage: lost the connection to the PostgreSQL server at {self._server} and "
                f"it did not come back within {self.retry_s:g} s (last error: "
                f"{_first_line(self._loss)}); every trial recorded before is safe there; once "
                f"the server is back, continue with: tunelab resume STUDY --storage {shown}"
            ) from self._loss
        time.sleep(min(pause, left))

    def __repr__(self) -> str:
        return f"SQLStorage({self.url!r})"

    def __getstate__(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "clock": self.clock,
            "create": self.create,
            "retry_s": self.retry_s,
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["url"], state["clock"], state["create"], state.get("retry_s", _RETRY_S))

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
        self._engine.dispose()

    # Studies -------------------------------------------------------------------------------------
    def create_study(
        self,
        name: str,
        direction: str,
        metric: str,
        spec: Mapping[str, Any] | None = None,
        attrs: Mapping[str, Any] | None = None,
    ) -> StudyRecord:
        values = {
            "name": name,
            "direction": direction,
            "metric": metric,
            "spec": None if spec is None else _dumps(dict(spec)),
            "attrs": _dumps(dict(attrs or {})),
            "created_at": self.clock.now(),
            "revision": 0,
        }

        def insert(conn: sa.Connection) -> Any:
            conn.execute(studies.insert().values(values))
            self._note_xid(conn)
            return conn.execute(studies.select().where(studies.c.name == name)).one()

        try:
            return self._study(self._transaction(insert))
        except IntegrityError as exc:
            raise StudyNameTaken(f"a study named {name!r} already exists in {self.url}") from exc

    def get_study(self, name: str) -> StudyRecord:
        def read(conn: sa.Connection) -> tuple[Any, list[str]]:
            row = conn.execute(studies.select().where(studies.c.name == name)).first()
            if row is not None:
                return row, []
            known = sa.select(studies.c.name).order_by(studies.c.id)
            return None, conn.execute(known).scalars().all()

        row, known = self._transaction(read, read_only=True)
        if row is None:
            hint = f"known studies: {', '.join(known)}" if known else "it holds no studies yet"
            raise StorageError(f"no study named {name!r} in {self.url}; {hint}")
        return self._study(row)

    def list_studies(self) -> list[StudyRecord]:
        rows = self._transaction(
            lambda conn: conn.execute(studies.select().order_by(studies.c.id)).all(), read_only=True
        )
        return [self._study(row) for row in rows]

    def set_study_attr(self, study_id: int, key: str, value: Any) -> None:
        def write(conn: sa.Connection) -> None:
            attrs = self._study_attrs(conn, study_id)  # locked: concurrent keys are never lost
            attrs[key] = value
            self._set_study_attrs(conn, study_id, attrs)

        self._transaction(write)

    def swap_study_attr(self, study_id: int, key: str, expected: Any, value: Any) -> bool:
        def swap(conn: sa.Connection) -> bool:
            attrs = self._study_attrs(conn, study_id)
            if attrs.get(key) != expected:
                return False
            attrs[key] = value
            self._set_study_attrs(conn, study_id, attrs)
            self._note_xid(conn)
            return True

        return self._transaction(swap)

    @staticmethod
    def _study_attrs(conn: sa.Connection, study_id: int) -> dict[str, Any]:
        """A study's attributes, its row locked until the transaction ends."""
        query = sa.select(studies.c.attrs).where(studies.c.id == study_id).with_for_update()
        return _loads(conn.execute(query).scalar_one())

    @staticmethod
    def _set_study_attrs(conn: sa.Connection, study_id: int, attrs: dict[str, Any]) -> None:
        conn.execute(studies.update().where(studies.c.id == study_id).values(attrs=_dumps(attrs)))

    @staticmethod
    def _study(row: Any) -> StudyRecord:
        return StudyRecord(
            id=row.id,
            name=row.name,
            direction=row.direction,
            metric=row.metric,
            spec=_loads(row.spec),
            attrs=_loads(row.attrs, {}),
            created_at=row.created_at,
        )

    # Trials --------------------------------------------------------------------------------------
    def _bump(
        self, conn: sa.Connection, study_id: int | None = None, trial_id: int | None = None
    ) -> int:
        """Take the next revision of the study (or of trial ``trial_id``'s). The UPDATE also locks
        the study row, which serialises trial numbering per study on PostgreSQL (SQLite holds its
        write lock from BEGIN IMMEDIATE); there it also notes the transaction's id."""
        by_trial = trial_id is not None
        params = {"trial_id": trial_id} if by_trial else {"study_id": study_id}
        revision, *xid = conn.execute(_BUMP[self._retries][by_trial], params).one()
        if xid:
            self._xid = xid[0]
        return revision

    def _note_xid(self, conn: sa.Connection) -> None:
        """Note the transaction's id, for a write that takes no revision and must not run twice."""
        if self._retries:
            self._xid = conn.execute(_XID).scalar_one()

    def _write(
        self,
        conn: sa.Connection,
        trial_id: int,
        to: TrialState | None,
        writer: str | None,
        attrs: Mapping[str, Any] | None = None,
        sources: tuple[str, ...] = (_RUNNING,),
        retry: bool = False,
        **values: Any,
    ) -> int:
        """Change one trial under the study's next revision, if its state and owner allow it.

        ``to`` is the new state, or None for a write that keeps it: reports and params (RUNNING
        trials only, unless ``sources`` says otherwise); ``writer`` the process writing, which
        must own the trial while it is RUNNING; ``retry`` counts one more retry (a re-queue).
        One conditional UPDATE: a trial another process moved meanwhile is not touched, and
        TrialStateError says why. Returns the revision taken.
        """
        if to is not None:
            sources = _SOURCES[to]
            values["state"] = to.value
        if attrs:
            stored = conn.execute(_TRIAL_ATTRS, {"trial_id": trial_id}).scalar()
            values["attrs"] = _dumps({**_loads(stored, {}), **attrs})
        revision = self._bump(conn, trial_id=trial_id)
        values.update(revision=revision, updated_at=self.clock.now())
        written = conn.execute(
            _guarded_update(sources, retry), {"trial_id": trial_id, "writer": writer, **values}
        ).rowcount
        if written != 1:
            raise self._refusal(conn, trial_id, to, writer)
        return revision

    def _refusal(
        self, conn: sa.Connection, trial_id: int, to: TrialState | None, owner: str | None
    ) -> StorageError:
        row = conn.execute(_TRIAL, {"trial_id": trial_id}).first()
        if row is None:
            return StorageError(f"no trial with id {trial_id} in {self.url}")
        error = check_transition(self._decoded(row), to, owner)
        return error or TrialStateError(f"trial {row.number} could not be written")

    @staticmethod
    def _next_number(conn: sa.Connection, study_id: int) -> int:
        last = conn.execute(
            sa.select(sa.func.max(trials.c.number)).where(trials.c.study_id == study_id)
        ).scalar()
        return 0 if last is None else last + 1

    def enqueue_trial(
        self,
        study_id: int,
        params: Mapping[str, Any],
        seed: int | None = None,
        source: str = "queue",
    ) -> FrozenTrial:
        def insert(conn: sa.Connection) -> FrozenTrial:
            revision = self._bump(conn, study_id)
            trial_id = conn.execute(
                trials.insert().values(
                    study_id=study_id,
                    number=self._next_number(conn, study_id),
                    revision=revision,
                    state=TrialState.WAITING.value,
                    params=_dumps(dict(params)),
                    seed=seed,
                    source=source,
                    retries=0,
                    updated_at=self.clock.now(),
                )
            ).inserted_primary_key[0]
            return self._get_trial(conn, trial_id)

        return self._transaction(insert)

    def claim_trial(
        self, study_id: int, owner: str, trial_id: int | None = None
    ) -> FrozenTrial | None:
        claim = _CLAIM[(_WAITING,) if trial_id is None else (_WAITING, _PAUSED)]

        def take(conn: sa.Connection) -> FrozenTrial | None:
            while True:
                target = trial_id
                if target is None:
                    target = conn.execute(_NEXT_WAITING, {"study_id": study_id}).scalar()
                    if target is None:
                        return None
                now = self.clock.now()
                revision = self._bump(conn, study_id)
                taken = conn.execute(
                    claim,
                    {
                        "trial_id": target,
                        "now": now,
                        "state": _RUNNING,
                        "owner": owner,
                        "heartbeat_at": now,
                        "updated_at": now,
                        "revision": revision,
                    },
                ).rowcount
                if taken:
                    return self._get_trial(conn, target)
                if trial_id is not None:  # another process resumed it first
                    return None
                # another process claimed that one between our read and our write: next one

        return self._transaction(take)

    def create_trial(
        self,
        study_id: int,
        number: int,
        owner: str,
        params: Mapping[str, Any],
        seed: int,
        proposal: Mapping[str, Any],
        max_trials: int | None = None,
    ) -> FrozenTrial | None:
        if max_trials is not None and number >= max_trials:  # numbers are dense from 0
            return None
        now = self.clock.now()
        values = {
            "study_id": study_id,
            "number": number,
            "state": TrialState.RUNNING.value,
            "params": _dumps(dict(params)),
            "seed": seed,
            "source": "strategy",
            "proposal": _dumps(dict(proposal)),
            "owner": owner,
            "retries": 0,
            "started_at": now,
            "heartbeat_at": now,
            "updated_at": now,
        }

        def insert(conn: sa.Connection) -> int:
            values["revision"] = self._bump(conn, study_id)
            return conn.execute(_INSERT_TRIAL, values).inserted_primary_key[0]

        try:
            trial_id = self._transaction(insert)
        except IntegrityError as exc:
            raise TrialNumberTaken(f"trial number {number} is taken") from exc
        row = _Row(id=trial_id, metrics=None, value=None, error=None, finished_at=None, attrs=None)
        return self._decoded(_Row(**vars(row), **values))

    def set_trial_params(
        self,
        trial_id: int,
        params: Mapping[str, Any],
        seed: int,
        proposal: Mapping[str, Any],
        owner: str,
    ) -> int:
        values = {"params": _dumps(dict(params)), "seed": seed, "proposal": _dumps(dict(proposal))}
        return self._transaction(lambda conn: self._write(conn, trial_id, None, owner, **values))

    def add_report(self, trial_id: int, step: int, metrics: Mapping[str, float], owner: str) -> int:
        report = {"trial_id": trial_id, "step": step, "metrics": _dumps(dict(metrics))}

        def write(conn: sa.Connection) -> int:
            revision = self._write(conn, trial_id, None, owner)
            conn.execute(_DELETE_REPORT, report)
            conn.execute(_INSERT_REPORT, {**report, "created_at": self.clock.now()})
            return revision

        return self._transaction(write)

    def pause_trial(
        self,
        trial_id: int,
        owner: str,
        attrs: Mapping[str, Any] | None = None,
        params: Mapping[str, Any] | None = None,
    ) -> int:
        values = {"owner": None, "heartbeat_at": None, **_params_value(params)}
        return self._transaction(
            lambda conn: self._write(conn, trial_id, TrialState.PAUSED, owner, attrs, **values)
        )

    def finish_trial(
        self,
        trial_id: int,
        state: TrialState,
        value: float | None = None,
        metrics: Mapping[str, float] | None = None,
        error: str | None = None,
        owner: str | None = None,
        attrs: Mapping[str, Any] | None = None,
        params: Mapping[str, Any] | None = None,
    ) -> int:
        if not state.is_finished():
            raise ValueError(f"finish_trial needs a finished state, got {state}")
        values = {
            "value": _finite_or_none(value),
            "metrics": _dumps(dict(metrics or {})),
            "error": error,
            "finished_at": self.clock.now(),
            **_params_value(params),
        }
        return self._transaction(
            lambda conn: self._write(conn, trial_id, state, owner, attrs, **values)
        )

    def set_trial_attr(self, trial_id: int, key: str, value: Any, owner: str | None = None) -> int:
        return self._transaction(
            lambda conn: self._write(conn, trial_id, None, owner, {key: value}, sources=_ALL_STATES)
        )

    def heartbeat(self, trial_ids: Iterable[int]) -> None:
        ids = list(trial_ids)
        if not ids:
            return
        beat = (
            trials.update()
            .where(trials.c.id.in_(ids), trials.c.state == TrialState.RUNNING.value)
            .values(heartbeat_at=self.clock.now())
        )
        self._transaction(lambda conn: conn.execute(beat))

    def requeue_trials(self, stale: Iterable[FrozenTrial]) -> list[int]:
        stale = list(stale)

        def requeue(conn: sa.Connection) -> list[int]:
            requeued = []
            for trial in stale:
                try:
                    self._write(
                        conn,
                        trial.id,
                        TrialState.WAITING,
                        trial.owner,
                        retry=True,
                        owner=None,
                        started_at=None,
                        heartbeat_at=None,
                    )
                except TrialStateError:
                    continue  # finished, or taken over by another process meanwhile
                attrs = _loads(conn.execute(_TRIAL_ATTRS, {"trial_id": trial.id}).scalar(), {})
                kept = (attrs.get("checkpoint") or {}).get("step")
                dropped = reports.c.trial_id == trial.id
                if kept is not None:
                    dropped = sa.and_(dropped, reports.c.step > kept)
                conn.execute(reports.delete().where(dropped))
                requeued.append(trial.id)
            return requeued

        return self._transaction(requeue)

    def get_trials(
        self, study_id: int, states: Iterable[TrialState] | None = None
    ) -> list[FrozenTrial]:
        queries = _trials_in(None if states is None else tuple(sorted({s.value for s in states})))
        return self._transaction(
            lambda conn: self._select_trials(conn, queries, {"study_id": study_id}), read_only=True
        )

    def changes(self, study_id: int, after_revision: int) -> tuple[list[FrozenTrial], int]:
        def read(conn: sa.Connection) -> tuple[list[FrozenTrial], int]:
            revision = conn.execute(_STUDY_REVISION, {"study_id": study_id}).scalar_one()
            if revision == after_revision:
                return [], revision
            params = {"study_id": study_id, "after_revision": after_revision}
            return self._select_trials(conn, _CHANGED_TRIALS, params), revision

        return self._transaction(read, read_only=True)

    def _select_trials(
        self,
        conn: sa.Connection,
        queries: tuple[sa.Select, sa.Select],
        params: Mapping[str, Any],
    ) -> list[FrozenTrial]:
        """The trials that ``queries`` (from :func:`_trial_queries`) find, with their reports."""
        trial_query, report_query = queries
        rows = conn.execute(trial_query, params).all()
        report_rows = conn.execute(report_query, params).all()
        intermediate: dict[int, dict[int, dict[str, float]]] = {}
        for (trial_id, step, _), metrics in zip(
            report_rows, _loads_all(row[2] for row in report_rows), strict=True
        ):
            intermediate.setdefault(trial_id, {})[step] = metrics
        fields = _loads_all(text for row in rows for text in _json_fields(row))
        return [
            self._trial(row, intermediate.get(row.id, {}), *fields[4 * i : 4 * i + 4])
            for i, row in enumerate(rows)
        ]

    def _get_trial(self, conn: sa.Connection, trial_id: int) -> FrozenTrial:
        """One trial without reports, read."""
        return self._decoded(conn.execute(_TRIAL, {"trial_id": trial_id}).one())

    def _decoded(self, row: Any) -> FrozenTrial:
        """One trial from its row, without reports."""
        return self._trial(row, {}, *_loads_all(_json_fields(row)))

    @staticmethod
    def _trial(
        row: Any,
        intermediate: dict[int, dict[str, float]],
        params: dict[str, Any] | None,
        metrics: dict[str, float] | None,
        proposal: dict[str, Any] | None,
        attrs: dict[str, Any] | None,
    ) -> FrozenTrial:
        """A trial from its row and its JSON columns, decoded (None where NULL)."""
        return FrozenTrial(
            id=row.id,
            number=row.number,
            state=_STATES[row.state],
            params=params,
            value=row.value,
            metrics=metrics or {},
            intermediate=intermediate,
            seed=row.seed,
            source=row.source,
            proposal=proposal or {},
            error=row.error,
            started_at=row.started_at,
            finished_at=row.finished_at,
            heartbeat_at=row.heartbeat_at,
            owner=row.owner,
            retries=row.retries,
            revision=row.revision,
            attrs=attrs or {},
        )


def _json_fields(row: Any) -> tuple[str | None, ...]:
    """A trial row's JSON columns, in the order :meth:`SQLStorage._trial` takes them."""
    return row.params, row.metrics, row.proposal, row.attrs


_STATES = {state.value: state for state in TrialState}
