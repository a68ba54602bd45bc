"""The hot lookups by key (a token with its tenant, a tenant, a build by number), which on
SQLite run on the connection's own cursor past SQLAlchemy's result objects
(``rows.first``): they return what SQLAlchemy's own execution returns, read inside the unit of
work's transaction, and find nothing where there is nothing; and the read connection a thread
keeps (``read(keep=True)``, the event loop's) sees every commit and is that thread's alone.
Runs on SQLite and, with APPYARD_DATABASE_URL, on PostgreSQL (where ``first`` is SQLAlchemy's
and nothing is kept)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import Connection, Engine, select

from appyard.backends.db import tables as t
from appyard.backends.db.engine import make_engine
from appyard.backends.db.repos.tenancy import _TENANT, _TOKEN_WITH_TENANT, tenant_of
from appyard.backends.db.rows import first, to_obj
from appyard.backends.db.uow import SqlUnitOfWork, SqlUnitOfWorkFactory
from appyard.core import identity, tenants
from appyard.core.models import Plan, Token, TokenKind
from tests.conftest import FakeClock


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = make_engine(database_url)
    yield engine
    engine.dispose()


def test_a_token_and_its_tenant_read_as_sqlalchemy_reads_them(engine: Engine) -> None:
    factory, clock = SqlUnitOfWorkFactory(engine), FakeClock()
    with factory() as uow:
        tenant = tenants.create(uow, clock, name="acme", plan=Plan.ENTERPRISE)
        issued = identity.create_token(
            uow,
            clock,
            tenant_id=tenant.id,
            kind=TokenKind.AUTOMATION,
            expires_at=clock.now() + timedelta(days=3),
        )
        uow.commit()

    with factory.read() as uow:
        found = uow.tokens.get_with_tenant(issued.token.id)
        assert isinstance(uow, SqlUnitOfWork)
        row = uow.conn.execute(_TOKEN_WITH_TENANT, {"token_id": issued.token.id}).first()
        assert row is not None
        by_sqlalchemy = (to_obj(Token, row), tenant_of(row, _TENANT))
        assert uow.tokens.get_with_tenant("ak_" + "0" * 20) is None
        assert uow.tenants.get(tenant.id) == tenant

    assert found == by_sqlalchemy
    token, read_tenant = found
    assert token == issued.token and read_tenant == tenant
    assert token.expires_at is not None and token.expires_at.tzinfo is not None
    assert token.kind is TokenKind.AUTOMATION and token.disabled is False


def test_a_lookup_inside_a_write_sees_what_the_transaction_wrote_and_nothing_after_rollback(
    engine: Engine,
) -> None:
    factory, clock = SqlUnitOfWorkFactory(engine), FakeClock()
    with factory() as uow:
        tenant = tenants.create(uow, clock, name="draft", plan=Plan.TEAM)
        assert uow.tenants.get(tenant.id) == tenant  # not committed yet: same transaction
        uow.rollback()
    with factory.read() as uow:
        assert uow.tenants.get(tenant.id) is None
        assert isinstance(uow, SqlUnitOfWork)
        statement = select(t.tenants).where(t.tenants.c.id == tenant.id)
        assert first(uow.conn, statement, {}) is None


def test_a_kept_read_connection_sees_every_commit_and_belongs_to_one_thread(
    engine: Engine,
) -> None:
    factory, clock = SqlUnitOfWorkFactory(engine), FakeClock()
    kept_here = factory.reads_in_process  # SQLite keeps it; a server database does not

    def read_conn() -> Connection:
        with factory.read(keep=True) as uow:
            assert isinstance(uow, SqlUnitOfWork)
            return uow.conn

    first_conn = read_conn()
    with factory() as uow:
        tenant = tenants.create(uow, clock, name="later", plan=Plan.TEAM)
        uow.commit()
    with factory.read(keep=True) as uow:
        assert uow.tenants.get(tenant.id) == tenant  # no snapshot held between reads
        assert isinstance(uow, SqlUnitOfWork)
        assert (uow.conn is first_conn) is kept_here
        with factory.read(keep=True) as nested:
            assert isinstance(nested, SqlUnitOfWork) and nested.conn is not uow.conn
            assert nested.tenants.get(tenant.id) == tenant

    with factory.read(keep=True) as uow:  # a statement of SQLAlchemy's begins a transaction
        assert isinstance(uow, SqlUnitOfWork)
        assert uow.tokens.list(tenant.id) == []
        conn = uow.conn
    assert not conn.in_transaction()  # and the block's end ends it: no snapshot kept
    assert read_conn() is conn or not kept_here

    elsewhere: list[Connection] = []
    thread = threading.Thread(target=lambda: elsewhere.append(read_conn()))
    thread.start()
    thread.join(30)
    assert elsewhere and elsewhere[0] is not first_conn
