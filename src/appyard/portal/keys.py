"""Keys and tokens: the tenant's API keys and tokens (made with the raw value shown once,
listed, disabled, deleted), its managed signing keys (uploaded, made default, deleted), its
webhook endpoints (added with the ``whsec_`` secret shown once, listed with their latest
deliveries, disabled, enabled, deleted; each with a page of its deliveries and "redeliver"),
and its plan limits with this week's use."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from appyard import errors
from appyard.core import apps, identity, signing_keys, tenants, webhooks
from appyard.core.models import Platform, TokenKind, Webhook
from appyard.portal.web import Portal, Session, portal

LATEST_DELIVERIES = 5  # shown with each endpoint in the list


def keys_context(p: Portal, session: Session) -> dict[str, Any]:
    svc, actor = p.svc, session.actor
    with svc.uow() as uow:
        tokens = identity.member_token_list(uow, actor)
        usage = tenants.usage(uow, svc.clock, actor)
        app_list = [s.app for s in apps.list_apps(uow, actor)]
        endpoints = [
            (w, webhooks.deliveries_for(uow, actor, webhook_id=w.id, limit=LATEST_DELIVERIES))
            for w in webhooks.list_for(uow, actor)
        ]
        try:
            keys = signing_keys.list_for(uow, actor)
            keys_note = ""
        except signing_keys.PlanRequired as exc:
            keys, keys_note = [], exc.message
    order = {kind: i for i, kind in enumerate(identity.MEMBER_KINDS)}
    tokens.sort(key=lambda t: (order.get(t.kind, 99), t.created_at))
    return {
        "tokens": tokens,
        "usage": usage,
        "apps": app_list,
        "app_names": {a.id: a.name for a in app_list},
        "signing_keys": keys,
        "keys_note": keys_note,
        "created": None,
        "webhooks": endpoints,
        "webhook_topics": webhooks.TOPICS,
        "created_webhook": None,
        "webhook_error": "",
        "webhook_form": {"url": "", "events": []},
    }


def routes(app: FastAPI) -> None:
    @app.get("/keys")
    def keys_page(request: Request) -> Response:
        p = portal(request)
        session = p.signed_in(request)
        return p.render(request, "keys.html", session, **keys_context(p, session))

    @app.post("/keys/tokens")
    async def create_token(request: Request) -> Response:
        """The raw value is on this response only: shown once, never stored."""
        p = portal(request)
        session = p.signed_in(request)
        form = await p.form(request, session)
        try:
            kind = TokenKind(form.get("kind"))
        except ValueError:
            raise errors.InvalidField("Choose what kind of key to create.", field="kind") from None

        def make() -> identity.IssuedToken:
            with p.svc.transaction() as uow:
                return identity.issue_member_token(
                    uow,
                    p.svc.clock,
                    session.actor,
                    kind=kind,
                    name=form.get("name"),
                    # The app field is for app tokens only (the form says so).
                    app_id=(form.get("app") or None) if kind is TokenKind.APP else None,
                )

        try:
            issued = await run_in_threadpool(make)
        except errors.AppyardError as exc:
            if exc.status >= 500:
                raise
            return p.redirect("/keys#tokens", error=f"The key was not created: {exc.message}")
        context = await run_in_threadpool(keys_context, p, session)
        context["created"] = issued
        return p.render(request, "keys.html", session, status=201, **context)

    @app.post("/keys/tokens/{token_id}/{action}")
    async def change_token(request: Request, token_id: str, action: str) -> Response:
        p = portal(request)
        session = p.signed_in(request)
        await p.form(request, session)
        change = {
            "disable": identity.disable_member_token,
            "delete": identity.delete_member_token,
        }.get(action)
        if change is None:
            raise errors.NotFound("Disable or delete a key.")

        def run() -> None:
            with p.svc.transaction() as uow:
                change(uow, p.svc.clock, session.actor, token_id=token_id)

        await run_in_threadpool(run)
        done = "disabled" if action == "disable" else "deleted"
        return p.redirect("/keys#tokens", notice=f"Key {token_id} {done}.")

    @app.post("/keys/signing")
    async def upload_signing_key(request: Request) -> Response:
        p = portal(request)
        session = p.signed_in(request)
        form = await p.form(request, session)
        upload = form.files.get("keystore")
        if upload is None:
            raise errors.InvalidField("Choose a keystore file (.jks, .p12, .pem).", field="file")
        try:
            platform = Platform(form.get("platform", "android"))
        except ValueError:
            raise errors.InvalidField("Platform is android or ios.", field="platform") from None

        def add() -> str:
            svc = p.svc
            with svc.transaction() as uow:
                key = signing_keys.add_for(
                    uow,
                    svc.clock,
                    svc.sealer(),
                    session.actor,
                    name=form.get("name") or upload[0],
                    platform=platform,
                    data=upload[1],
                    password=(form.fields.get("password") or [""])[0],
                    alias=form.get("alias") or None,
                    make_default=form.flag("default"),
                )
            return key.name

        try:
            name = await run_in_threadpool(add)
        except errors.AppyardError as exc:
            if exc.status >= 500:
                raise
            return p.redirect("/keys#signing", error=f"The key was not added: {exc.message}")
        return p.redirect("/keys#signing", notice=f"Signing key {name!r} added.")

    @app.post("/keys/signing/{key_id}/{action}")
    async def change_signing_key(request: Request, key_id: str, action: str) -> Response:
        p = portal(request)
        session = p.signed_in(request)
        await p.form(request, session)

        def run() -> str:
            svc = p.svc
            with svc.transaction() as uow:
                if action == "default":
                    key = signing_keys.set_default_for(uow, svc.clock, session.actor, key_id=key_id)
                    return f"{key.name!r} is now the default {key.platform.value} key."
                if action == "delete":
                    key = signing_keys.delete_for(
                        uow, svc.clock, svc.store, session.actor, key_id=key_id
                    )
                    return f"Signing key {key.name!r} deleted."
            raise errors.NotFound("Make a key the default, or delete it.")

        notice = await run_in_threadpool(run)
        return p.redirect("/keys#signing", notice=notice)

    # --- webhook endpoints --------------------------------------------------------------------

    @app.post("/keys/webhooks")
    async def add_webhook(request: Request) -> Response:
        """The whsec_ secret is on this response only: shown once (it stays sealed)."""
        p = portal(request)
        session = p.signed_in(request)
        form = await p.form(request, session)
        url, events = form.get("url"), tuple(form.getlist("events"))  # none ticked: every event

        def add() -> webhooks.NewWebhook:
            svc = p.svc
            if svc.sender is None:
                raise RuntimeError("This appyard was started without a webhook sender.")
            with svc.transaction() as uow:
                return webhooks.add_for(
                    uow, svc.clock, svc.sealer(), svc.sender, session.actor, url=url, events=events
                )

        try:
            made = await run_in_threadpool(add)
        except errors.AppyardError as exc:
            if exc.status >= 500:
                raise
            context = await run_in_threadpool(keys_context, p, session)
            context["webhook_error"] = exc.message
            context["webhook_form"] = {"url": url, "events": list(events)}
            return p.render(request, "keys.html", session, status=exc.status, **context)
        context = await run_in_threadpool(keys_context, p, session)
        context["created_webhook"] = made
        return p.render(request, "keys.html", session, status=201, **context)

    @app.get("/keys/webhooks/{webhook_id}")
    def webhook_page(request: Request, webhook_id: str) -> Response:
        p = portal(request)
        session = p.signed_in(request)
        with p.svc.uow() as uow:
            webhook = webhooks.get_for(uow, session.actor, webhook_id=webhook_id)
            found = webhooks.deliveries_for(uow, session.actor, webhook_id=webhook.id)
        return p.render(request, "webhook.html", session, webhook=webhook, deliveries=found)

    @app.post("/keys/webhooks/{webhook_id}/redeliver")
    async def redeliver(request: Request, webhook_id: str) -> Response:
        p = portal(request)
        session = p.signed_in(request)
        form = await p.form(request, session)
        try:
            event_id = int(form.get("event"))
        except ValueError:
            raise errors.InvalidField("Name the event to send again.", field="event") from None

        def run() -> None:
            svc = p.svc
            with svc.transaction() as uow:
                webhooks.redeliver_for(
                    uow, svc.clock, session.actor, webhook_id=webhook_id, event_id=event_id
                )

        await run_in_threadpool(run)
        return p.redirect(
            f"/keys/webhooks/{webhook_id}",
            notice=f"Event {event_id} will be delivered again; the attempt appears below.",
        )

    @app.post("/keys/webhooks/{webhook_id}/{action}")
    async def change_webhook(request: Request, webhook_id: str, action: str) -> Response:
        p = portal(request)
        session = p.signed_in(request)
        form = await p.form(request, session)
        if action not in ("disable", "enable", "delete"):
            raise errors.NotFound("Disable, enable or delete an endpoint.")

        def run() -> Webhook:
            svc = p.svc
            with svc.transaction() as uow:
                if action == "delete":
                    return webhooks.delete_for(uow, svc.clock, session.actor, webhook_id=webhook_id)
                return webhooks.set_disabled_for(
                    uow,
                    svc.clock,
                    session.actor,
                    webhook_id=webhook_id,
                    disabled=action == "disable",
                )

        webhook = await run_in_threadpool(run)
        done = {"disable": "disabled", "enable": "enabled", "delete": "deleted"}[action]
        back = f"/keys/webhooks/{webhook.id}"
        if action == "delete" or form.get("back") != "endpoint":
            back = "/keys#webhooks"
        return p.redirect(back, notice=f"Webhook endpoint {webhook.url} {done}.")
