"""The store: versions in review, approved, live; each version's page with its findings,
facts, history and issues, and the actions the signed-in person may take now.

Which actions a page offers comes from core (``versions.allowed_actions``), and every action
goes through the same core function the native API calls, which checks the role again: a
button a role may not use is absent, and a forged request for it is refused (403)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from appyard import errors
from appyard.core import audit, versions
from appyard.core.models import VersionStatus
from appyard.portal.web import Form, portal

SECTIONS_STAFF = (
    ("review", "Waiting for review", (VersionStatus.IN_REVIEW,)),
    ("approved", "Approved, waiting for release", (VersionStatus.APPROVED,)),
    ("live", "Live", (VersionStatus.LIVE,)),
    (
        "closed",
        "Rejected, withdrawn and superseded",
        (VersionStatus.REJECTED, VersionStatus.WITHDRAWN, VersionStatus.SUPERSEDED),
    ),
)
SECTIONS_DEVELOPER = (
    ("drafts", "Drafts", (VersionStatus.DRAFT,)),
    ("review", "In review", (VersionStatus.IN_REVIEW, VersionStatus.APPROVED)),
    ("live", "Live", (VersionStatus.LIVE,)),
    (
        "closed",
        "Rejected, withdrawn and superseded",
        (VersionStatus.REJECTED, VersionStatus.WITHDRAWN, VersionStatus.SUPERSEDED),
    ),
)


def _split(value: str) -> list[str]:
    return [part for part in value.replace(";", ",").replace(" ", ",").split(",") if part]


def _percentage(form: Form, name: str, default: int = 100) -> int:
    raw = form.get(name, str(default))
    try:
        return int(raw)
    except ValueError:
        raise errors.InvalidField("The rollout is a whole percentage, 1 to 100.") from None


ACTIONS: dict[str, Callable[..., Any]] = {
    "submit": lambda uow, clock, actor, vid, form: versions.submit(
        uow, clock, actor, version_id=vid
    ),
    "approve": lambda uow, clock, actor, vid, form: versions.approve(
        uow, clock, actor, version_id=vid
    ),
    "reject": lambda uow, clock, actor, vid, form: versions.reject(
        uow, clock, actor, version_id=vid, reason=form.get("reason")
    ),
    "release": lambda uow, clock, actor, vid, form: versions.release(
        uow,
        clock,
        actor,
        version_id=vid,
        countries=_split(form.get("countries")) + form.getlist("country"),
        vehicle_contexts=_split(form.get("vehicle_contexts")),
        rollout_percentage=_percentage(form, "rollout_percentage"),
    ),
    "rollout": lambda uow, clock, actor, vid, form: versions.set_rollout(
        uow, clock, actor, version_id=vid, percentage=_percentage(form, "rollout_percentage")
    ),
    "halt": lambda uow, clock, actor, vid, form: versions.halt(uow, clock, actor, version_id=vid),
    "resume": lambda uow, clock, actor, vid, form: versions.resume(
        uow, clock, actor, version_id=vid
    ),
    "withdraw": lambda uow, clock, actor, vid, form: versions.withdraw(
        uow, clock, actor, version_id=vid, reason=form.get("reason")
    ),
    "issues": lambda uow, clock, actor, vid, form: versions.file_issue(
        uow,
        clock,
        actor,
        version_id=vid,
        title=form.get("title"),
        severity=form.get("severity", "medium"),
    ),
}
DONE = {
    "submit": "Submitted for review.",
    "approve": "Approved.",
    "reject": "Rejected.",
    "release": "Released.",
    "rollout": "Rollout raised.",
    "halt": "Rollout halted.",
    "resume": "Rollout resumed.",
    "withdraw": "Withdrawn.",
    "issues": "Issue filed.",
}


def routes(app: FastAPI) -> None:
    @app.get("/store")
    def store_page(request: Request) -> Response:
        p = portal(request)
        session = p.signed_in(request)
        sections = SECTIONS_STAFF if session.staff else SECTIONS_DEVELOPER
        shown = []
        with p.svc.uow() as uow:
            for key, title, statuses in sections:
                rows = [
                    versions.summarize(uow, session.actor, v)
                    for v in versions.listing(uow, session.actor, statuses=statuses, limit=100)
                ]
                shown.append({"key": key, "title": title, "rows": rows})
        return p.render(request, "store.html", session, sections=shown)

    @app.get("/store/versions/{version_id}")
    def version_page(request: Request, version_id: str) -> Response:
        p = portal(request)
        session = p.signed_in(request)
        actor = session.actor
        with p.svc.uow() as uow:
            version = versions.get(uow, actor, version_id=version_id)
            history = versions.history(uow, actor, version_id=version.id)
            context: dict[str, Any] = {
                "version": version,
                "app": versions.app_of(uow, actor, version_id=version.id),
                "build": versions.build_of(uow, actor, version_id=version.id),
                "findings": versions.findings_of(uow, actor, version_id=version.id),
                "runs": versions.runs(uow, actor, version_id=version.id),
                "history": history,
                "names": audit.names(uow, [e.actor for e in history]),
                "issues": versions.issues(uow, actor, version_id=version.id),
                "open_issues": versions.open_issue_count(uow, version),
                "allowed": versions.allowed_actions(uow, actor, version),
                "severities": versions.ISSUE_SEVERITIES,
            }
        return p.render(request, "version.html", session, **context)

    @app.post("/store/versions/{version_id}/{action}")
    async def act(request: Request, version_id: str, action: str) -> Response:
        p = portal(request)
        session = p.signed_in(request)
        form = await p.form(request, session)
        run = ACTIONS.get(action)
        if run is None:
            raise errors.NotFound(f"No store action {action!r}.")

        def go() -> None:
            with p.svc.transaction() as uow:
                run(uow, p.svc.clock, session.actor, version_id, form)

        try:
            await run_in_threadpool(go)
        except (errors.BadRequest, errors.Conflict) as exc:
            return p.redirect(f"/store/versions/{version_id}", error=exc.message)
        return p.redirect(f"/store/versions/{version_id}", notice=DONE[action])

    @app.post("/store/issues/{issue_id}/resolve")
    async def resolve(request: Request, issue_id: str) -> Response:
        p = portal(request)
        session = p.signed_in(request)
        await p.form(request, session)

        def go() -> str:
            with p.svc.transaction() as uow:
                return versions.resolve_issue(
                    uow, p.svc.clock, session.actor, issue_id=issue_id
                ).version_id

        version_id = await run_in_threadpool(go)
        return p.redirect(f"/store/versions/{version_id}", notice="Issue resolved.")
