"""The scale-out shape in one process: S3 storage on SeaweedFS, the Redis queue, and the
database of the run (PostgreSQL when APPYARD_DATABASE_URL names one), whatever
APPYARD_TEST_SCALE_OUT says."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from fastapi.testclient import TestClient

from appyard.app import create_app
from appyard.runtime import Runtime, build_runtime
from appyard.settings import Settings
from tests.backends.services import S3Server
from tests.conftest import FakeClock

MIB = 1024 * 1024


@pytest.fixture
def scaled_settings(
    tmp_path: Path, database_url: str, s3_server: S3Server, redis_url: str
) -> Iterator[Settings]:
    run = uuid.uuid4().hex[:12]
    sep = "&" if "?" in redis_url else "?"
    yield Settings(
        data_dir=tmp_path / "data",
        database_url=database_url,
        storage_url=s3_server.url(f"scale-{run}"),
        queue_url=f"{redis_url}{sep}list=appyard-test:{run}",
        public_url="http://testserver",
        secret_key="test-secret-key",  # type: ignore[arg-type]
        multipart_threshold=12 * MIB,
        multipart_chunk_size=5 * MIB,  # S3's smallest part
    )
    client = redis.Redis.from_url(redis_url)
    client.delete(f"appyard-test:{run}")
    client.close()


@pytest.fixture
def scaled(scaled_settings: Settings, clock: FakeClock) -> Iterator[Runtime]:
    rt = build_runtime(scaled_settings, clock=clock)
    yield rt
    rt.services.queue.close()
    rt.engine.dispose()


@pytest.fixture
def scaled_client(scaled: Runtime) -> Iterator[TestClient]:
    """The API in process; the store's presigned URLs are reached with httpx, over the network."""
    with TestClient(create_app(runtime=scaled), raise_server_exceptions=False) as c:
        yield c
