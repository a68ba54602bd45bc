"""AppyardError -> ``{"error": "..."}`` with the spec's status codes (400, 401, 403, 404, 405,
429). Anything not in the spec's table is reported as 400 (conflicts, invalid artifacts), so a
client never sees an undocumented status; only a real crash is a 500, with no internals."""

from __future__ import annotations

import logging

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse

from appyard import errors

log = logging.getLogger("appyard.api.automation")

STATUS: dict[type[errors.AppyardError], int] = {
    errors.BadRequest: 400,
    errors.Conflict: 400,
    errors.InvalidArtifact: 400,
    errors.Unauthenticated: 401,
    errors.Forbidden: 403,
    errors.NotFound: 404,
    errors.LimitExceeded: 429,
}


def _body(message: str, status: int) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def _validation_message(exc: RequestValidationError) -> str:
    problems = []
    for err in exc.errors():
        if err.get("type") == "json_invalid" or (
            tuple(err.get("loc", ())) == ("body",) and err.get("type") != "missing"
        ):
            return "Invalid JSON body: send a JSON object."
        loc = [str(p) for p in err.get("loc", ()) if p != "body"]
        where = ".".join(loc) or "body"
        if err.get("type") == "missing":
            problems.append(f"{where} is required")
        else:
            problems.append(f"{where}: {err.get('msg', 'invalid')}")
    return "Invalid request: " + "; ".join(problems) + "."


def install(app: FastAPI) -> None:
    for cls, status in STATUS.items():

        def handler(request: Request, exc: Exception, status: int = status) -> JSONResponse:
            assert isinstance(exc, errors.AppyardError)
            return _body(exc.message, status)

        app.add_exception_handler(cls, handler)

    def validation(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        return _body(_validation_message(exc), 400)

    def http(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, HTTPException)
        messages = {404: "Not found.", 405: "Method not allowed."}
        return _body(messages.get(exc.status_code, str(exc.detail)), exc.status_code)

    app.add_exception_handler(RequestValidationError, validation)
    app.add_exception_handler(HTTPException, http)
