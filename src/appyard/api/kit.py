"""The dialect kit: what every API dialect gets, so that a dialect is one folder that only
translates, plus one line in ``api/dialects/__init__.py``.

A :class:`Dialect` names its mount prefix, its credential extractor (request -> credential, or
None for "not mine"), its error table and body renderer (the vendor's documented error shape),
its routes, and the body limits of its paths. :func:`mount` turns one into an ASGI app with:

* the dialect's error shape for every :class:`~appyard.errors.AppyardError` (Starlette resolves
  handlers along the MRO, so a table of base kinds covers every subclass), for request
  validation errors, 404/405 (with ``Allow``), a body too large (413), and a crash: a 500 whose
  request id is logged with the traceback and returned in the body, nothing internal;
* a request id on every response (``X-Request-ID``: the client's when it sent a sane one);
* a request-body limit applied before the body is read or parsed (the body is buffered only
  up to the limit; paths that stream their own body, such as form uploads, bound it there);
* its OpenAPI document at ``<prefix>/openapi.json``, with its credential scheme;
* a short way in for the routes clients poll (:func:`fast_get`): :class:`FastLanes` and
  :class:`Guard` answer them without the outer and the dialect's FastAPI stacks.

Who may do what is decided in core: :func:`authenticator` only turns the dialect's credential
into the actor (``core.identity.authenticate``).
"""

from __future__ import annotations

import logging
import re
import secrets
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any, TypeVar

from fastapi import Depends, FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers, MutableHeaders
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Match, Mount
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from appyard import errors, metrics
from appyard.core import identity
from appyard.core.context import Services
from appyard.core.models import Actor
from appyard.core.ports import UnitOfWork

log = logging.getLogger("appyard.api")
T = TypeVar("T")

KIB = 1024
MIB = 1024 * KIB
DEFAULT_BODY_LIMIT = 64 * KIB
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")


@dataclass(frozen=True)
class ApiError:
    """An error as a dialect renders it."""

    status: int
    code: str
    message: str
    details: Mapping[str, Any] = field(default_factory=dict)


Renderer = Callable[[ApiError], Any]  # -> the JSON body of the dialect's error shape
Extractor = Callable[[Request], "identity.AnyCredential | None"]


@dataclass(frozen=True)
class Dialect:
    name: str
    prefix: str
    title: str
    routes: Callable[[FastAPI], None]
    statuses: Mapping[type[errors.AppyardError], int]
    render: Renderer
    security: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    # Which schemes together make a credential, as OpenAPI's alternatives (any one entry is
    # enough); empty: each scheme alone (a token, or a session).
    requires: tuple[tuple[str, ...], ...] = ()
    # The JSON schema of ``render``'s body: the document's answer to every 4xx and 5xx.
    error_schema: Mapping[str, Any] = field(default_factory=dict)
    body_limit: int = DEFAULT_BODY_LIMIT
    # Paths (inside the prefix, ``{name}`` for a segment) with another limit; None: the route
    # streams and bounds its body itself.
    body_limits: Mapping[str, int | None] = field(default_factory=dict)
    docs: bool = False  # also serve Swagger UI at <prefix>/docs


# --- requests -----------------------------------------------------------------------------------


async def services(request: Request) -> Services:
    """The app's services, on the event loop: FastAPI runs a plain ``def`` dependency in a
    worker thread, and a thread hop per request costs more than the lookup."""
    svc: Services = request.app.state.services
    return svc


Svc = Annotated[Services, Depends(services)]


def request_id(request: Request) -> str:
    return str(request.scope.get("state", {}).get("request_id", ""))


def authenticator(extract: Extractor, missing: str) -> Callable[[Request, Services], Actor]:
    """A route dependency: the dialect's credential -> the actor (core decides the rest),
    read in a read-only unit of work; the token's last use is written (at most once a
    minute) in a short transaction of its own."""

    def authenticated(request: Request, svc: Svc) -> Actor:
        credential = extract(request)
        if credential is None:
            raise errors.InvalidCredential(missing)
        with svc.uow.read() as uow:
            identified = identity.identify(uow, svc.clock, credential)
        _record_use(svc, identified)
        request.state.tenant_id = identified.actor.tenant_id  # for the access log line
        return identified.actor

    return authenticated


async def reading(
    request: Request,
    extract: Extractor,
    missing: str,
    read: Callable[[Actor, UnitOfWork], T],
) -> T:
    """``await reading(request, extract, missing, read)``, for a hot read route such as a
    status poll: the dialect's credential taken from the request (``missing``: the message
    when there is none), the caller authenticated and ``read(caller, uow)`` done in one
    read-only unit of work. The token's last use is written afterwards, when due, as
    :func:`authenticator` does. The route takes no dependencies: FastAPI's solving them
    costs more than the read.

    When the database runs in this process (SQLite) the read runs on the event loop: two
    lookups by key cost about 0.2 ms there, less than a hop to a worker thread and back, and
    under load every hop is a hand-off of the GIL between threads (bench/README.md, "Load").
    A database across a network is read in a worker thread. The write, which may wait for the
    write lock, always runs in a worker thread."""
    svc: Services = request.app.state.services
    credential = extract(request)
    if credential is None:
        raise errors.InvalidCredential(missing)

    def work() -> tuple[T, identity.Identified]:
        with svc.uow.read(keep=svc.uow.reads_in_process) as uow:  # on the loop: kept
            identified = identity.identify(uow, svc.clock, credential)
            request.state.tenant_id = identified.actor.tenant_id  # for the access line
            return read(identified.actor, uow), identified

    if svc.uow.reads_in_process:
        result, identified = work()
    else:
        result, identified = await run_in_threadpool(work)
    if identified.touch is not None:
        await run_in_threadpool(_record_use, svc, identified)
    return result


Endpoint = Callable[..., Awaitable[Response]]
FAST_LANE = "fast_lane"  # the dialect app's state: the routes its Guard answers itself


def fast_get(app: FastAPI, path: str) -> Callable[[Endpoint], Endpoint]:
    """``@fast_get(app, "/status/{job_id}")``: a GET route for clients that poll, which the
    dialect's :class:`Guard` answers itself: past the dialect app's middleware stack, its
    router and FastAPI's dependency solving, a quarter of what a status poll cost in Python
    (bench/README.md, "2026-12-06, third session"). The endpoint is ``async``, takes its path
    parameters (strings) and ``request``, and returns a Response; core errors it raises get
    the dialect's error shape, anything else the dialect's 500. FastAPI registers the route
    too: it is in the OpenAPI document and answers HEAD."""

    def register(endpoint: Endpoint) -> Endpoint:
        app.get(path)(endpoint)
        route = app.router.routes[-1]
        assert isinstance(route, APIRoute) and route.endpoint is endpoint
        lane: list[APIRoute] = getattr(app.state, FAST_LANE, [])
        setattr(app.state, FAST_LANE, [*lane, route])
        return endpoint

    return register


def _record_use(svc: Services, identified: identity.Identified) -> None:
    if identified.touch is not None:
        with svc.uow() as uow:
            identity.record_use(uow, identified)
            uow.commit()


def bearer(request: Request) -> str | None:
    """The value of ``Authorization: Bearer <value>`` (ASCII, bounded), or None."""
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    value = value.strip()
    if scheme.lower() != "bearer" or not value or len(value) > 4096 or not value.isascii():
        return None
    return value


def validation_message(exc: RequestValidationError) -> str:
    """A request validation error in one sentence a person can act on."""
    problems = []
    for err in exc.errors():
        loc = tuple(err.get("loc", ()))
        if err.get("type") == "json_invalid" or (loc == ("body",) and err.get("type") != "missing"):
            return "Invalid JSON body: send a JSON object."
        where = ".".join(str(p) for p in loc if p not in ("body", "path", "query")) or "body"
        if err.get("type") == "missing":
            problems.append(f"{where} is required")
        else:
            problems.append(f"{where}: {err.get('msg', 'invalid')}")
    return "Invalid request: " + "; ".join(problems) + "."


# --- the app ------------------------------------------------------------------------------------


def mount(dialect: Dialect, svc: Services) -> ASGIApp:
    """The dialect as an ASGI app, to be mounted at ``dialect.prefix``."""
    app = FastAPI(
        title=dialect.title,
        docs_url="/docs" if dialect.docs else None,
        redoc_url=None,
        openapi_url="/openapi.json",
        telemetry=metrics.FASTAPI_TELEMETRY,
    )
    app.state.services = svc
    _install_errors(app, dialect)
    dialect.routes(app)
    _describe(app, dialect)
    return Guard(app, dialect)


class DialectMount(Mount):
    """A dialect's app at its prefix, owning every path under it. Starlette's mount pattern
    (``.*``) stops at a line break, so ``/automate/status/%0A`` would pass the dialect by and
    get the outer app's ``{"detail": "Not Found"}``; here it gets the dialect's own 404."""

    def __init__(self, dialect: Dialect, app: ASGIApp) -> None:
        super().__init__(dialect.prefix, app=app, name=dialect.name)
        self.path_regex = re.compile(self.path_regex.pattern, re.DOTALL)


def error_response(
    dialect: Dialect, error: ApiError, headers: Mapping[str, str] | None = None
) -> Response:
    return JSONResponse(
        dialect.render(error), status_code=error.status, headers=dict(headers or {})
    )


def appyard_error_response(dialect: Dialect, exc: errors.AppyardError) -> Response | None:
    """A core error in the dialect's shape, with the status of the nearest of its classes in
    the dialect's table (as Starlette resolves handlers); None when no class is there."""
    for cls in type(exc).__mro__:
        status = dialect.statuses.get(cls)
        if status is not None:
            return error_response(
                dialect, ApiError(status, exc.code, exc.message, dict(exc.details))
            )
    return None


def crash_response(dialect: Dialect, request: Request, exc: BaseException) -> Response:
    """A crash: logged with its traceback and the request id, answered with a 500 that names
    only the request id."""
    rid = request_id(request) or secrets.token_hex(8)
    log.error(
        "request.failed request_id=%s dialect=%s path=%s",
        rid,
        dialect.name,
        request.url.path,
        exc_info=exc,
    )
    return error_response(
        dialect, ApiError(500, "internal", f"Internal server error (request id {rid}).")
    )


def _install_errors(app: FastAPI, dialect: Dialect) -> None:
    for cls, status in dialect.statuses.items():

        def handler(request: Request, exc: Exception, status: int = status) -> Response:
            assert isinstance(exc, errors.AppyardError)
            return error_response(
                dialect, ApiError(status, exc.code, exc.message, dict(exc.details))
            )

        app.add_exception_handler(cls, handler)

    def validation(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        message = validation_message(exc)
        kind = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
        if message.startswith("Invalid JSON body") and kind and "json" not in kind:
            message = f"Send the body as JSON with Content-Type: application/json (not {kind})."
        return error_response(dialect, ApiError(400, "request.invalid", message))

    def http(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            allowed = _allowed_methods(request)
            if allowed:
                headers["Allow"] = ", ".join(allowed)
            message = "Method not allowed" + (f": use {' or '.join(allowed)}." if allowed else ".")
        elif exc.status_code == 404:
            message = "Not found."
        else:
            message = str(exc.detail)
        return error_response(
            dialect, ApiError(exc.status_code, f"http.{exc.status_code}", message), headers
        )

    def crash(request: Request, exc: Exception) -> Response:
        return crash_response(dialect, request, exc)

    app.add_exception_handler(RequestValidationError, validation)
    app.add_exception_handler(HTTPException, http)
    app.add_exception_handler(Exception, crash)


def _allowed_methods(request: Request) -> list[str]:
    allowed: set[str] = set()
    for route in request.app.router.routes:
        for method in ("GET", "POST", "PUT", "DELETE", "PATCH"):
            match, _ = route.matches({**request.scope, "method": method})
            if match is Match.FULL:
                allowed.add(method)
    if "GET" in allowed:
        allowed.add("HEAD")
    return sorted(allowed)


def _describe(app: FastAPI, dialect: Dialect) -> None:
    """The dialect's OpenAPI document: its credential schemes and, for every operation, its
    error body (in place of FastAPI's 422 ``HTTPValidationError``, which no dialect sends)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = get_openapi(title=app.title, version=app.version, routes=app.routes)
        components = schema.setdefault("components", {})
        if dialect.security:
            components["securitySchemes"] = dict(dialect.security)
            requires = dialect.requires or tuple((name,) for name in dialect.security)
            schema["security"] = [{name: [] for name in names} for names in requires]
        schemas = components.get("schemas", {})
        for name in ("HTTPValidationError", "ValidationError"):
            schemas.pop(name, None)
        if not schemas:
            components.pop("schemas", None)
        if dialect.error_schema:
            components.setdefault("schemas", {})["Error"] = dict(dialect.error_schema)
        error = {
            "description": "An error, in this API's error body",
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
        }
        for operations in schema.get("paths", {}).values():
            for operation in operations.values():
                responses = operation.setdefault("responses", {})
                responses.pop("422", None)
                if dialect.error_schema:
                    responses["4XX"] = error
                    responses["5XX"] = error
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


class Guard:
    """Request ids, body limits, and the last word on crashes, around one dialect's app."""

    def __init__(self, app: FastAPI, dialect: Dialect) -> None:
        self.app = app
        self.dialect = dialect
        self.fast_lane: list[APIRoute] = getattr(app.state, FAST_LANE, [])
        self.limits = [
            (re.compile("^" + re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(path)) + "$"), limit)
            for path, limit in dialect.body_limits.items()
        ]

    def _limit(self, scope: Scope) -> int | None:
        path = scope.get("path", "")
        root = scope.get("root_path", "")
        if root and path.startswith(root):
            path = path[len(root) :]
        for pattern, limit in self.limits:
            if pattern.match(path or "/"):
                return limit
        return self.dialect.body_limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        state = scope.setdefault("state", {})
        asked = state.get("request_id") or headers.get("x-request-id", "")  # api/observe.py's
        rid = asked if _REQUEST_ID.match(asked) else secrets.token_hex(16)
        state["request_id"] = rid
        state["dialect"] = self.dialect.name  # the request metrics' and access log's label
        started = False

        async def send_with_id(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                MutableHeaders(scope=message)["X-Request-ID"] = rid
            await send(message)

        limit = self._limit(scope) if scope.get("method") not in ("GET", "HEAD") else None
        if limit is not None:
            buffered = await self._bounded_body(headers, receive, limit)
            if buffered is None:
                too_large = errors.UploadTooLarge(
                    f"The request body is larger than the {limit} bytes this endpoint accepts."
                )
                response = error_response(
                    self.dialect, ApiError(413, "request.too_large", too_large.message)
                )
                await response(scope, receive, send_with_id)
                return
            receive = _replay(buffered, receive)
            if buffered and "content-type" not in headers:  # a JSON body sent without its type
                scope["headers"] = [*scope["headers"], (b"content-type", b"application/json")]
        try:
            fast = self.fast_route(scope)
            if fast is not None:
                await self._fast(*fast, scope, receive, send_with_id)
                return
            await self.app(scope, receive, send_with_id)
        except Exception:
            if not started:
                raise
            # The crash handler answered (and logged it with the request id); nothing to add.

    def fast_route(self, scope: Scope) -> tuple[APIRoute, Scope] | None:
        """The :func:`fast_get` route that answers this request (scope: as mounted), and what
        routing adds to the request's scope for it; None for every other request."""
        if scope.get("method") == "GET":
            for route in self.fast_lane:
                match, child = route.matches(scope)
                if match is Match.FULL:
                    return route, child
        return None

    async def _fast(
        self, route: APIRoute, routed: Scope, scope: Scope, receive: Receive, send: Send
    ) -> None:
        """A :func:`fast_get` route, answered here."""
        scope.update(routed)  # in place, as Starlette's router: the access line's route label
        scope["app"] = self.app  # what request.app means inside the dialect
        request = Request(scope, receive)
        try:
            response = await route.endpoint(request=request, **scope["path_params"])
        except errors.AppyardError as exc:
            response = appyard_error_response(self.dialect, exc) or crash_response(
                self.dialect, request, exc
            )
        except Exception as exc:
            response = crash_response(self.dialect, request, exc)
        await response(scope, receive, send)

    @staticmethod
    async def _bounded_body(headers: Headers, receive: Receive, limit: int) -> bytes | None:
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            return None
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return bytes(body)
            body += message.get("body", b"")
            if len(body) > limit:
                return None
            if not message.get("more_body", False):
                return bytes(body)


class FastLanes:
    """The outer app's middleware (inside :class:`~appyard.api.observe.Observe`) that hands a
    request for a :func:`fast_get` route straight to its dialect's :class:`Guard`, as the
    dialect's :class:`DialectMount` would, past the outer app's exception middleware and
    router (walking a dozen routes). Every other request goes on."""

    def __init__(self, app: ASGIApp, mounts: list[DialectMount]) -> None:
        self.app = app
        self.lanes = [
            (m.path + "/", m.path, m.app)
            for m in mounts
            if isinstance(m.app, Guard) and m.app.fast_lane
        ]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope.get("method") == "GET":
            path = scope["path"]
            for start, prefix, guard in self.lanes:
                if path.startswith(start):
                    root = scope.get("root_path", "")
                    mounted = {
                        **scope,
                        "root_path": root + prefix,
                        "app_root_path": scope.get("app_root_path", root),
                    }
                    if guard.fast_route(mounted) is not None:
                        scope.update(mounted)  # in place, as Starlette's router does
                        await guard(scope, receive, send)
                        return
                    break
        await self.app(scope, receive, send)


def _replay(body: bytes, receive: Receive) -> Callable[[], Awaitable[Message]]:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


def multipart_body(
    *files: str,
    optional_files: Mapping[str, str] | None = None,
    fields: Mapping[str, str] | None = None,
    patterns: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """An OpenAPI ``requestBody`` for a multipart/form-data route that streams its body: its
    required file parts, optional file parts and text fields (name -> description), and text
    fields named by a pattern (regular expression -> description), such as ``filter[i][j]``."""
    properties: dict[str, Any] = {name: {"type": "string", "format": "binary"} for name in files}
    for name, description in (optional_files or {}).items():
        properties[name] = {"type": "string", "format": "binary", "description": description}
    for name, description in (fields or {}).items():
        properties[name] = {"type": "string", "description": description}
    schema: dict[str, Any] = {"type": "object", "properties": properties, "required": list(files)}
    if patterns:
        schema["patternProperties"] = {
            pattern: {"type": "string", "description": description}
            for pattern, description in patterns.items()
        }
    return {
        "requestBody": {
            "required": True,
            "content": {"multipart/form-data": {"schema": schema}},
        }
    }
