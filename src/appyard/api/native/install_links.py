"""Install links in the native API: make one for a build, list them, revoke one, and read
the downloads made through them. A build is named by its id or its number (the automation
``job_id``); the answer's ``url`` is the install page, absolute (APPYARD_PUBLIC_URL)."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel, Field

from appyard.api.kit import Svc
from appyard.api.native.routes import BuildReader
from appyard.core import builds, install_links
from appyard.core.install_links import SharedLink
from appyard.core.models import InstallDownload, InstallLink


class NewLink(BaseModel):
    expires: str | int = Field(
        default="7d", description="How long the link lives: 30m, 12h, 7d, 2w or seconds."
    )


def link_body(link: InstallLink, url: str | None, state: str) -> dict[str, Any]:
    return {
        "id": link.id,
        "build_id": link.build_id,
        "url": url,
        "state": state,
        "created_by": link.created_by,
        "created_at": link.created_at.isoformat(),
        "expires_at": link.expires_at.isoformat(),
        "revoked_at": link.revoked_at.isoformat() if link.revoked_at else None,
    }


def shared_body(shared: SharedLink) -> dict[str, Any]:
    return link_body(shared.link, shared.url, shared.state)


def download_body(d: InstallDownload) -> dict[str, Any]:
    return {
        "id": d.id,
        "build_id": d.build_id,
        "link_id": d.link_id,
        "at": d.at.isoformat(),
        "client_address": d.client_address,
        "user_agent": d.user_agent,
        "file": d.file,
    }


def routes(app: FastAPI) -> None:
    @app.post("/builds/{build}/install-links", status_code=201)
    def create_install_link(
        build: str, body: NewLink, caller: BuildReader, svc: Svc
    ) -> dict[str, Any]:
        """A new install link for a completed build (409 while it is not)."""
        span = install_links.parse_expiry(body.expires)
        with svc.transaction() as uow:
            found = builds.by_ref(uow, caller, ref=build)
            shared = install_links.create(
                uow,
                svc.clock,
                svc.sealer(),
                caller,
                build_id=found.id,
                expires_in=span,
                public_url=svc.public_url,
            )
        return shared_body(shared)

    @app.get("/builds/{build}/install-links")
    def list_install_links(build: str, caller: BuildReader, svc: Svc) -> list[dict[str, Any]]:
        """The build's install links, newest first, with their state (active, expired,
        revoked)."""
        with svc.transaction() as uow:
            found = builds.by_ref(uow, caller, ref=build)
            links = install_links.for_build(
                uow,
                svc.clock,
                svc.sealer(),
                caller,
                build_id=found.id,
                public_url=svc.public_url,
            )
        return [shared_body(s) for s in links]

    @app.post("/install-links/{link_id}/revoke")
    def revoke_install_link(link_id: str, caller: BuildReader, svc: Svc) -> dict[str, Any]:
        """Revoke a link: its page answers 410 from now on."""
        with svc.transaction() as uow:
            link = install_links.revoke(uow, svc.clock, caller, link_id=link_id)
        return link_body(link, None, "revoked")

    @app.get("/builds/{build}/install-downloads")
    def list_install_downloads(build: str, caller: BuildReader, svc: Svc) -> list[dict[str, Any]]:
        """Every download through the build's install links, newest first."""
        with svc.transaction() as uow:
            found = builds.by_ref(uow, caller, ref=build)
            return [
                download_body(d) for d in install_links.downloads(uow, caller, build_id=found.id)
            ]
