"""The portal's machinery: the ASGI app, templates, sessions, CSRF, forms and error pages.

The portal is a client of core like any dialect: every page calls core services inside
``svc.transaction()`` / ``svc.uow()`` and renders what they return; core decides who may do
what. This module gives the pages what every page needs:

* **sessions**: the ``appyard_session`` cookie made by core's ``users.sign_in`` (HttpOnly,
  SameSite=Lax, Secure when the public URL is https); a page that needs one sends a person
  without one to ``/signin``;
* **CSRF**: every form carries a token bound to the session (an HMAC of the session token
  under the server's secret); the sign-in form, before there is a session, a random token
  also set as a cookie (double submit). A post without the right token is refused (403);
* **forms**: small ``application/x-www-form-urlencoded`` bodies parsed here (bounded), and one
  streamed ``multipart/form-data`` upload (a signing key's keystore, at most 10 MB);
* **errors**: core's typed errors become an HTML page with the native status (404, 409, ...);
  anything else is a 500 page naming a request id, the traceback only in the log;
* **headers**: a request id on every response, a strict Content-Security-Policy (scripts and
  styles from /static only), no framing, no referrer leaving the site.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.datastructures import Headers, MutableHeaders
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from appyard import errors, metrics
from appyard.core import users
from appyard.core.context import Services
from appyard.core.models import Actor, Role, User
from appyard.portal import views

log = logging.getLogger("appyard.portal")

SESSION_COOKIE = "appyard_session"  # the native API's cookie: one session for both
SIGNIN_CSRF_COOKIE = "appyard_signin"
FLASH_COOKIE = "appyard_flash"
STATIC = Path(__file__).parent / "static"
FORM_LIMIT = 64 * 1024  # bytes of a urlencoded form
UPLOAD_LIMIT = 11 * 1024 * 1024  # a keystore (10 MB) and its fields
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")
CSP = (
    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)


class SignInRequired(Exception):
    """A page that needs a session was asked for without one."""


class CsrfRefused(errors.Forbidden):
    """The form did not carry this session's token."""

    code = "portal.csrf"


@dataclass(frozen=True)
class Session:
    user: User
    actor: Actor
    token: str
    csrf: str

    @property
    def staff(self) -> bool:
        return self.user.role in (Role.STORE_ADMIN, Role.STORE_REVIEWER)


@dataclass
class Form:
    """A parsed form: text fields (repeatable) and, for an upload, file parts' bytes."""

    fields: dict[str, list[str]] = field(default_factory=dict)
    files: dict[str, tuple[str, bytes]] = field(default_factory=dict)

    def get(self, name: str, default: str = "") -> str:
        values = self.fields.get(name)
        return values[0].strip() if values else default

    def getlist(self, name: str) -> list[str]:
        return [v.strip() for v in self.fields.get(name, []) if v.strip()]

    def flag(self, name: str) -> bool:
        return self.get(name).lower() in ("1", "on", "true", "yes")


@dataclass(frozen=True)
class Portal:
    svc: Services
    env: Environment
    csrf_key: bytes
    secure: bool  # cookies only over https (the public URL is https)

    # --- sessions -------------------------------------------------------------------------------

    def csrf_for(self, token: str) -> str:
        return hmac.new(self.csrf_key, b"csrf:" + token.encode(), hashlib.sha256).hexdigest()[:40]

    def session(self, request: Request) -> Session | None:
        token = request.cookies.get(SESSION_COOKIE, "")
        if not token or len(token) > 200:
            return None
        try:
            with self.svc.uow() as uow:
                user = users.session_user(uow, self.svc.clock, token=token)
        except errors.Unauthenticated:
            return None
        return Session(
            user=user, actor=users.actor_of(user), token=token, csrf=self.csrf_for(token)
        )

    def signed_in(self, request: Request) -> Session:
        found = self.session(request)
        if found is None:
            raise SignInRequired()
        return found

    def set_session_cookie(self, response: Response, token: str) -> None:
        response.set_cookie(
            SESSION_COOKIE,
            token,
            max_age=int(users.SESSION_TTL.total_seconds()),
            path="/",
            httponly=True,
            secure=self.secure,
            samesite="lax",
        )

    # --- forms ----------------------------------------------------------------------------------

    async def form(self, request: Request, session: Session | None) -> Form:
        """The posted form, its CSRF token checked against the session (or, for the sign-in
        form, against its cookie)."""
        form = await read_form(request)
        sent = form.get("csrf")
        if session is not None:
            expected = session.csrf
        else:
            expected = request.cookies.get(SIGNIN_CSRF_COOKIE, "")
        if not sent or not expected or not hmac.compare_digest(sent, expected):
            raise CsrfRefused(
                "This form did not come from your current session (it may have expired). "
                "Go back, reload the page and try again."
            )
        return form

    # --- rendering ------------------------------------------------------------------------------

    def render(
        self,
        request: Request,
        template: str,
        session: Session | None = None,
        *,
        status: int = 200,
        headers: dict[str, str] | None = None,
        **context: Any,
    ) -> HTMLResponse:
        flash = request.cookies.get(FLASH_COOKIE)
        page = self.env.get_template(template).render(
            request=request,
            session=session,
            path=request.url.path,
            flash=views.read_flash(flash),
            now=self.svc.clock.now(),
            public_url=self.svc.public_url,
            **context,
        )
        response = HTMLResponse(page, status_code=status, headers=headers)
        if flash:
            response.delete_cookie(FLASH_COOKIE, path="/")
        return response

    def redirect(self, url: str, *, notice: str = "", error: str = "") -> RedirectResponse:
        response = RedirectResponse(url, status_code=303)
        if notice or error:
            response.set_cookie(
                FLASH_COOKIE,
                views.write_flash(notice=notice, error=error),
                max_age=60,
                path="/",
                httponly=True,
                secure=self.secure,
                samesite="lax",
            )
        return response


async def read_form(request: Request) -> Form:
    content_type = request.headers.get("content-type", "").lower()
    if content_type.startswith("multipart/form-data"):
        return await _multipart(request)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > FORM_LIMIT:
            raise errors.UploadTooLarge("The form is too large.")
    form = Form()
    try:
        pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, max_num_fields=200)
    except (UnicodeDecodeError, ValueError):
        raise errors.InvalidField("The form could not be read.") from None
    for name, value in pairs:
        form.fields.setdefault(name, []).append(value)
    return form


async def _multipart(request: Request) -> Form:
    from streaming_form_data import StreamingFormDataParser
    from streaming_form_data.targets import ValueTarget

    class Bounded(ValueTarget):  # type: ignore[misc]
        def on_data_received(self, chunk: bytes) -> None:
            if sum(map(len, self._values)) + len(chunk) > UPLOAD_LIMIT:
                raise errors.UploadTooLarge("The file is larger than 10 MB.")
            super().on_data_received(chunk)

    try:
        parser = StreamingFormDataParser(headers=dict(request.headers))
    except Exception:  # the library raises bare exceptions for a bad boundary
        raise errors.InvalidField("The upload could not be read.") from None
    targets: dict[str, Any] = {}
    for name in ("csrf", "name", "platform", "password", "alias", "default", "keystore"):
        targets[name] = Bounded()
        parser.register(name, targets[name])
    seen = 0
    async for chunk in request.stream():
        seen += len(chunk)
        if seen > UPLOAD_LIMIT + 64 * 1024:
            raise errors.UploadTooLarge("The upload is larger than 10 MB.")
        try:
            parser.data_received(chunk)
        except errors.AppyardError:
            raise
        except Exception:
            raise errors.InvalidField("The upload could not be read.") from None
    form = Form()
    for name, target in targets.items():
        if name == "keystore":
            if target.value:
                form.files[name] = (target.multipart_filename or "keystore", target.value)
        elif target.value:
            form.fields[name] = [target.value.decode("utf-8", "replace")]
    return form


# --- the app --------------------------------------------------------------------------------------


def portal(request: Request) -> Portal:
    found: Portal = request.app.state.portal
    return found


def environment() -> Environment:
    env = Environment(
        loader=PackageLoader("appyard.portal", "templates"),
        autoescape=select_autoescape(("html", "xml", "svg")),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    views.install(env)
    return env


def create(svc: Services, *, secret: bytes, routes: list[Callable[[FastAPI], None]]) -> ASGIApp:
    app = FastAPI(
        docs_url=None, redoc_url=None, openapi_url=None, telemetry=metrics.FASTAPI_TELEMETRY
    )
    app.state.portal = Portal(
        svc=svc,
        env=environment(),
        csrf_key=hashlib.sha256(b"appyard-portal-csrf:" + secret).digest(),
        secure=svc.public_url.lower().startswith("https://"),
    )
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    _errors(app)
    for add in routes:
        add(app)
    return Guard(app)


def _error_page(request: Request, status: int, title: str, message: str) -> Response:
    p = portal(request)
    session = p.session(request) if status != 500 else None
    return p.render(request, "error.html", session, status=status, title=title, message=message)


TITLES = {
    400: "That did not work",
    401: "Sign in first",
    403: "Not allowed",
    404: "Not found",
    405: "Not allowed",
    409: "Not now",
    410: "Gone",
    413: "Too large",
    422: "Not a valid file",
    429: "Slow down",
}


def _errors(app: FastAPI) -> None:
    async def appyard_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, errors.AppyardError)
        status = exc.status if 400 <= exc.status < 500 else 500
        if status == 401:
            return _to_signin(request)
        if status == 500:
            return await crash(request, exc)
        return _error_page(request, status, TITLES.get(status, "Error"), exc.message)

    async def sign_in_required(request: Request, exc: Exception) -> Response:
        return _to_signin(request)

    async def validation(request: Request, exc: Exception) -> Response:
        return _error_page(request, 400, TITLES[400], "The request is not valid.")

    async def http(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        status = exc.status_code
        message = {
            404: "There is no page here. It may have moved, or the link is wrong.",
            405: "This page does not take that kind of request.",
        }.get(status, str(exc.detail))
        return _error_page(request, status, TITLES.get(status, "Error"), message)

    async def crash(request: Request, exc: Exception) -> Response:
        rid = request.scope.get("state", {}).get("request_id", "") or secrets.token_hex(8)
        log.error("portal.failed request_id=%s path=%s", rid, request.url.path, exc_info=exc)
        return _error_page(
            request,
            500,
            "Something went wrong",
            f"appyard could not show this page. The error was logged with request id {rid}.",
        )

    app.add_exception_handler(errors.AppyardError, appyard_error)
    app.add_exception_handler(SignInRequired, sign_in_required)
    app.add_exception_handler(RequestValidationError, validation)
    app.add_exception_handler(HTTPException, http)
    app.add_exception_handler(Exception, crash)


def _to_signin(request: Request) -> Response:
    target = request.url.path
    if request.url.query:
        target += "?" + request.url.query
    if request.method != "GET" or target.startswith("/signin"):
        target = "/"
    return RedirectResponse(f"/signin?next={quote(target, safe='/')}", status_code=303)


def safe_next(value: str) -> str:
    """A local path to go to after signing in (never another site)."""
    if not value.startswith("/") or value.startswith("//") or "\\" in value or len(value) > 500:
        return "/"
    return value


# --- the guard: request ids, body limits, security headers ----------------------------------------


class Guard:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        asked = headers.get("x-request-id", "")
        rid = asked if _REQUEST_ID.match(asked) else secrets.token_hex(16)
        scope.setdefault("state", {})["request_id"] = rid
        path: str = scope.get("path", "")
        install_page = path.startswith("/i/")

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                out = MutableHeaders(scope=message)
                out["X-Request-ID"] = rid
                out.setdefault("X-Content-Type-Options", "nosniff")
                out.setdefault("X-Frame-Options", "DENY")
                # An install page's URL is its secret: it never leaves in a Referer.
                out.setdefault("Referrer-Policy", "no-referrer" if install_page else "same-origin")
                if out.get("content-type", "").startswith("text/html"):
                    out.setdefault("Content-Security-Policy", CSP)
                    out.setdefault("Cache-Control", "no-store")
            await send(message)

        declared = headers.get("content-length", "")
        limit = UPLOAD_LIMIT + 64 * 1024 if path == "/keys/signing" else FORM_LIMIT
        if declared.isdigit() and int(declared) > limit:
            response = HTMLResponse("<h1>Too large</h1>", status_code=413)
            await response(scope, receive, send_with_headers)
            return
        await self.app(scope, receive, send_with_headers)
