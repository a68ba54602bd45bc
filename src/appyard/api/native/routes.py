"""appyard's own API (``/appyard/v1``), used by the CLI and the portal. Its OpenAPI schema
(``/appyard/v1/openapi.json``, docs at ``/appyard/v1/docs``) is its documentation.

Sign in with ``POST /auth/login``: the answer sets the ``appyard_session`` cookie (which the
store dialect's interactive endpoints accept too) and returns the session token for
``Authorization: Bearer``. The store team's actions on versions live here, checked by role."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request, Response
from pydantic import BaseModel, Field

from appyard import errors
from appyard.api.kit import ApiError, Dialect, Svc, authenticator, bearer, error_response
from appyard.core import (
    apps,
    builds,
    detections,
    identity,
    notifications,
    payloads,
    throttle,
    users,
    versions,
    webhooks,
)
from appyard.core.identity import AnyCredential, SessionCredential, parse_key_pair
from appyard.core.models import (
    Actor,
    Build,
    BuildStatus,
    Finding,
    MemberRole,
    StoreIssue,
    TokenKind,
    Version,
    VersionEvent,
)

SESSION_COOKIE = "appyard_session"
MISSING = "Sign in first (POST /appyard/v1/auth/login)."

STATUS: dict[type[errors.AppyardError], int] = {
    errors.BadRequest: 400,
    errors.Unauthenticated: 401,
    errors.Forbidden: 403,
    errors.NotFound: 404,
    errors.Conflict: 409,
    errors.UploadGone: 410,
    errors.InvalidArtifact: 422,
    errors.LimitExceeded: 429,
    errors.StorageFull: 507,
}


def render(error: ApiError) -> dict[str, Any]:
    return {"error": {"code": error.code, "message": error.message, **error.details}}


ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "error": {
            "type": "object",
            "description": "code and message, and the error's details (e.g. retry_after)",
            "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
            "required": ["code", "message"],
        }
    },
    "required": ["error"],
}


def extract(request: Request) -> AnyCredential | None:
    """A token (``key_id:key_secret``), or a portal session (bearer or cookie)."""
    value = bearer(request)
    if value is not None and ":" in value:
        return parse_key_pair(value, *TokenKind)
    session = value or request.cookies.get(SESSION_COOKIE)
    return SessionCredential(session) if session else None


_authenticated = authenticator(extract, MISSING)


def _person(request: Request, svc: Svc) -> Actor:
    """Any route but the build routes: people signed in (core refuses every token)."""
    actor = _authenticated(request, svc)
    identity.require_native(actor)
    return actor


def _build_reader(request: Request, svc: Svc) -> Actor:
    """The build routes the CI client uses: people, and the tenant's automation keys."""
    actor = _authenticated(request, svc)
    identity.require_native(actor, build_route=True)
    return actor


Caller = Annotated[Actor, Depends(_person)]
BuildReader = Annotated[Actor, Depends(_build_reader)]


class NewApp(BaseModel):
    slug: str = Field(max_length=100)
    name: str = Field(default="", max_length=255)


class NewMember(BaseModel):
    email: str = Field(max_length=255)
    role: MemberRole
    groups: list[str] = Field(default_factory=list, max_length=50)
    app: str | None = Field(default=None, max_length=100)
    language: str = "en"
    name: str = Field(default="", max_length=255)


class NewWebhook(BaseModel):
    url: str = Field(max_length=2048)
    events: list[str] = Field(default_factory=list, max_length=50)


class Redelivery(BaseModel):
    event_id: int


class Login(BaseModel):
    email: str
    password: str


class Rejection(BaseModel):
    reason: str


class Release(BaseModel):
    countries: list[str]
    vehicle_contexts: list[str] = Field(default_factory=list)
    rollout_percentage: int = 100


class Rollout(BaseModel):
    rollout_percentage: int


class Withdrawal(BaseModel):
    reason: str = ""


class NewIssue(BaseModel):
    title: str
    severity: str = "medium"


def version_body(uow: Any, v: Version) -> dict[str, Any]:
    return payloads.version(uow, v)


def event_body(e: VersionEvent) -> dict[str, Any]:
    return {
        "action": e.action,
        "from": e.from_status,
        "to": e.to_status,
        "actor": e.actor,
        "at": e.at.isoformat(),
        "details": e.details,
    }


def issue_body(i: StoreIssue) -> dict[str, Any]:
    return {
        "id": i.id,
        "version_id": i.version_id,
        "title": i.title,
        "severity": i.severity,
        "status": i.status.value,
        "created_by": i.created_by,
        "created_at": i.created_at.isoformat(),
        "resolved_at": i.resolved_at.isoformat() if i.resolved_at else None,
    }


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def build_body(b: Build) -> dict[str, Any]:
    """A build as appyard's own API shows it. ``number`` is the automation dialect's
    ``job_id``; ``signed`` says whether the output carries appyard's signature."""
    return {
        "id": b.id,
        "build_id": b.id,
        "number": b.number,
        "job_id": str(b.number),
        "status": b.status.value,
        "progress": b.progress.value,
        "platform": b.platform.value,
        "version": b.config_version.value,
        "file_name": b.file_name,
        "source": b.source,
        "app_id": b.app_id,
        "identifier": b.identifier,
        "version_code": b.version_code,
        "version_name": b.version_name,
        "size": b.size,
        "sha256": b.sha256,
        "output": (
            {"size": b.output_size, "sha256": b.output_sha256}
            if b.status is BuildStatus.COMPLETED and b.output_key
            else None
        ),
        "signed": b.signed,
        "signing_key_id": b.signing_key_id,
        "error_message": b.error_message,
        "signing_error_message": b.signing_error_message,
        "deleted": b.deleted,
        "created_at": _iso(b.created_at),
        "updated_at": _iso(b.updated_at),
    }


def finding_body(f: Finding) -> dict[str, Any]:
    return {
        "code": f.code,
        "severity": f.severity.value,
        "message": f.message,
        "details": f.details,
    }


def report_body(r: detections.Report) -> dict[str, Any]:
    return {
        "build_id": r.build.id,
        "job_id": str(r.build.number),
        "status": r.build.status.value,
        "platform": r.build.platform.value,
        "file_name": r.build.file_name,
        "inspected": r.build.facts is not None,
        "findings": [finding_body(f) for f in r.findings],
        "controls": [
            {
                "id": o.spec.id,
                "title": o.spec.title,
                "status": o.status,
                "severity": o.severity,
                "reason": o.reason or None,
            }
            for o in r.controls
        ],
        "summary": {
            s: sum(1 for f in r.findings if f.severity.value == s)
            for s in ("blocking", "warning", "info")
        },
    }


def build_routes(app: FastAPI) -> None:
    """The build routes (``/builds/{ref}``: a build id or number): the CI client's reads."""

    @app.get("/builds/{ref}")
    def get_build(ref: str, caller: BuildReader, svc: Svc) -> dict[str, Any]:
        """A build of the caller's tenant, by id or number."""
        with svc.uow() as uow:
            return build_body(builds.by_ref(uow, caller, ref=ref))

    @app.get("/builds/{ref}/findings")
    def get_findings(ref: str, caller: BuildReader, svc: Svc) -> dict[str, Any]:
        """The build's findings, and every control: passed, failed or skipped."""
        with svc.uow() as uow:
            build = builds.by_ref(uow, caller, ref=ref)
            return report_body(detections.report(uow, build))

    @app.get("/builds/{ref}/output")
    def get_output(ref: str, caller: BuildReader, svc: Svc) -> dict[str, Any]:
        """A signed URL for the build's output, with its size and SHA-256 to check."""
        with svc.uow() as uow:
            build = builds.by_ref(uow, caller, ref=ref)
            result = builds.download(
                uow, svc.store, caller, build_id=build.id, url_ttl=svc.policy.url_ttl
            )
        b = result.build
        return {
            "build_id": b.id,
            "job_id": str(b.number),
            "file_name": b.file_name,
            "size": b.output_size,
            "sha256": b.output_sha256,
            "signed": b.signed,
            "download_url": result.url,
            "headers": dict(result.request.headers),
            "expires_in": result.expires_in,
        }

    @app.get("/builds/{ref}/upload")
    def get_upload(ref: str, caller: BuildReader, svc: Svc) -> dict[str, Any]:
        """The build's input upload: its state, the parts the store holds and fresh signed
        URLs for the missing ones (how a client resumes an interrupted multipart upload)."""
        with svc.uow() as uow:
            build = builds.by_ref(uow, caller, ref=ref)
            seen = builds.upload_progress(uow, svc.store, svc.policy, caller, build_id=build.id)
        up = seen.upload
        return {
            "build_id": build.id,
            "job_id": str(build.number),
            "file_path": up.key,
            "state": up.state.value,
            "multipart": up.multipart,
            "upload_id": up.store_upload_id,
            "chunk_size": up.chunk_size,
            "total_parts": up.total_parts,
            "parts": [{"PartNumber": p.number, "ETag": p.etag, "Size": p.size} for p in seen.parts],
            "missing_part_urls": {str(n): r.url for n, r in seen.missing.items()},
            "expires_in": seen.expires_in,
        }


def routes(app: FastAPI) -> None:
    from appyard.api.native import install_links  # (it reads Caller from this module)

    install_links.routes(app)  # install links and their downloads
    build_routes(app)

    @app.post("/auth/login", response_model=None)
    def login(
        body: Login, request: Request, response: Response, svc: Svc
    ) -> dict[str, Any] | Response:
        """Failed sign-ins are throttled per account and per client address: 429 with
        ``Retry-After`` while locked (core/throttle.py)."""
        address = request.client.host if request.client else ""
        try:
            user, token = users.sign_in(
                svc, email=body.email, password=body.password, address=address
            )
        except throttle.SignInThrottled as exc:
            wait = str(exc.details.get("retry_after", 1))
            return error_response(
                API, ApiError(429, exc.code, exc.message, dict(exc.details)), {"Retry-After": wait}
            )
        response.set_cookie(
            SESSION_COOKIE,
            token,
            httponly=True,
            samesite="lax",
            max_age=int(users.SESSION_TTL.total_seconds()),
        )
        return {
            "token": token,
            "user": {
                "id": user.id,
                "email": user.email,
                "role": user.role.value,
                "tenant_id": user.tenant_id,
            },
        }

    @app.post("/auth/logout")
    def logout(request: Request, response: Response, svc: Svc) -> dict[str, bool]:
        """End the session, whether it came as the cookie or as a bearer token."""
        credential = extract(request)
        if isinstance(credential, SessionCredential):
            with svc.transaction() as uow:
                users.logout(uow, token=credential.token)
        response.delete_cookie(SESSION_COOKIE)
        return {"signed_out": True}

    # --- apps, people notified, webhook endpoints (tenant members) ---------------------------

    @app.post("/apps", status_code=201)
    def create_app(body: NewApp, caller: Caller, svc: Svc) -> dict[str, Any]:
        with svc.transaction() as uow:
            tenant_id = identity.require_member(caller, action="create apps")
            made = apps.create(uow, svc.clock, tenant_id=tenant_id, slug=body.slug, name=body.name)
        return {"id": made.id, "slug": made.slug, "name": made.name}

    @app.get("/members")
    def list_members(caller: Caller, svc: Svc) -> list[dict[str, Any]]:
        with svc.uow() as uow:
            tenant_id = identity.require_member(caller, action="see who is notified")
            return [
                payloads.member(m) for m in notifications.list_members(uow, tenant_id=tenant_id)
            ]

    @app.post("/members", status_code=201)
    def add_member(body: NewMember, caller: Caller, svc: Svc) -> dict[str, Any]:
        with svc.transaction() as uow:
            tenant_id = identity.require_member(caller, action="add people to notify")
            member = notifications.add_member(
                uow,
                svc.clock,
                tenant_id=tenant_id,
                email=body.email,
                role=body.role,
                groups=tuple(body.groups),
                app_slug=body.app,
                language=body.language,
                name=body.name,
            )
        return payloads.member(member)

    @app.delete("/members/{member_id}")
    def remove_member(member_id: str, caller: Caller, svc: Svc) -> dict[str, Any]:
        with svc.transaction() as uow:
            tenant_id = identity.require_member(caller, action="remove people")
            notifications.remove_member(uow, tenant_id=tenant_id, member_id=member_id)
        return {"id": member_id, "removed": True}

    @app.get("/webhooks")
    def list_webhooks(caller: Caller, svc: Svc) -> list[dict[str, Any]]:
        with svc.uow() as uow:
            return [payloads.webhook(w) for w in webhooks.list_for(uow, caller)]

    @app.post("/webhooks", status_code=201)
    def add_webhook(body: NewWebhook, caller: Caller, svc: Svc) -> dict[str, Any]:
        assert svc.sender is not None
        with svc.transaction() as uow:
            made = webhooks.add_for(
                uow,
                svc.clock,
                svc.sealer(),
                svc.sender,
                caller,
                url=body.url,
                events=tuple(body.events),
            )
        return {**payloads.webhook(made.webhook), "secret": made.secret}

    # before /webhooks/{webhook_id}/{action}, which would otherwise take "redeliver" as an action
    @app.post("/webhooks/{webhook_id}/redeliver")
    def redeliver(webhook_id: str, body: Redelivery, caller: Caller, svc: Svc) -> dict[str, Any]:
        with svc.transaction() as uow:
            job_id = webhooks.redeliver_for(
                uow, svc.clock, caller, webhook_id=webhook_id, event_id=body.event_id
            )
        return {"webhook_id": webhook_id, "event_id": body.event_id, "job_id": job_id}

    @app.post("/webhooks/{webhook_id}/{action}")
    def toggle_webhook(webhook_id: str, action: str, caller: Caller, svc: Svc) -> dict[str, Any]:
        if action not in ("disable", "enable"):
            raise errors.NotFound("Not found.")
        with svc.transaction() as uow:
            made = webhooks.set_disabled_for(
                uow, svc.clock, caller, webhook_id=webhook_id, disabled=action == "disable"
            )
        return payloads.webhook(made)

    @app.delete("/webhooks/{webhook_id}")
    def delete_webhook(webhook_id: str, caller: Caller, svc: Svc) -> dict[str, Any]:
        with svc.transaction() as uow:
            webhooks.delete_for(uow, svc.clock, caller, webhook_id=webhook_id)
        return {"id": webhook_id, "deleted": True}

    @app.get("/webhooks/{webhook_id}/deliveries")
    def webhook_deliveries(webhook_id: str, caller: Caller, svc: Svc) -> list[dict[str, Any]]:
        with svc.uow() as uow:
            found = webhooks.deliveries_for(uow, caller, webhook_id=webhook_id)
        return [payloads.delivery(d) for d in found]

    @app.get("/versions/{version_id}")
    def get_version(version_id: str, caller: Caller, svc: Svc) -> dict[str, Any]:
        with svc.transaction() as uow:
            v = versions.get(uow, caller, version_id=version_id)
            return version_body(uow, v)

    @app.get("/versions/{version_id}/history")
    def get_history(version_id: str, caller: Caller, svc: Svc) -> list[dict[str, Any]]:
        with svc.transaction() as uow:
            return [event_body(e) for e in versions.history(uow, caller, version_id=version_id)]

    @app.get("/versions/{version_id}/issues")
    def get_issues(version_id: str, caller: Caller, svc: Svc) -> list[dict[str, Any]]:
        with svc.transaction() as uow:
            return [issue_body(i) for i in versions.issues(uow, caller, version_id=version_id)]

    def act(caller: Actor, fn: Any, **kwargs: Any) -> dict[str, Any]:
        svc = app.state.services
        with svc.transaction() as uow:
            v = fn(uow, svc.clock, caller, **kwargs)
            return version_body(uow, v)

    @app.post("/versions/{version_id}/submit")
    def submit(version_id: str, caller: Caller) -> dict[str, Any]:
        return act(caller, versions.submit, version_id=version_id)

    @app.post("/versions/{version_id}/approve")
    def approve(version_id: str, caller: Caller) -> dict[str, Any]:
        return act(caller, versions.approve, version_id=version_id)

    @app.post("/versions/{version_id}/reject")
    def reject(version_id: str, body: Rejection, caller: Caller) -> dict[str, Any]:
        return act(caller, versions.reject, version_id=version_id, reason=body.reason)

    @app.post("/versions/{version_id}/release")
    def release(version_id: str, body: Release, caller: Caller) -> dict[str, Any]:
        return act(
            caller,
            versions.release,
            version_id=version_id,
            countries=body.countries,
            vehicle_contexts=body.vehicle_contexts,
            rollout_percentage=body.rollout_percentage,
        )

    @app.post("/versions/{version_id}/rollout")
    def rollout(version_id: str, body: Rollout, caller: Caller) -> dict[str, Any]:
        return act(
            caller, versions.set_rollout, version_id=version_id, percentage=body.rollout_percentage
        )

    @app.post("/versions/{version_id}/halt")
    def halt(version_id: str, caller: Caller) -> dict[str, Any]:
        return act(caller, versions.halt, version_id=version_id)

    @app.post("/versions/{version_id}/resume")
    def resume(version_id: str, caller: Caller) -> dict[str, Any]:
        return act(caller, versions.resume, version_id=version_id)

    @app.post("/versions/{version_id}/withdraw")
    def withdraw(version_id: str, body: Withdrawal, caller: Caller) -> dict[str, Any]:
        return act(caller, versions.withdraw, version_id=version_id, reason=body.reason)

    @app.post("/versions/{version_id}/issues", status_code=201)
    def file_issue(version_id: str, body: NewIssue, caller: Caller, svc: Svc) -> dict[str, Any]:
        with svc.transaction() as uow:
            issue = versions.file_issue(
                uow,
                svc.clock,
                caller,
                version_id=version_id,
                title=body.title,
                severity=body.severity,
            )
        return issue_body(issue)

    @app.post("/issues/{issue_id}/resolve")
    def resolve(issue_id: str, caller: Caller, svc: Svc) -> dict[str, Any]:
        with svc.transaction() as uow:
            issue = versions.resolve_issue(uow, svc.clock, caller, issue_id=issue_id)
        return issue_body(issue)


API = Dialect(
    name="native",
    prefix="/appyard/v1",
    title="appyard native API",
    routes=routes,
    statuses=STATUS,
    render=render,
    error_schema=ERROR_SCHEMA,
    security={
        "token": {"type": "http", "scheme": "bearer"},
        "session": {"type": "apiKey", "in": "cookie", "name": SESSION_COOKIE},
    },
    docs=True,
)
