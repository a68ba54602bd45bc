"""Units of work writing to SQLite from many threads of one process (the embedded default:
request threads, upload transfer threads and build jobs all write): every write lands, none
waits on a writer that has ended, and reads go on while a write is open. The promptness
itself is measured in bench/load.py, not here."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import Connection, text

from appyard.backends.db.engine import make_engine
from appyard.backends.db.uow import SqlUnitOfWork, SqlUnitOfWorkFactory, write_gate
from appyard.core.ports import UnitOfWork

JOIN = 60.0  # only catches a hang


@pytest.fixture
def factory(tmp_path: Path) -> SqlUnitOfWorkFactory:
    engine = make_engine(f"sqlite:///{tmp_path / 'gate.db'}")
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE counter (n INTEGER NOT NULL)")
        conn.exec_driver_sql("INSERT INTO counter VALUES (0)")
    return SqlUnitOfWorkFactory(engine)


def sql(uow: UnitOfWork) -> Connection:
    assert isinstance(uow, SqlUnitOfWork)
    return uow.conn


def count(factory: SqlUnitOfWorkFactory) -> int:
    with factory.read() as uow:
        return int(sql(uow).execute(text("SELECT n FROM counter")).scalar_one())


def increment(factory: SqlUnitOfWorkFactory) -> None:
    with factory() as uow:
        conn = sql(uow)
        n = conn.execute(text("SELECT n FROM counter")).scalar_one()
        conn.execute(text("UPDATE counter SET n = :n"), {"n": n + 1})
        uow.commit()


def run_threads(target: Callable[[], None], count_: int) -> list[BaseException]:
    failures: list[BaseException] = []

    def guarded() -> None:
        try:
            target()
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=guarded) for _ in range(count_)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(JOIN)
        assert not t.is_alive(), "a writer hung"
    return failures


def test_concurrent_writers_all_land(factory: SqlUnitOfWorkFactory) -> None:
    def many() -> None:
        for _ in range(25):
            increment(factory)

    assert run_threads(many, 8) == []
    assert count(factory) == 200  # read-modify-write in each: no lost update


def test_a_failed_unit_of_work_frees_the_next_writer(factory: SqlUnitOfWorkFactory) -> None:
    def failing() -> None:
        with factory() as uow:
            sql(uow).execute(text("UPDATE counter SET n = 99"))
            raise ValueError("the work failed")

    failures = run_threads(failing, 3)
    assert [type(f) for f in failures] == [ValueError] * 3
    assert run_threads(lambda: increment(factory), 3) == []
    assert count(factory) == 3  # the failed updates were rolled back


def test_reads_go_on_while_a_write_is_open(factory: SqlUnitOfWorkFactory) -> None:
    inside = threading.Event()
    release = threading.Event()

    def slow_writer() -> None:
        with factory() as uow:
            sql(uow).execute(text("UPDATE counter SET n = 7"))
            inside.set()
            assert release.wait(JOIN)
            uow.commit()

    writer = threading.Thread(target=slow_writer)
    writer.start()
    assert inside.wait(JOIN)
    seen: list[int] = []
    reader = threading.Thread(target=lambda: seen.append(count(factory)))
    reader.start()
    reader.join(JOIN)
    assert not reader.is_alive() and seen == [0]  # the committed state, without waiting
    release.set()
    writer.join(JOIN)
    assert count(factory) == 7


def test_one_gate_per_database_file(tmp_path: Path) -> None:
    a1 = make_engine(f"sqlite:///{tmp_path / 'a.db'}")
    a2 = make_engine(f"sqlite:///{tmp_path / 'a.db'}")
    b = make_engine(f"sqlite:///{tmp_path / 'b.db'}")
    assert write_gate(a1) is write_gate(a2)  # two engines on one file: one queue of writers
    assert write_gate(a1) is not write_gate(b)
