"""Signing in and out; a developer's apps, builds and build pages; the audit trail."""

from __future__ import annotations

import csv
import io
import secrets
from typing import Any

from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from appyard import errors
from appyard.core import apps, audit, builds, install_links, throttle, users
from appyard.portal import views
from appyard.portal.web import (
    SESSION_COOKIE,
    SIGNIN_CSRF_COOKIE,
    Portal,
    Session,
    portal,
    safe_next,
)

RECENT = 8
DOWNLOADS_SHOWN = 20
EXPIRY_CHOICES = (("1d", "1 day"), ("7d", "7 days"), ("30d", "30 days"), ("90d", "90 days"))


def client_address(request: Request) -> str:
    return request.client.host if request.client else ""


def build_context(p: Portal, session: Session, ref: str) -> dict[str, Any]:
    """Everything a build's page shows (and its live part, polled while it processes)."""
    svc, actor = p.svc, session.actor
    with svc.transaction() as uow:
        build = builds.by_ref(uow, actor, ref=ref)
        app = apps.get(uow, actor, app_id=build.app_id) if build.app_id else None
        links = install_links.for_build(
            uow, svc.clock, svc.sealer(), actor, build_id=build.id, public_url=svc.public_url
        )
        return {
            "build": build,
            "app": app,
            "findings": builds.findings(uow, actor, build_id=build.id),
            "key": builds.signing_key_of(uow, actor, build=build),
            "links": links,
            "active_link": next((s for s in links if s.state == "active"), None),
            "downloads": install_links.downloads(
                uow, actor, build_id=build.id, limit=DOWNLOADS_SHOWN
            ),
            "download_count": install_links.download_count(uow, actor, build_id=build.id),
            "shareable": install_links.file_key(build) is not None,
            "expiry_choices": EXPIRY_CHOICES,
        }


def routes(app: FastAPI) -> None:
    # --- signing in and out -----------------------------------------------------------------

    @app.get("/signin")
    def signin_page(request: Request, next: str = "/") -> Response:
        p = portal(request)
        if p.session(request) is not None:
            return RedirectResponse(safe_next(next), status_code=303)
        token = request.cookies.get(SIGNIN_CSRF_COOKIE) or secrets.token_urlsafe(24)
        response = p.render(request, "signin.html", next=safe_next(next), csrf=token, email="")
        response.set_cookie(
            SIGNIN_CSRF_COOKIE,
            token,
            max_age=3600,
            path="/signin",
            httponly=True,
            secure=p.secure,
            samesite="strict",
        )
        return response

    @app.post("/signin")
    async def signin(request: Request) -> Response:
        p = portal(request)
        form = await p.form(request, None)
        email = form.get("email")
        password = (form.fields.get("password") or [""])[0]
        target = safe_next(form.get("next", "/"))
        again: dict[str, Any] = {"next": target, "csrf": form.get("csrf"), "email": email}
        try:
            _, token = await run_in_threadpool(
                users.sign_in,
                p.svc,
                email=email,
                password=password,
                address=client_address(request),
            )
        except throttle.SignInThrottled as exc:
            wait = str(exc.details.get("retry_after", 60))
            return p.render(
                request,
                "signin.html",
                status=429,
                headers={"Retry-After": wait},
                error=exc.message,
                **again,
            )
        except errors.Unauthenticated as exc:
            return p.render(request, "signin.html", status=401, error=exc.message, **again)
        response = RedirectResponse(target, status_code=303)
        p.set_session_cookie(response, token)
        response.delete_cookie(SIGNIN_CSRF_COOKIE, path="/signin")
        return response

    @app.post("/signout")
    async def signout(request: Request) -> Response:
        p = portal(request)
        session = p.signed_in(request)
        await p.form(request, session)

        def end() -> None:
            with p.svc.transaction() as uow:
                users.logout(uow, token=session.token)

        await run_in_threadpool(end)
        response = p.redirect("/signin", notice="You are signed out.")
        response.delete_cookie(SESSION_COOKIE, path="/")
        return response

    # --- apps and builds -------------------------------------------------------------------

    @app.get("/")
    def home(request: Request) -> Response:
        p = portal(request)
        session = p.signed_in(request)
        if session.staff:
            return RedirectResponse("/store", status_code=303)
        with p.svc.transaction() as uow:
            listed = apps.list_apps(uow, session.actor)
            recent = builds.recent(uow, session.actor, limit=RECENT)
            names = {s.app.id: views.display_name(s.app, s.latest) for s in listed}
        listed.sort(
            key=lambda s: s.latest.number if s.latest else 0,
            reverse=True,
        )
        return p.render(request, "apps.html", session, apps=listed, recent=recent, app_names=names)

    @app.get("/apps/{app_id}")
    def app_builds(request: Request, app_id: str, page: int = 1) -> Response:
        p = portal(request)
        session = p.signed_in(request)
        with p.svc.transaction() as uow:
            found = apps.get(uow, session.actor, app_id=app_id)
            listed = builds.for_app(uow, session.actor, app_id=found.id, page=page)
        return p.render(request, "app.html", session, app=found, page=listed)

    @app.get("/builds/{ref}")
    def build_page(request: Request, ref: str) -> Response:
        p = portal(request)
        session = p.signed_in(request)
        return p.render(request, "build.html", session, **build_context(p, session, ref))

    @app.get("/builds/{ref}/live")
    def build_live(request: Request, ref: str) -> Response:
        """The live part of a build's page, polled by portal.js while the build processes."""
        p = portal(request)
        session = p.signed_in(request)
        return p.render(request, "_build_live.html", session, **build_context(p, session, ref))

    @app.get("/builds/{ref}/icon")
    def build_icon(request: Request, ref: str) -> Response:
        p = portal(request)
        session = p.signed_in(request)
        with p.svc.uow() as uow:
            build = builds.by_ref(uow, session.actor, ref=ref)
            data = builds.icon(uow, p.svc.store, session.actor, build_id=build.id)
        if data is None:
            raise errors.NotFound("This build has no icon.")
        return Response(
            data, media_type="image/png", headers={"Cache-Control": "private, max-age=3600"}
        )

    @app.get("/builds/{ref}/download/{which}")
    def build_download(request: Request, ref: str, which: str) -> Response:
        """The original upload or the processed file, through a short-lived signed URL."""
        p = portal(request)
        session = p.signed_in(request)
        svc = p.svc
        with svc.uow() as uow:
            build = builds.by_ref(uow, session.actor, ref=ref)
            if which == "original":
                made = builds.download_input(
                    uow, svc.store, session.actor, build_id=build.id, url_ttl=300
                )
            elif which == "processed":
                made = builds.download(
                    uow, svc.store, session.actor, build_id=build.id, url_ttl=300
                )
            else:
                raise errors.NotFound("Download original or processed.")
        return RedirectResponse(made.url, status_code=303)

    @app.get("/builds/{ref}/downloads.csv")
    def downloads_csv(request: Request, ref: str) -> Response:
        """Every download through the build's install links, as CSV."""
        p = portal(request)
        session = p.signed_in(request)
        with p.svc.uow() as uow:
            build = builds.by_ref(uow, session.actor, ref=ref)
            rows = install_links.downloads(uow, session.actor, build_id=build.id)
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(["time", "build_id", "build_number", "link_id", "file", "client", "agent"])
        for d in rows:
            writer.writerow(
                [
                    d.at.isoformat(),
                    d.build_id,
                    build.number,
                    d.link_id,
                    d.file,
                    _cell(d.client_address),
                    _cell(d.user_agent),
                ]
            )
        name = f"downloads-build-{build.number}.csv"
        return Response(
            out.getvalue(),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="{name}"'},
        )

    # --- install links ---------------------------------------------------------------------

    @app.post("/builds/{ref}/install-links")
    async def create_link(request: Request, ref: str) -> Response:
        p = portal(request)
        session = p.signed_in(request)
        form = await p.form(request, session)

        def make() -> str:
            span = install_links.parse_expiry(form.get("expires", "7d"))
            svc = p.svc
            with svc.transaction() as uow:
                build = builds.by_ref(uow, session.actor, ref=ref)
                install_links.create(
                    uow,
                    svc.clock,
                    svc.sealer(),
                    session.actor,
                    build_id=build.id,
                    expires_in=span,
                    public_url=svc.public_url,
                )
            return build.id

        build_id = await run_in_threadpool(make)
        return p.redirect(f"/builds/{build_id}#install", notice="Install link created.")

    @app.post("/install-links/{link_id}/revoke")
    async def revoke_link(request: Request, link_id: str) -> Response:
        p = portal(request)
        session = p.signed_in(request)
        await p.form(request, session)

        def revoke() -> str:
            with p.svc.transaction() as uow:
                return install_links.revoke(
                    uow, p.svc.clock, session.actor, link_id=link_id
                ).build_id

        build_id = await run_in_threadpool(revoke)
        return p.redirect(f"/builds/{build_id}#install", notice="Install link revoked.")

    # --- audit -----------------------------------------------------------------------------

    @app.get("/audit")
    def audit_page(request: Request) -> Response:
        p = portal(request)
        session = p.signed_in(request)
        with p.svc.uow() as uow:
            entries = audit.trail(uow, session.actor, limit=200)
        return p.render(request, "audit.html", session, entries=entries)


def _cell(value: str) -> str:
    """A CSV cell a spreadsheet will not run as a formula."""
    return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value
