"""AppyardError -> ``{"error": "<message>", "code": "<stable code>"}`` with the store's
statuses: 401 bad token, 403 not allowed, 404 unknown or another tenant's, 409 versionCode
not incremented or a forbidden transition, 413 too large, 422 unsigned or malformed APK."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse

from appyard import errors

STATUS: dict[type[errors.AppyardError], int] = {
    errors.BadRequest: 400,
    errors.UploadTooLarge: 413,
    errors.Unauthenticated: 401,
    errors.Forbidden: 403,
    errors.NotFound: 404,
    errors.Conflict: 409,
    errors.InvalidArtifact: 422,
    errors.LimitExceeded: 429,
}


def install(app: FastAPI) -> None:
    for cls, status in STATUS.items():

        def handler(request: Request, exc: Exception, status: int = status) -> JSONResponse:
            assert isinstance(exc, errors.AppyardError)
            return JSONResponse({"error": exc.message, "code": exc.code}, status_code=status)

        app.add_exception_handler(cls, handler)

    def validation(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        return JSONResponse(
            {"error": "Invalid request body.", "code": "request.invalid"}, status_code=400
        )

    def http(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, HTTPException)
        return JSONResponse(
            {"error": str(exc.detail), "code": f"http.{exc.status_code}"},
            status_code=exc.status_code,
        )

    app.add_exception_handler(RequestValidationError, validation)
    app.add_exception_handler(HTTPException, http)
