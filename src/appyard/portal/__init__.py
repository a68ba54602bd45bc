"""The web portal and install pages: server-rendered Jinja2 over core services, served by
``appyard serve`` at ``/`` of the API port (docs/portal.md, docs/install-pages.md)."""

from __future__ import annotations

from starlette.types import ASGIApp

from appyard.core.context import Services


def mount(svc: Services, *, secret: bytes) -> ASGIApp:
    """The portal as an ASGI app, to be mounted last at ``/`` (``secret`` keys its CSRF
    tokens)."""
    from appyard.portal import install, keys, pages, store, web

    return web.create(
        svc, secret=secret, routes=[pages.routes, keys.routes, store.routes, install.routes]
    )
