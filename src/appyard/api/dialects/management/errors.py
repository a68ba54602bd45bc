"""AppyardError -> ``{"success": false, "error": {"code": "...", "message": "..."}}``.

The spec shows no error body, and its mutating endpoints answer ``{"success": true}``, so an
error answers ``"success": false`` (a client that checks ``success`` works either way) with the
stable core code and a message a person can act on. Statuses: 400 bad input, 401 missing or
invalid credentials, 403 wrong tenant / missing permission / plan, 404 unknown, 409 state
conflict, 422 invalid artifact, 429 limits. Anything else is a 500 with a request id and
nothing internal in the body."""

from __future__ import annotations

import logging
import secrets
from typing import Any

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse

from appyard import errors

log = logging.getLogger("appyard.api.management")

STATUS: dict[type[errors.AppyardError], int] = {
    errors.BadRequest: 400,
    errors.Unauthenticated: 401,
    errors.Forbidden: 403,
    errors.NotFound: 404,
    errors.Conflict: 409,
    errors.InvalidArtifact: 422,
    errors.LimitExceeded: 429,
}


def body(
    code: str, message: str, status: int, details: dict[str, Any] | None = None
) -> JSONResponse:
    error = {**(details or {}), "code": code, "message": message}
    return JSONResponse({"success": False, "error": error}, status_code=status)


def _validation_message(exc: RequestValidationError) -> str:
    problems = []
    for err in exc.errors():
        loc = tuple(err.get("loc", ()))
        if err.get("type") == "json_invalid" or (loc == ("body",) and err.get("type") != "missing"):
            return "Invalid JSON body: send a JSON object."
        where = ".".join(str(p) for p in loc if p != "body") or "body"
        if err.get("type") == "missing":
            problems.append(f"{where} is required")
        else:
            problems.append(f"{where}: {err.get('msg', 'invalid')}")
    return "Invalid request: " + "; ".join(problems) + "."


def install(app: FastAPI) -> None:
    for cls, status in STATUS.items():

        def handler(request: Request, exc: Exception, status: int = status) -> JSONResponse:
            assert isinstance(exc, errors.AppyardError)
            return body(exc.code, exc.message, status, exc.details)

        app.add_exception_handler(cls, handler)

    def validation(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        return body("request.invalid", _validation_message(exc), 400)

    def http(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, HTTPException)
        messages = {404: "Not found.", 405: "Method not allowed: use POST."}
        message = messages.get(exc.status_code, str(exc.detail))
        return body(f"http.{exc.status_code}", message, exc.status_code)

    def crash(request: Request, exc: Exception) -> JSONResponse:
        request_id = secrets.token_hex(8)
        log.error(
            "request.failed request_id=%s path=%s", request_id, request.url.path, exc_info=exc
        )
        return body("internal", f"Internal server error (request id {request_id}).", 500)

    app.add_exception_handler(RequestValidationError, validation)
    app.add_exception_handler(HTTPException, http)
    app.add_exception_handler(Exception, crash)
