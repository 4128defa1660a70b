"""A PostgreSQL connection lost mid-study: retried on a new connection, then one line; never a
lost, doubled or half-written trial (a real server; .ci/run starts one, see .ci/postgres).

The storage reaches the server through a small TCP proxy that each test drives: it cuts every
connection, refuses new ones for a while, or swallows a COMMIT or its answer. Set
TUNELAB_TEST_POSTGRES_URL to a server's URL to run these here; without it they skip, except
under CI, where a missing server is a failure.
"""

import logging
import os
import random
import re
import socket
import threading

import pytest
import sqlalchemy as sa
from sqlalchemy import event

from tunelab import Float, Study, TrialState
from tunelab.errors import StorageError
from tunelab.events import logger
from tunelab.storage import SQLStorage
from tunelab.storage.base import StorageUnavailable, StudyNameTaken, TrialNumberTaken

URL = os.environ.get("TUNELAB_TEST_POSTGRES_URL")

if URL is None and os.environ.get("CI"):
    pytest.fail("CI must run the PostgreSQL tests: .ci/run sets TUNELAB_TEST_POSTGRES_URL")
pytestmark = pytest.mark.skipif(URL is None, reason="TUNELAB_TEST_POSTGRES_URL is not set")

SPACE = {"x": Float(-5, 5)}


class Proxy:
    """A TCP proxy on 127.0.0.1 to the server. ``cut()`` closes every connection through it,
    ``down()`` also refuses new ones until ``up()``; ``drop`` ("requests" or "replies") swallows
    what flows in one direction (until the next cut)."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.port = 0
        self.drop: str | None = None
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self._listener: socket.socket | None = None
        self.up()

    def up(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))  # the same port again after down()
        listener.listen(64)
        self.port = listener.getsockname()[1]
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def down(self) -> None:
        _close(self._listener)
        self.cut()

    def cut(self) -> None:
        with self._lock:
            self.drop = None
            sockets, self._open = self._open, set()
        for sock in sockets:
            _close(sock)

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # down()
            try:
                server = socket.create_connection(self.target)
            except OSError:
                _close(client)
                continue
            with self._lock:
                self._open |= {client, server}
            for source, sink, kind in [(client, server, "requests"), (server, client, "replies")]:
                threading.Thread(target=self._pump, args=(source, sink, kind), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, kind: str) -> None:
        try:
            while data := source.recv(65536):
                if self.drop != kind:
                    sink.sendall(data)
        except OSError:
            pass
        finally:
            _close(source)
            _close(sink)


def _close(sock: socket.socket | None) -> None:
    if sock is None:
        return
    try:
        sock.shutdown(socket.SHUT_RDWR)  # wakes a thread blocked in recv() or accept()
    except OSError:
        pass
    sock.close()


@pytest.fixture
def proxy(database_url):
    server = sa.make_url(database_url)
    proxy = Proxy(server.host or "127.0.0.1", server.port or 5432)
    yield proxy
    proxy.down()


@pytest.fixture
def proxied_url(database_url, proxy):
    url = sa.make_url(database_url).set(host="127.0.0.1", port=proxy.port)
    return url.render_as_string(hide_password=False)


@pytest.fixture
def warnings(caplog, monkeypatch):
    """The tunelab logger's warnings (it does not propagate to the root logger by default)."""
    monkeypatch.setattr(logger, "propagate", True)
    with caplog.at_level(logging.WARNING, logger="tunelab"):
        yield lambda: [r.getMessage() for r in caplog.records if r.name == "tunelab"]


def reporting(cut_at=(), action=lambda: None):
    """A trivial objective with three reports, which calls ``action`` in trials ``cut_at``
    (between two storage calls)."""

    def objective(trial):
        for step in range(3):
            trial.report(step, value=trial.params["x"] ** 2 + step)
        if trial.number in cut_at:
            action()
        return trial.params["x"] ** 2

    return objective


def assert_complete_once(trials, n):
    """Trials 0..n-1, each recorded once, complete with its value and three reports, none run
    twice."""
    assert [t.number for t in trials] == list(range(n))
    assert all(t.state is TrialState.COMPLETE for t in trials)
    assert all(t.value == t.params["x"] ** 2 for t in trials)
    assert all(sorted(t.intermediate) == [0, 1, 2] for t in trials)
    assert len({t.params["x"] for t in trials}) == n


def test_a_study_survives_every_connection_cut_again_and_again(proxy, proxied_url, warnings):
    """Cuts between storage calls (in the objective) and at random moments (mid-transaction,
    mid-COMMIT): every trial completes, each number once."""
    storage = SQLStorage(proxied_url, retry_s=30)
    study = Study("cuts", storage=storage, direction="minimize", seed=0)
    done = threading.Event()

    def cut_at_random():
        rng = random.Random(0)
        while not done.wait(rng.uniform(0.01, 0.1)):
            proxy.cut()

    cutter = threading.Thread(target=cut_at_random, daemon=True)
    cutter.start()
    try:
        study.optimize(reporting(cut_at={3, 8, 13, 21}, action=proxy.cut), SPACE, trials=30)
    finally:
        done.set()
        cutter.join()
    trials = study.trials
    assert_complete_once(trials, 30)
    assert all(t.retries == 0 for t in trials), "a trial was orphaned and run again"
    lost = [m for m in warnings() if "lost the connection" in m]
    back = [m for m in warnings() if "is back after" in m]
    assert len(lost) >= 4 and len(back) == len(lost)
    storage.close()


def test_a_server_gone_past_the_window_stops_the_driver_in_one_line_then_resume_works(
    proxy, proxied_url, database_url, warnings
):
    storage = SQLStorage(proxied_url, retry_s=2)
    study = Study("outage", storage=storage, direction="minimize", seed=0)
    with pytest.raises(StorageUnavailable) as stopped:
        study.optimize(reporting(cut_at={5}, action=proxy.down), SPACE, trials=12)
    message = str(stopped.value)
    assert "\n" not in message
    server = f"127.0.0.1:{proxy.port}/{sa.make_url(database_url).database}"
    assert message.startswith(
        f"storage: lost the connection to the PostgreSQL server at {server} and it did not "
        "come back within 2 s (last error: "
    )
    assert "every trial recorded before is safe" in message
    assert message.endswith(f"continue with: tunelab resume STUDY --storage {proxied_url}")
    [lost] = [m for m in warnings() if "lost the connection" in m]
    assert re.fullmatch(
        rf"storage: lost the connection to {re.escape(server)} \(.*server closed the "
        r"connection unexpectedly\); retrying for up to 2 s",
        lost,
    )

    direct = SQLStorage(database_url)  # what the server holds, read past the proxy
    trials = direct.get_trials(direct.get_study("outage").id)
    assert_complete_once(trials[:5], 5)
    assert [(t.number, t.state) for t in trials[5:]] == [(5, TrialState.RUNNING)]

    proxy.up()
    Study("outage", storage=storage, direction="minimize").optimize(reporting(), SPACE, trials=12)
    trials = direct.get_trials(direct.get_study("outage").id)
    assert_complete_once(trials, 12)
    assert [t.number for t in trials if t.retries] == [5]  # the interrupted one, run again
    assert [m for m in warnings() if "is back after" in m]
    direct.close()
    storage.close()


def test_a_backend_terminated_between_calls_is_survived(database_url):
    storage = SQLStorage(database_url, retry_s=30)
    database = sa.make_url(database_url).database
    admin = sa.create_engine(URL, isolation_level="AUTOCOMMIT")
    terminated = []

    def terminate():
        with admin.connect() as conn:
            killed = conn.execute(
                sa.text(
                    "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) "
                    "FROM pg_stat_activity WHERE datname = :db AND pid <> pg_backend_pid()"
                ),
                {"db": database},
            ).scalar_one()
        terminated.append(killed)

    study = Study("killed", storage=storage, direction="minimize", seed=0)
    study.optimize(reporting(cut_at={2, 5, 9}, action=terminate), SPACE, trials=12)
    assert terminated and all(terminated), "no backend was terminated: the test tested nothing"
    trials = study.trials
    assert_complete_once(trials, 12)
    assert all(t.retries == 0 for t in trials)
    admin.dispose()
    storage.close()


@pytest.mark.parametrize("drop", ["replies", "requests"])
def test_a_write_whose_commit_goes_unanswered_counts_exactly_once(proxy, proxied_url, drop):
    """The connection dies while COMMIT is on the wire: with ``replies`` dropped the server
    committed and only the answer was lost (running the write again would be refused, or
    queue and claim twice); with ``requests`` dropped it never saw the COMMIT (it must run
    again)."""
    storage = SQLStorage(proxied_url, retry_s=30)
    fired = []

    @event.listens_for(storage._engine, "commit")
    def lose_the_commit(conn):
        if not fired:
            fired.append(True)
            proxy.drop = drop  # COMMIT goes out next; then, a moment later, everything is cut
            threading.Timer(0.3, proxy.cut).start()

    def unanswered(write):
        fired.clear()
        result = write()
        assert fired, "no COMMIT was cut: the test tested nothing"
        return result

    study = unanswered(lambda: storage.create_study("s", "minimize", "value"))
    created = unanswered(lambda: storage.create_trial(study.id, 0, "me", {"x": 1.0}, 7, {}))
    queued = unanswered(lambda: storage.enqueue_trial(study.id, {"x": 2.0}))
    claimed = unanswered(lambda: storage.claim_trial(study.id, "me"))
    unanswered(lambda: storage.add_report(claimed.id, 0, {"value": 5.0}, "me"))
    unanswered(lambda: storage.finish_trial(created.id, TrialState.COMPLETE, 1.0, owner="me"))
    unanswered(lambda: storage.finish_trial(claimed.id, TrialState.COMPLETE, 4.0, owner="me"))
    assert unanswered(lambda: storage.swap_study_attr(study.id, "claim", None, "me"))

    assert claimed.id == queued.id
    assert [s.name for s in storage.list_studies()] == ["s"]
    trials = storage.get_trials(study.id)
    assert [(t.number, t.state, t.value, t.retries) for t in trials] == [
        (0, TrialState.COMPLETE, 1.0, 0),
        (1, TrialState.COMPLETE, 4.0, 0),
    ]
    assert trials[1].intermediate == {0: {"value": 5.0}}
    assert storage.get_study("s").attrs == {"claim": "me"}
    storage.close()


def test_a_constraint_error_is_not_retried(proxied_url, warnings):
    storage = SQLStorage(proxied_url, retry_s=30)
    study = storage.create_study("s", "minimize", "value")
    storage.create_trial(study.id, 0, "me", {"x": 1.0}, 7, {})
    runs = []

    def insert_taken_number(conn):
        runs.append(1)
        conn.execute(
            sa.text(
                "INSERT INTO tunelab_trials (study_id, number, state, source, retries, "
                "updated_at, revision) VALUES (:study, 0, 'WAITING', 'queue', 0, 0, 0)"
            ),
            {"study": study.id},
        )

    with pytest.raises(sa.exc.IntegrityError):
        storage._transaction(insert_taken_number)
    assert runs == [1]
    with pytest.raises(TrialNumberTaken):
        storage.create_trial(study.id, 0, "you", {"x": 2.0}, 8, {})
    with pytest.raises(StudyNameTaken):
        storage.create_study("s", "minimize", "value")
    with pytest.raises(StorageError, match="syntax error"):
        storage._transaction(lambda conn: runs.append(1) or conn.exec_driver_sql("SELEC 1"))
    assert runs == [1, 1]
    assert not warnings(), "a refusal was taken for a lost connection"
    storage.close()


def test_a_server_never_reached_or_a_missing_database_fails_at_once(
    proxy, proxied_url, database_url, warnings
):
    """Not retried: a wrong URL should say so now, not in a minute."""
    missing = sa.make_url(database_url).set(database="tunelab_no_such_database")
    with pytest.raises(StorageError, match="does not exist"):
        SQLStorage(missing.render_as_string(hide_password=False), retry_s=600)
    proxy.down()
    with pytest.raises(StorageError, match="Connection refused") as refused:
        SQLStorage(proxied_url, retry_s=600)
    assert not isinstance(refused.value, StorageUnavailable)
    assert not warnings()
