"""What every HTTP request gets, whatever answers it (a dialect, ``/healthz``, ``/readyz``,
``/metrics``, the local store's ``/_blob``, the portal): an ``X-Request-ID`` (the client's
when it sent a sane one, else a new one) bound to the log context, one access log line once
the response is done, and the request metrics (``appyard.metrics``), labelled with the route's
template (``/automate/status/{job_id}``, never the raw path).

Nothing here touches a body: bytes received and sent come from ``Content-Length`` (bodies
without one, chunked, are counted as they pass), and the log line is written after the
response, so a large upload or download costs one line and a few counter updates.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers, MutableHeaders
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Match, Mount
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from appyard import logs, metrics
from appyard.core.context import Services

log = logging.getLogger("appyard.access")

UNMATCHED = "unmatched"  # the route label of a path no route matched (no label per raw path)


def route_template(scope: Scope, root_path: str) -> str:
    """The template of the route that answered (mount prefixes included), from what the
    routers left in the scope."""
    route = scope.get("route")
    if route is None:  # FastAPI's router leaves no "route" for plain Starlette routes
        route = _matching(scope, root_path)
    path = getattr(route, "path", None)
    if route is None or path is None or isinstance(route, Mount):
        return UNMATCHED
    mounted = str(scope.get("root_path", ""))
    prefix = mounted[len(root_path) :] if mounted.startswith(root_path) else ""
    return prefix + str(path) if (prefix + str(path)) else "/"


def _matching(scope: Scope, root_path: str) -> object | None:
    router = getattr(scope.get("app"), "router", None)
    probe = {"type": "http", "path": scope.get("path", ""), "root_path": root_path}
    probe["method"] = scope.get("method", "GET")
    routes: list[BaseRoute] = list(getattr(router, "routes", ()))
    for route in routes:
        match, _ = route.matches(probe)
        if match is Match.FULL:
            return route
    return None


def _default_dialect(path: str) -> str:
    return "blob" if path.startswith("/_blob/") else "appyard"


class Observe:
    """The ASGI middleware (``app.add_middleware(Observe)``)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        headers = Headers(scope=scope)
        state = scope.setdefault("state", {})
        rid = state.get("request_id") or logs.request_id(headers.get("x-request-id"))
        state["request_id"] = rid
        root_path = str(scope.get("root_path", ""))
        method = str(scope.get("method", ""))
        declared = headers.get("content-length", "")
        received = int(declared) if declared.isdigit() else 0
        status = 500
        sent = 0
        counting_sent = False

        if not declared.isdigit() and "chunked" in headers.get("transfer-encoding", "").lower():

            async def receive_counted() -> Message:
                nonlocal received
                message = await receive()
                received += len(message.get("body", b""))
                return message

            inner_receive: Receive = receive_counted
        else:
            inner_receive = receive

        async def send_observed(message: Message) -> None:
            nonlocal status, sent, counting_sent
            kind = message["type"]
            if kind == "http.response.start":
                status = int(message["status"])
                out = MutableHeaders(scope=message)
                out["X-Request-ID"] = rid
                length = out.get("content-length", "")
                if method == "HEAD" or status in (204, 304):
                    sent = 0
                elif length.isdigit():
                    sent = int(length)
                else:
                    counting_sent = True
            elif kind == "http.response.body" and counting_sent:
                sent += len(message.get("body", b""))
            await send(message)

        tokens = logs.bind(request_id=rid)
        try:
            await self.app(scope, inner_receive, send_observed)
        finally:
            logs.unbind(tokens)
            seconds = time.perf_counter() - started
            path = str(scope.get("path", ""))
            dialect = str(state.get("dialect") or _default_dialect(path))
            route = route_template(scope, root_path)
            tenant = state.get("tenant_id")
            shown = logs.redact(path)
            log.info(
                "http.request method=%s path=%s status=%d bytes=%d duration_ms=%.1f "
                "request_id=%s tenant_id=%s",
                method,
                shown,
                status,
                sent,
                seconds * 1000,
                rid,
                tenant or "-",
                extra={
                    "method": method,
                    "path": shown,
                    "route": route,
                    "dialect": dialect,
                    "status": status,
                    "bytes": sent,
                    "bytes_received": received,
                    "duration_ms": round(seconds * 1000, 3),
                    "request_id": rid,
                    "tenant_id": tenant,
                },
            )
            metrics.observe_request(
                dialect=dialect,
                route=route,
                method=method,
                status=status,
                seconds=seconds,
                received=received,
                sent=sent,
            )


def metrics_endpoint(
    services: Services, token: str | None
) -> Callable[[Request], Awaitable[Response]]:
    """``GET /metrics``: open, or with ``token`` only for ``Authorization: Bearer <token>``."""

    async def endpoint(request: Request) -> Response:
        if token and not metrics.authorized(request.headers.get("authorization"), token):
            return JSONResponse(
                {"error": "Send the metrics token: Authorization: Bearer <APPYARD_METRICS_TOKEN>."},
                status_code=401,
                headers={"WWW-Authenticate": 'Bearer realm="metrics"'},
            )
        body = await run_in_threadpool(metrics.exposition, services)
        return Response(body, media_type=metrics.CONTENT_TYPE)

    return endpoint
