"""Install pages: ``/i/<token>``, made for a phone, open to whoever holds the link.

One install button, a plain link: an APK downloads (Android then offers to install it); an
IPA signed for ad-hoc, enterprise or development distribution installs over the air from an
``itms-services://`` link to the manifest plist served here; an AAB cannot be installed, so
the page says so and offers its universal APK when there is one. Each file download is
recorded by core (build, link, time, client address, user agent). An expired or revoked
link answers 410 with a page that says so."""

from __future__ import annotations

from urllib.parse import quote

from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from appyard.core import install_links
from appyard.portal.views import qr_svg
from appyard.portal.web import Portal, portal


def _gone(p: Portal, request: Request, exc: install_links.InstallLinkGone) -> Response:
    return p.render(
        request,
        "install_gone.html",
        status=410,
        title="This install link no longer works",
        message=exc.message,
    )


def _missing(p: Portal, request: Request) -> Response:
    return p.render(
        request,
        "install_gone.html",
        status=404,
        title="No such install link",
        message="Check that the link was copied whole, or ask for a new one.",
    )


def routes(app: FastAPI) -> None:
    @app.get("/i/{token}")
    def install_page(request: Request, token: str) -> Response:
        p = portal(request)
        try:
            with p.svc.uow() as uow:
                opened = install_links.open_link(uow, p.svc.clock, token=token)
        except install_links.InstallLinkGone as exc:
            return _gone(p, request, exc)
        except install_links.InstallLinkNotFound:
            return _missing(p, request)
        page_url = install_links.url(p.svc.public_url, token)
        manifest = f"{page_url}/manifest.plist"
        return p.render(
            request,
            "install.html",
            opened=opened,
            build=opened.build,
            page_url=page_url,
            token=token,
            qr=qr_svg(page_url),
            itms=f"itms-services://?action=download-manifest&url={quote(manifest, safe='')}",
            https=p.svc.public_url.lower().startswith("https://"),
            changelog=str(opened.build.meta.get("changelog") or "").strip(),
            has_icon=bool((opened.build.facts or {}).get("icon")),
        )

    def _download(request: Request, token: str, *, universal: bool) -> Response:
        p = portal(request)
        try:
            with p.svc.transaction() as uow:
                signed = install_links.download(
                    uow,
                    p.svc.clock,
                    p.svc.store,
                    token=token,
                    client_address=request.client.host if request.client else "",
                    user_agent=request.headers.get("user-agent", ""),
                    universal=universal,
                )
        except install_links.InstallLinkGone as exc:
            return _gone(p, request, exc)
        except install_links.InstallLinkNotFound:
            return _missing(p, request)
        return RedirectResponse(signed.url, status_code=302)

    @app.get("/i/{token}/download")
    def install_download(request: Request, token: str) -> Response:
        return _download(request, token, universal=False)

    @app.get("/i/{token}/app.ipa")
    def install_ipa(request: Request, token: str) -> Response:
        """The IPA as the OTA manifest names it (iOS fetches it, after the manifest)."""
        return _download(request, token, universal=False)

    @app.get("/i/{token}/universal.apk")
    def install_universal(request: Request, token: str) -> Response:
        return _download(request, token, universal=True)

    @app.get("/i/{token}/manifest.plist")
    def install_manifest(request: Request, token: str) -> Response:
        p = portal(request)
        try:
            with p.svc.uow() as uow:
                opened = install_links.open_link(uow, p.svc.clock, token=token)
        except install_links.InstallLinkGone as exc:
            return _gone(p, request, exc)
        except install_links.InstallLinkNotFound:
            return _missing(p, request)
        build = opened.build
        if opened.file != "ipa":
            return _missing(p, request)
        body = install_links.ota_manifest(
            ipa_url=f"{install_links.url(p.svc.public_url, token)}/app.ipa",
            bundle_id=build.identifier or "",
            version=build.version_name or build.version_code or "",
            title=(opened.app.name if opened.app else None) or build.identifier or "App",
        )
        return Response(body, media_type="application/xml")

    @app.get("/i/{token}/icon")
    def install_icon(request: Request, token: str) -> Response:
        p = portal(request)
        try:
            with p.svc.uow() as uow:
                data = install_links.icon(uow, p.svc.clock, p.svc.store, token=token)
        except install_links.InstallLinkGone as exc:
            return _gone(p, request, exc)
        except install_links.InstallLinkNotFound:
            return _missing(p, request)
        if data is None:
            return _missing(p, request)
        return Response(data, media_type="image/png", headers={"Cache-Control": "max-age=3600"})
