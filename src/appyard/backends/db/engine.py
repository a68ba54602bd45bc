"""Engines for SQLite (the embedded shape) and PostgreSQL, from one URL.

SQLite runs in WAL mode with a busy timeout and ``BEGIN IMMEDIATE`` transactions, so
concurrent writers queue instead of failing (the writers of one process queue on a lock of
their own first: ``uow.write_gate``); a connection marked :data:`READ_ONLY` (the units
of work of ``SqlUnitOfWorkFactory.read``) begins no transaction at all: each of its statements
reads a snapshot of its own (WAL mode), neither waiting for the writer nor making it wait, and
a status poll spends no time on ``BEGIN`` and ``ROLLBACK`` (a fifth of its reading time).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event

BUSY_TIMEOUT = 30  # seconds a SQLite writer waits for the write lock before it fails
READ_ONLY = "appyard_read_only"  # execution option: this connection's transactions only read
# Kept open: the request threads (anyio's default limit is 40) and the worker threads each hold
# one at a time. With SQLAlchemy's default (5 + 10 overflow) every request past the fifth
# opened and closed a connection of its own (a connect and four PRAGMAs per request).
SQLITE_POOL_SIZE = 48
SQLITE_POOL_OVERFLOW = 16


def make_engine(url: str) -> Engine:
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    if url.startswith("sqlite"):
        engine = create_engine(
            url,
            connect_args={"timeout": BUSY_TIMEOUT, "check_same_thread": False},
            pool_size=SQLITE_POOL_SIZE,
            max_overflow=SQLITE_POOL_OVERFLOW,
            pool_use_lifo=True,
        )

        @event.listens_for(engine, "connect")
        def _sqlite_setup(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT * 1000}")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn: Connection) -> None:
            if not conn.get_execution_options().get(READ_ONLY, False):
                conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)
