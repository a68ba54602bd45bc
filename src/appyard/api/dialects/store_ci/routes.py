"""The app store's CI upload API (../shared/specs/store-ci-upload-api.txt), mounted at
``/portal/api``: upload a release APK as form part ``apk``, read validation runs, a
version's status and its release; manage CI tokens."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel
from starlette.responses import JSONResponse

from appyard import errors as core_errors
from appyard.api.deps import services, transaction
from appyard.api.dialects.store_ci import credentials, errors
from appyard.api.forms import stream_form
from appyard.core import identity, users, versions
from appyard.core.context import Services
from appyard.core.models import Actor, Principal, Role, Token, TokenKind, Version

Svc = Annotated[Services, Depends(services)]


def _ci_principal(request: Request, svc: Services) -> Principal | None:
    credential = credentials.extract(request)
    if credential is None:
        return None
    with transaction(svc) as uow:
        return identity.authenticate(uow, svc.clock, credential)


def ci_token(request: Request, svc: Svc) -> Principal:
    principal = _ci_principal(request, svc)
    if principal is None:
        raise core_errors.InvalidCredential(
            "Missing CI token: send Authorization: Bearer <CI_UPLOAD_TOKEN>."
        )
    return principal


def actor(request: Request, svc: Svc) -> Actor:
    """A CI token, or a signed-in portal session (cookie)."""
    principal = _ci_principal(request, svc)
    if principal is not None:
        return versions.actor_for_token(principal)
    token = credentials.session_token(request)
    if token is None:
        raise core_errors.InvalidCredential("Missing CI token or portal session.")
    with transaction(svc) as uow:
        return users.from_session(uow, svc.clock, token=token)


CiToken = Annotated[Principal, Depends(ci_token)]
Caller = Annotated[Actor, Depends(actor)]


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


def _tenant_of(caller: Actor) -> str:
    if caller.tenant_id is None:
        raise core_errors.Forbidden("CI tokens belong to a tenant; store staff have none.")
    return caller.tenant_id


def create_app(svc: Services) -> FastAPI:
    app = FastAPI(title="appyard store CI API", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.services = svc
    errors.install(app)

    @app.post("/uploads/ci", status_code=201)
    async def upload(request: Request, caller: CiToken, svc: Svc) -> dict[str, Any]:
        form = await stream_form(
            request, spool_dir=svc.spool_dir, file_fields=("apk",), max_size=svc.policy.max_size
        )
        try:
            apk = form.files.get("apk")
            if apk is None or apk.size == 0:
                raise core_errors.InvalidArtifact("The form has no 'apk' file part.")

            def ingest() -> tuple[Version, Any, str]:
                with transaction(svc) as uow:
                    return versions.ingest_ci_upload(
                        uow,
                        svc.clock,
                        svc.store,
                        caller,
                        path=apk.path,
                        file_name=apk.filename,
                        sha256=apk.sha256,
                    )

            version, run, job_id = await run_in_threadpool(ingest)
        finally:
            form.discard()
        svc.queue.notify(job_id)
        return {
            "version": version_body(version),
            "validation_run": {"id": run.id, "status": run.status.value},
        }

    @app.get("/versions/{version_id}/validation")
    def validation(version_id: str, caller: Caller, svc: Svc) -> dict[str, Any]:
        with transaction(svc) as uow:
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
        with transaction(svc) as uow:
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
        with transaction(svc) as uow:
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
        with transaction(svc) as uow:
            tokens = identity.list_tokens(uow, tenant_id=_tenant_of(caller), kind=TokenKind.CI)
        return [token_body(t) for t in tokens]

    @app.post("/ci-tokens", status_code=201)
    def create_token(body: NewToken, caller: Caller, svc: Svc) -> dict[str, Any]:
        if caller.kind != "user" or caller.role is not Role.DEVELOPER:
            raise core_errors.Forbidden("Creating CI tokens needs a signed-in tenant member.")
        with transaction(svc) as uow:
            issued = identity.create_token(
                uow, svc.clock, tenant_id=_tenant_of(caller), kind=TokenKind.CI, name=body.name
            )
        return {**token_body(issued.token), "token": issued.raw}

    @app.delete("/ci-tokens/{token_id}")
    def revoke(token_id: str, caller: Caller, svc: Svc) -> JSONResponse:
        with transaction(svc) as uow:
            token = uow.tokens.get(token_id)
            if token is None or token.kind is not TokenKind.CI:
                raise core_errors.TokenNotFound(f"No CI token {token_id!r}.")
            identity.disable_token(uow, token_id=token_id, tenant_id=_tenant_of(caller))
        return JSONResponse({"id": token_id, "revoked": True})

    return app
