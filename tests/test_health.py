"""Readiness (/readyz): the database at the migration head, the store usable, the queue
answering; 503 naming the part that fails, on real backends (SQLite, PostgreSQL's port,
redis-server, the local store's directory)."""

from __future__ import annotations

import shutil
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.applications import Starlette
from starlette.testclient import TestClient

from appyard.backends.db import migrate
from appyard.backends.db.engine import make_engine
from appyard.backends.queue.embedded import EmbeddedQueue
from appyard.backends.queue.redis import RedisQueue
from appyard.backends.storage.local import LocalBlobStore
from appyard.health import readyz
from appyard.runtime import Runtime
from tests.backends.services import PrivateRedis
from tests.conftest import free_port


def get_readyz(
    runtime: Runtime, timeout: float = 3, **parts: object
) -> tuple[int, dict[str, object]]:
    """``GET /readyz`` on an app with the route, the runtime's parts unless replaced."""
    engine = parts.get("engine", runtime.engine)
    store = parts.get("store", runtime.services.store)
    queue = parts.get("queue", runtime.services.queue)
    app = Starlette()
    app.add_route("/readyz", readyz(engine, store, queue, timeout=timeout), methods=["GET"])  # type: ignore[arg-type]
    with TestClient(app) as client:
        response = client.get("/readyz")
    return response.status_code, response.json()


def test_a_migrated_database_a_store_and_a_queue_are_ready(runtime: Runtime) -> None:
    status, body = get_readyz(runtime)

    assert status == 200
    assert body == {
        "status": "ready",
        "failing": [],
        "checks": {"database": "ok", "store": "ok", "queue": "ok"},
    }


def test_a_database_behind_the_code_is_not_ready_and_says_to_upgrade(
    runtime: Runtime, tmp_path: Path
) -> None:
    empty = make_engine(f"sqlite:///{tmp_path / 'empty.db'}")
    older = make_engine(f"sqlite:///{tmp_path / 'older.db'}")
    migrate.upgrade(older, "0003")
    try:
        for engine, at in ((empty, "none"), (older, "0003")):
            status, body = get_readyz(runtime, engine=engine)

            assert status == 503 and body["failing"] == ["database"]
            checks = body["checks"]
            assert isinstance(checks, dict)
            assert checks["database"] == (
                f"The database is at migration {at}, this code needs {migrate.head()}: "
                "run `appyard db upgrade`."
            )
    finally:
        empty.dispose()
        older.dispose()


def test_an_unreachable_database_is_named(runtime: Runtime) -> None:
    engine = make_engine(f"postgresql://appyard@127.0.0.1:{free_port()}/appyard")
    try:
        status, body = get_readyz(runtime, engine=engine)
    finally:
        engine.dispose()

    assert status == 503 and body["failing"] == ["database"]
    assert str(body["checks"]["database"]).startswith("The database cannot be reached (")  # type: ignore[index]


def test_a_blob_directory_that_is_gone_is_named(runtime: Runtime, tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path / "blobs", public_url="http://x", secret=b"s" * 32)
    shutil.rmtree(store.objects)

    status, body = get_readyz(runtime, store=store)

    assert status == 503 and body["failing"] == ["store"]
    assert body["checks"]["store"] == f"The blob directory {store.objects} does not exist."  # type: ignore[index]


def test_a_stopped_redis_is_named_and_its_return_noticed(
    runtime: Runtime, private_redis: PrivateRedis
) -> None:
    queue = RedisQueue(private_redis.url)
    try:
        assert get_readyz(runtime, queue=queue)[0] == 200
        private_redis.stop()

        status, body = get_readyz(runtime, queue=queue)
        assert status == 503 and body["failing"] == ["queue"]
        message = str(body["checks"]["queue"])  # type: ignore[index]
        assert message.startswith(f"Redis at {private_redis.url} cannot be reached (")

        private_redis.start()
        assert get_readyz(runtime, queue=queue)[0] == 200
    finally:
        queue.close()


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A TCP port that accepts connections and never answers (a hung dependency)."""
    listener = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                accepted.append(listener.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield listener.getsockname()[1]
    stop.set()
    thread.join()
    for conn in accepted:
        conn.close()
    listener.close()


def test_a_queue_that_does_not_answer_is_named_within_the_time_limit(
    runtime: Runtime, silent_server: int
) -> None:
    queue = RedisQueue(f"redis://127.0.0.1:{silent_server}/0")
    try:
        status, body = get_readyz(runtime, timeout=0.5, queue=queue)
        assert status == 503 and body["failing"] == ["queue"]
        assert body["checks"]["queue"] == "The queue did not answer within 0.5 s."  # type: ignore[index]

        status, body = get_readyz(runtime, timeout=5, queue=queue)  # the probe's own limit
        assert status == 503
        assert str(body["checks"]["queue"]).startswith(f"Redis at {queue.shown_url} cannot")  # type: ignore[index]
    finally:
        queue.close()


def test_the_embedded_queue_is_always_ready() -> None:
    EmbeddedQueue().check()
