"""Backend fixtures: every contract test runs over every implementation.

* ``blob_store`` / ``make_blob_store``: ``local`` (a LocalBlobStore whose signed URLs are served
  over real HTTP by ``local_http`` on loopback) and ``s3`` (an S3BlobStore on SeaweedFS, see
  ``tests/backends/services.py``). Each test gets its own key prefix.
* ``job_queue`` / ``make_job_queue``: ``embedded`` and ``redis`` (the Redis at 127.0.0.1:6379,
  or ``APPYARD_TEST_REDIS_URL``), one list per test.
* ``private_redis``: a redis-server of the test's own on a free port, for restarting it.
* ``listener``: the blob listener of ``appyard serve`` over the test module's ``store``.

A missing service skips locally and fails in CI (``need``).
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator

import pytest
import redis
import uvicorn
from starlette.applications import Starlette
from starlette.routing import Mount

from appyard.backends.queue.embedded import EmbeddedQueue
from appyard.backends.queue.redis import RedisQueue
from appyard.backends.storage.local import LocalBlobStore
from appyard.backends.storage.local_http import blob_app
from appyard.backends.storage.local_listener import BlobListener
from appyard.backends.storage.s3 import MIN_PART_SIZE, S3BlobStore
from appyard.core.ports import BlobStore, JobQueue
from tests.backends.services import PrivateRedis, S3Server
from tests.conftest import free_port, wait_for_port

__all__ = ["MakeBlobStore", "MakeJobQueue", "PrivateRedis"]


# --- local store served over real HTTP ----------------------------------------------------------


class BlobHttp:
    """One loopback HTTP server; each local store's signed URLs are mounted under its name."""

    def __init__(self) -> None:
        self.app = Starlette()
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_level="warning",
                                lifespan="off", ws="none")  # fmt: skip
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True, name="blob-http")

    def start(self) -> None:
        self.thread.start()
        wait_for_port(self.port)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)

    def mount(self, name: str, store: LocalBlobStore) -> None:
        self.app.router.routes.append(Mount(f"/{name}/_blob", blob_app(store)))


@pytest.fixture(scope="session")
def blob_http() -> Iterator[BlobHttp]:
    server = BlobHttp()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def listener(store: LocalBlobStore) -> Iterator[BlobListener]:
    """The blob listener of `appyard serve` over the test module's ``store`` fixture."""
    srv = BlobListener(store, "127.0.0.1", 0)
    srv.start()
    yield srv
    srv.stop()


# --- blob_store ---------------------------------------------------------------------------------

MakeBlobStore = Callable[[str], BlobStore]


@pytest.fixture(params=["local", "s3"])
def make_blob_store(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> MakeBlobStore:
    """``make(prefix)``: a store of this test's kind whose keys live under ``prefix``."""
    run = uuid.uuid4().hex[:10]
    if request.param == "local":
        http: BlobHttp = request.getfixturevalue("blob_http")

        def make_local(prefix: str) -> BlobStore:
            name = f"{run}-{prefix}"
            store = LocalBlobStore(tmp_path_factory.mktemp(name), secret=b"contract-secret",
                                   public_url=f"{http.base_url}/{name}")  # fmt: skip
            http.mount(name, store)
            return store

        return make_local
    server: S3Server = request.getfixturevalue("s3_server")

    def make_s3(prefix: str) -> BlobStore:
        # Smallest legal parts and two-part pages: write() and list_parts() paginate in tests.
        return S3BlobStore(server.url(f"{run}-{prefix}"), part_size=MIN_PART_SIZE,
                           list_page_size=2)  # fmt: skip

    return make_s3


@pytest.fixture
def blob_store(make_blob_store: MakeBlobStore) -> BlobStore:
    return make_blob_store("main")


# --- job_queue ----------------------------------------------------------------------------------


MakeJobQueue = Callable[[], JobQueue]


@pytest.fixture(params=["embedded", "redis"])
def make_job_queue(request: pytest.FixtureRequest) -> Iterator[MakeJobQueue]:
    """``connect()``: another handle on this test's queue (for redis: another client, as a
    second process would have; embedded lives in one process, so it is the same queue)."""
    made: list[JobQueue] = []
    if request.param == "embedded":
        queue = EmbeddedQueue()

        def connect_embedded() -> JobQueue:
            return queue

        yield connect_embedded
        queue.close()
        return
    url: str = request.getfixturevalue("redis_url")
    list_name = f"appyard-test:{uuid.uuid4().hex}"

    def connect_redis() -> JobQueue:
        made.append(RedisQueue(url, list_name=list_name))
        return made[-1]

    yield connect_redis
    for handle in made:
        handle.close()
    cleanup = redis.Redis.from_url(url)
    cleanup.delete(list_name)
    cleanup.close()


@pytest.fixture
def job_queue(make_job_queue: MakeJobQueue) -> JobQueue:
    return make_job_queue()
