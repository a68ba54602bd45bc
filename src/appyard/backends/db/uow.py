"""SQLAlchemy implementation of core.ports.UnitOfWork, for SQLite and PostgreSQL: one
connection and one transaction per unit of work, with the repositories of repos/.
Database errors are translated at this edge (unique violation -> core Conflict, rows.py)."""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager

from sqlalchemy import Connection, Engine

from appyard.backends.db.engine import BUSY_TIMEOUT, READ_ONLY
from appyard.backends.db.repos.builds import (
    AppRepo,
    BuildRepo,
    ControlRepo,
    FindingRepo,
    RetentionRepo,
    UploadRepo,
)
from appyard.backends.db.repos.going_out import (
    MailDeliveryRepo,
    MemberRepo,
    WebhookDeliveryRepo,
    WebhookRepo,
)
from appyard.backends.db.repos.jobs import JobRepo, OutboxRepo
from appyard.backends.db.repos.sharing import InstallDownloadRepo, InstallLinkRepo
from appyard.backends.db.repos.signing import SigningKeyRepo
from appyard.backends.db.repos.store import EventRepo, IssueRepo, RunRepo, VersionRepo
from appyard.backends.db.repos.tenancy import (
    SequenceRepo,
    SessionRepo,
    TenantRepo,
    ThrottleRepo,
    TokenRepo,
    UserRepo,
)
from appyard.core import ports

log = logging.getLogger("appyard.db")


class _Savepoint:
    def __init__(self, conn: Connection) -> None:
        self._tx = conn.begin_nested()

    def rollback(self) -> None:
        if self._tx.is_active:
            self._tx.rollback()


class SqlUnitOfWork:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self._after_commit: list[Callable[[], None]] = []
        self.tenants: ports.TenantRepo = TenantRepo(conn)
        self.tokens: ports.TokenRepo = TokenRepo(conn)
        self.apps: ports.AppRepo = AppRepo(conn)
        self.builds: ports.BuildRepo = BuildRepo(conn)
        self.uploads: ports.UploadRepo = UploadRepo(conn)
        self.jobs: ports.JobRepo = JobRepo(conn)
        self.controls: ports.ControlRepo = ControlRepo(conn)
        self.findings: ports.FindingRepo = FindingRepo(conn)
        self.users: ports.UserRepo = UserRepo(conn)
        self.sessions: ports.SessionRepo = SessionRepo(conn)
        self.versions: ports.VersionRepo = VersionRepo(conn)
        self.runs: ports.RunRepo = RunRepo(conn)
        self.events: ports.EventRepo = EventRepo(conn)
        self.issues: ports.IssueRepo = IssueRepo(conn)
        self.signing_keys: ports.SigningKeyRepo = SigningKeyRepo(conn)
        self.outbox: ports.OutboxRepo = OutboxRepo(conn)
        self.sequences: ports.SequenceRepo = SequenceRepo(conn)
        self.members: ports.MemberRepo = MemberRepo(conn)
        self.mail_deliveries: ports.MailDeliveryRepo = MailDeliveryRepo(conn)
        self.webhooks: ports.WebhookRepo = WebhookRepo(conn)
        self.webhook_deliveries: ports.WebhookDeliveryRepo = WebhookDeliveryRepo(conn)
        self.install_links: ports.InstallLinkRepo = InstallLinkRepo(conn)
        self.install_downloads: ports.InstallDownloadRepo = InstallDownloadRepo(conn)
        self.sign_in_throttle: ports.ThrottleRepo = ThrottleRepo(conn)
        self.retention: ports.RetentionRepo = RetentionRepo(conn)

    def commit(self) -> None:
        self.conn.commit()
        callbacks, self._after_commit = self._after_commit, []
        for callback in callbacks:
            try:
                callback()
            except Exception:  # what follows a commit never undoes it
                log.exception("uow.after_commit_failed")

    def rollback(self) -> None:
        self.conn.rollback()
        self._after_commit = []

    def after_commit(self, callback: Callable[[], None]) -> None:
        self._after_commit.append(callback)

    @contextmanager
    def savepoint(self) -> Iterator[ports.Savepoint]:
        point = _Savepoint(self.conn)
        try:
            yield point
        except BaseException:
            point.rollback()
            raise
        if point._tx.is_active:
            point._tx.commit()


class _ReadUnitOfWork(SqlUnitOfWork):
    open = False  # inside a ``read`` block (a kept one is not lent to a nested read then)

    def commit(self) -> None:
        raise RuntimeError("a read-only unit of work cannot be committed")


_GATES: dict[str, threading.RLock] = {}
_GATES_LOCK = threading.Lock()


def write_gate(engine: Engine) -> threading.RLock:
    """The one lock of this process that its units of work writing to ``engine``'s SQLite
    file take before ``BEGIN IMMEDIATE`` and give back after the commit or rollback.

    SQLite lets one transaction write at a time and makes the others wait in its busy handler,
    which polls the lock with sleeps of 1, 2, 5, 10, ... up to 100 ms: a writer that arrived
    while another wrote for 2 ms slept 5, 10 or 25 more. Under load (build jobs, upload
    completions, new uploads), waits for ``BEGIN IMMEDIATE`` reached 30-250 ms while the lock
    was free most of that time (bench/README.md, "2026-12-06, second session"). Waiting
    on this lock instead, a writer of the same process starts the moment the previous one
    ends; writers of other processes (the CLI, an `appyard worker` beside `serve`) still meet
    SQLite's busy handler. Re-entrant, so that a nested unit of work fails on SQLite's lock, as
    it did, rather than hanging on this one."""
    key = engine.url.render_as_string(hide_password=True)
    with _GATES_LOCK:
        return _GATES.setdefault(key, threading.RLock())


class SqlUnitOfWorkFactory:
    """``with factory() as uow: ...; uow.commit()``: uncommitted work is rolled back.
    ``with factory.read() as uow: ...``: reads in a transaction that takes no write lock."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.reads_in_process = engine.dialect.name == "sqlite"
        self._gate = write_gate(engine) if self.reads_in_process else None
        self._local = threading.local()
        # Every kept connection goes back to the pool with the factory (or at exit), not to
        # the garbage collector.
        self._kept_conns: list[Connection] = []
        weakref.finalize(self, _close_all, self._kept_conns)

    @contextmanager
    def __call__(self) -> Iterator[ports.UnitOfWork]:
        with self._gated(), self.engine.connect() as conn:
            conn.begin()
            try:
                yield SqlUnitOfWork(conn)
            finally:
                if conn.in_transaction():
                    conn.rollback()

    @contextmanager
    def _gated(self) -> Iterator[None]:
        """Hold this process's write gate (SQLite) for the unit of work. A writer that waited
        SQLite's busy timeout for it goes on to SQLite's own lock, as it did before the gate:
        a unit of work that never ends makes the others fail after that timeout, not hang."""
        gate = self._gate
        if gate is None or not gate.acquire(timeout=BUSY_TIMEOUT):
            yield
            return
        try:
            yield
        finally:
            gate.release()

    @contextmanager
    def read(self, *, keep: bool = False) -> Iterator[ports.UnitOfWork]:
        with ExitStack() as pooled:
            uow = self._kept() if keep and self.reads_in_process else None
            if uow is None:  # a pooled connection, given back on leaving
                uow = self._reading(pooled.enter_context(self.engine.connect()))
            # No BEGIN of its own: SQLAlchemy begins at the first statement it runs. On SQLite
            # a read runs outside any transaction (engine.py), and a lookup on the cursor
            # (rows.first) runs no statement of SQLAlchemy's: nothing to begin or roll back.
            uow.open = True
            try:
                yield uow
            finally:
                uow.open = False
                if uow.conn.in_transaction():
                    uow.conn.rollback()

    def _kept(self) -> _ReadUnitOfWork | None:
        """This thread's kept read unit of work. On SQLite reads run outside any transaction,
        so a connection kept between them holds no lock and no snapshot; taking one from the
        pool and giving it back (then with a begin and a rollback) cost more than the two
        lookups of a status poll (bench/README.md, "2026-12-06, third session"). None while
        one of its reads is open: a nested read takes a connection of its own."""
        kept: _ReadUnitOfWork | None = getattr(self._local, "read", None)
        if kept is None or kept.conn.closed or kept.conn.invalidated:
            kept = self._local.read = self._reading(self.engine.connect())
            self._kept_conns.append(kept.conn)
        return None if kept.open else kept

    @staticmethod
    def _reading(conn: Connection) -> _ReadUnitOfWork:
        """A read unit of work on ``conn`` (its statements take no write lock: engine.py)."""
        conn.execution_options(**{READ_ONLY: True})
        return _ReadUnitOfWork(conn)


def _close_all(conns: list[Connection]) -> None:
    for conn in conns:
        conn.close()
