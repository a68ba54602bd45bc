"""The app store's CI upload API (../shared/specs/store-ci-upload-api.txt): upload a release
APK as form part ``apk``, read validation runs, a version's status and its release; manage CI
tokens."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel
from starlette.responses import JSONResponse

from appyard import errors
from appyard.api.dialects.store_ci import credentials
from appyard.api.forms import stream_form
from appyard.api.kit import Svc, authenticator, multipart_body
from appyard.core import identity, versions
from appyard.core.models import Actor, Token, TokenKind, ValidationRun, Version

Caller = Annotated[Actor, Depends(authenticator(credentials.extract, credentials.MISSING))]


class NewToken(BaseModel):
    name: str = ""


def version_body(version: Version) -> dict[str, Any]:
    return {
        "id": version.id,
        "app_id": version.app_id,
        "version_code": version.version_code,
        "version_name": version.version_name,
        "status": version.status.value,
    }


def token_body(token: Token) -> dict[str, Any]:
    return {
        "id": token.id,
        "name": token.name,
        "revoked": token.disabled,
        "created_at": token.created_at.isoformat(),
        "last_used_at": token.last_used_at.isoformat() if token.last_used_at else None,
    }


def routes(app: FastAPI) -> None:
    @app.post("/uploads/ci", status_code=201, openapi_extra=multipart_body("apk"))
    async def upload(request: Request, caller: Caller, svc: Svc) -> dict[str, Any]:
        identity.require_token(caller, TokenKind.CI, action="uploads")
        form = await stream_form(
            request, spool_dir=svc.spool_dir, file_fields=("apk",), max_size=svc.policy.max_size
        )
        try:
            apk = form.files.get("apk")
            if apk is None or apk.size == 0:
                raise errors.InvalidArtifact("The form has no 'apk' file part.")

            def ingest() -> tuple[Version, ValidationRun]:
                with svc.transaction() as uow:
                    return versions.ingest_ci_upload(
                        svc,
                        uow,
                        caller,
                        path=apk.path,
                        file_name=apk.filename,
                    )

            version, run = await run_in_threadpool(ingest)
        finally:
            form.discard()
        return {
            "version": version_body(version),
            "validation_run": {"id": run.id, "status": run.status.value},
        }

    @app.get("/versions/{version_id}/validation")
    def validation(version_id: str, caller: Caller, svc: Svc) -> dict[str, Any]:
        with svc.uow() as uow:
            runs = versions.runs(uow, caller, version_id=version_id)
            body = [
                {
                    "id": run.id,
                    "status": run.status.value,
                    "findings": [
                        {"code": f.code, "severity": f.severity.value, "message": f.message}
                        for f in uow.findings.list(run.build_id)
                    ],
                }
                for run in runs
            ]
        return {"runs": body}

    @app.get("/versions/{version_id}")
    def version(version_id: str, caller: Caller, svc: Svc) -> dict[str, Any]:
        with svc.uow() as uow:
            v = versions.get(uow, caller, version_id=version_id)
            count = versions.open_issue_count(uow, v)
        return {
            "id": v.id,
            "version_code": v.version_code,
            "version_name": v.version_name,
            "status": v.status.value,
            "open_issue_count": count,
        }

    @app.get("/versions/{version_id}/release")
    def release(version_id: str, caller: Caller, svc: Svc) -> dict[str, Any]:
        with svc.uow() as uow:
            v = versions.get(uow, caller, version_id=version_id)
        t = versions.targets(v)
        return {
            "live": v.status.value == "live",
            "targets": {
                "countries": list(t.countries),
                "vehicle_contexts": list(t.vehicle_contexts),
            },
        }

    @app.get("/ci-tokens")
    def list_tokens(caller: Caller, svc: Svc) -> list[dict[str, Any]]:
        with svc.uow() as uow:
            tokens = identity.member_tokens(uow, caller, kind=TokenKind.CI)
        return [token_body(t) for t in tokens]

    @app.post("/ci-tokens", status_code=201)
    def create_token(body: NewToken, caller: Caller, svc: Svc) -> dict[str, Any]:
        with svc.transaction() as uow:
            issued = identity.issue_member_token(
                uow, svc.clock, caller, kind=TokenKind.CI, name=body.name
            )
        return {**token_body(issued.token), "token": issued.raw}

    @app.delete("/ci-tokens/{token_id}")
    def revoke(token_id: str, caller: Caller, svc: Svc) -> JSONResponse:
        with svc.transaction() as uow:
            identity.revoke_member_token(uow, caller, kind=TokenKind.CI, token_id=token_id)
        return JSONResponse({"id": token_id, "revoked": True})
