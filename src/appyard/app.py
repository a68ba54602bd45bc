"""create_app(settings) -> the ASGI app: every API dialect and the native API at their paths
(one list, ``api/dialects``), the local blob store's signed URLs, and (embedded shape) the
worker threads, started with the app."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from appyard import metrics, portal
from appyard.api import kit
from appyard.api.dialects import DIALECTS
from appyard.api.native.routes import API as NATIVE_API
from appyard.api.observe import Observe, metrics_endpoint
from appyard.backends.storage.local_http import blob_app
from appyard.health import readyz
from appyard.runtime import Runtime, build_runtime
from appyard.settings import Settings
from appyard.worker import Worker

log = logging.getLogger("appyard")
# The job threads of the worker that `appyard serve` runs in its own process are niced, so
# that build jobs (CPU-bound for seconds) leave the CPUs to the requests: on two CPUs a status
# poll waited behind them (bench/README.md, "Load").
EMBEDDED_WORKER_NICE = 10


def create_app(
    settings: Settings | None = None,
    *,
    runtime: Runtime | None = None,
    start_worker: bool | None = None,
) -> FastAPI:
    if runtime is None:
        runtime = build_runtime(settings or Settings())
    svc = runtime.services
    run_worker = runtime.settings.serve_runs_worker if start_worker is None else start_worker

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        worker = None
        if run_worker:
            worker = Worker(
                svc,
                concurrency=runtime.settings.worker_concurrency,
                sweep_seconds=runtime.settings.upload_sweep_seconds,
                retention_seconds=runtime.settings.retention_interval_seconds,
                nice=EMBEDDED_WORKER_NICE,
            )
            worker.start()
        app.state.worker = worker
        yield
        if worker is not None:
            worker.stop()

    metrics.setup()  # this process's metrics (the CLI chose multiprocess mode before, if so)
    app = FastAPI(
        title="appyard", version="0.1.0", lifespan=lifespan, telemetry=metrics.FASTAPI_TELEMETRY
    )
    app.state.services = svc
    app.state.runtime = runtime

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    app.add_route("/readyz", readyz(runtime.engine, svc.store, svc.queue), methods=["GET"])
    token = runtime.settings.metrics_token
    app.add_route(
        "/metrics",
        metrics_endpoint(svc, token.get_secret_value() if token else None),
        methods=["GET"],
    )

    if runtime.local_store is not None:
        accel = runtime.settings.download_accel_redirect
        app.mount("/_blob", blob_app(runtime.local_store, accel_redirect=accel))
    mounts = [kit.DialectMount(d, kit.mount(d, svc)) for d in (*DIALECTS, NATIVE_API)]
    app.router.routes.extend(mounts)
    app.add_middleware(kit.FastLanes, mounts=mounts)  # the status polls' short way in
    app.add_middleware(Observe)  # outermost: X-Request-ID, the access log line, metrics
    app.mount("/", portal.mount(svc, secret=runtime.settings.secret()))  # last: the rest
    return app


def app_from_env() -> FastAPI:
    """Factory for the ASGI server (Granian): settings from APPYARD_* variables."""
    import os

    from appyard.logs import setup_logging

    os.umask(0o077)  # data files 0600, folders 0700
    settings = Settings()
    setup_logging(settings.log_level, settings.log_format)
    metrics.setup(settings.metrics_dir)  # Granian's worker processes share their counters
    return create_app(settings)
