"""The portal over create_app() with a real database and store: sessions, CSRF, throttled
sign-ins, install pages (APK, AAB, IPA), downloads and their CSV, the native API's install
links, and who may do what in the store."""

from __future__ import annotations

import csv
import io
import plistlib
import re
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

import pytest
from fastapi.testclient import TestClient

from appyard.app import create_app
from appyard.core.models import Platform, Role
from appyard.runtime import Runtime, build_runtime
from appyard.settings import Settings
from tests.conftest import FakeClock, TenantKey, upload_build
from tests.going_out import Receiver
from tests.portal.helpers import PASSWORD, completed_build, csrf_in, make_user, sign_in

APK = Path(__file__).resolve().parents[1] / "fixtures" / "fixture-release-v1v2v3.apk"


@pytest.fixture
def client(runtime: Runtime) -> Iterator[TestClient]:
    with TestClient(create_app(runtime=runtime, start_worker=False)) as c:
        yield c


@pytest.fixture
def dev(runtime: Runtime, tenant: TenantKey, client: TestClient) -> TestClient:
    make_user(runtime, "dev@acme.test", Role.DEVELOPER, "acme")
    assert sign_in(client, "dev@acme.test").status_code == 303
    return client


def page_csrf(client: TestClient, path: str = "/keys") -> str:
    return csrf_in(client.get(path).text)


# --- sessions ------------------------------------------------------------------------------------


def test_signing_in_sets_an_httponly_lax_session_cookie_and_signing_out_ends_it(
    runtime: Runtime, tenant: TenantKey, client: TestClient
) -> None:
    make_user(runtime, "dev@acme.test", Role.DEVELOPER, "acme")
    assert client.get("/keys", follow_redirects=False).headers["location"] == "/signin?next=/keys"
    r = sign_in(client, "dev@acme.test")
    assert r.status_code == 303 and r.headers["location"] == "/"
    cookie = next(c for c in r.headers.get_list("set-cookie") if c.startswith("appyard_session="))
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Secure" not in cookie
    session = client.cookies["appyard_session"]
    assert client.get("/keys").status_code == 200
    out = client.post("/signout", data={"csrf": page_csrf(client)}, follow_redirects=False)
    assert out.status_code == 303 and out.headers["location"] == "/signin"
    client.cookies.set("appyard_session", session)  # the old cookie is worth nothing now
    assert client.get("/keys", follow_redirects=False).status_code == 303


def test_the_session_cookie_is_secure_when_the_public_url_is_https(
    settings: Settings, clock: FakeClock
) -> None:
    runtime = build_runtime(settings.model_copy(update={"public_url": "https://yard.example"}))
    try:
        make_user(runtime, "admin@store.test", Role.STORE_ADMIN)
        app = create_app(runtime=runtime, start_worker=False)
        with TestClient(app, base_url="https://testserver") as c:
            r = sign_in(c, "admin@store.test")
            cookies = r.headers.get_list("set-cookie")
            assert any(x.startswith("appyard_session=") and "Secure" in x for x in cookies)
    finally:
        runtime.engine.dispose()


def test_a_form_post_without_its_token_is_refused(dev: TestClient, tenant: TenantKey) -> None:
    for path, data in (
        ("/keys/tokens", {"kind": "automation", "name": "sneaky"}),
        ("/keys/tokens", {"kind": "automation", "csrf": "forged-token"}),
        ("/signout", {}),
    ):
        r = dev.post(path, data=data)
        assert r.status_code == 403, (path, r.text)
        assert "did not come from your current session" in r.text
    assert "sneaky" not in dev.get("/keys").text
    # the sign-in form carries a token of its own (its cookie), before there is a session
    dev.cookies.clear()
    r = dev.post("/signin", data={"email": "dev@acme.test", "password": PASSWORD})
    assert r.status_code == 403


def test_failed_sign_ins_are_throttled_per_account_with_retry_after(
    runtime: Runtime, tenant: TenantKey, client: TestClient, clock: FakeClock
) -> None:
    make_user(runtime, "dev@acme.test", Role.DEVELOPER, "acme")
    for _ in range(5):
        assert sign_in(client, "dev@acme.test", "wrong password").status_code == 401
    r = sign_in(client, "dev@acme.test", "wrong password")
    assert r.status_code == 401  # the 6th failure locks the account for a moment
    r = sign_in(client, "dev@acme.test")  # even the right password waits
    assert r.status_code == 429 and int(r.headers["Retry-After"]) >= 1
    assert "Too many failed sign-ins" in r.text
    native = client.post(
        "/appyard/v1/auth/login", json={"email": "dev@acme.test", "password": PASSWORD}
    )
    assert native.status_code == 429 and native.headers["Retry-After"]
    assert native.json()["error"]["code"] == "auth.throttled"
    clock.advance(seconds=int(r.headers["Retry-After"]) + 1)
    assert sign_in(client, "dev@acme.test").status_code == 303


# --- pages ---------------------------------------------------------------------------------------


def test_store_staff_land_on_the_review_queue_and_have_no_tenant_pages(
    runtime: Runtime, client: TestClient
) -> None:
    make_user(runtime, "reviewer@store.test", Role.STORE_REVIEWER)
    sign_in(client, "reviewer@store.test")
    r = client.get("/", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/store"
    assert "Review queue" in client.get("/store").text
    keys = client.get("/keys")
    assert keys.status_code == 403 and "tenant member" in keys.text
    assert 'href="/keys"' not in client.get("/store").text


def test_the_apps_page_lists_apps_with_their_latest_build(
    runtime: Runtime, tenant: TenantKey, dev: TestClient
) -> None:
    build = completed_build(
        runtime,
        tenant.tenant_id,
        file_name="app.apk",
        platform=Platform.ANDROID,
        identifier="com.example.shop",
        version_code="42",
        meta={"deployer": {"name": "GitHub Actions", "info": {"commit": "0123456789abcdef0"}}},
    )
    home = dev.get("/").text
    assert "com.example.shop" in home and "2.0.0" in home and "Completed" in home.title()
    page = dev.get(f"/apps/{build.app_id}").text
    assert "GitHub Actions" in page and "0123456789" in page and "Test" in page
    assert dev.get(f"/builds/{build.number}").status_code == 200  # by number too
    assert dev.get("/builds/bd_nope").status_code == 404


def test_keys_are_shown_once_and_can_be_disabled_and_deleted(
    tenant: TenantKey, dev: TestClient
) -> None:
    r = dev.post("/keys/tokens", data={"csrf": page_csrf(dev), "kind": "ci", "name": "pipeline"})
    assert r.status_code == 201
    raw = re.search(r'data-test="raw-key">([^<]+)<', r.text)
    assert raw and raw.group(1).startswith("ci_")
    key_id = raw.group(1).split(":")[0]
    assert raw.group(1) not in dev.get("/keys").text
    dev.post(f"/keys/tokens/{key_id}/disable", data={"csrf": page_csrf(dev)})
    ci = {"Authorization": f"Bearer {raw.group(1)}"}
    assert dev.get("/portal/api/ci-tokens", headers=ci).status_code == 401
    dev.post(f"/keys/tokens/{key_id}/delete", data={"csrf": page_csrf(dev)})
    assert key_id not in dev.get("/keys").text
    audit = dev.get("/audit").text
    assert "Key created" in audit and "Key disabled" in audit and "Key deleted" in audit


def test_a_signing_key_is_uploaded_made_default_and_deleted(dev: TestClient) -> None:
    keystore = (
        Path(__file__).resolve().parents[1] / "fixtures" / "keys" / "release.p12"
    ).read_bytes()
    r = dev.post(
        "/keys/signing",
        data={
            "csrf": page_csrf(dev),
            "name": "release",
            "platform": "android",
            "password": "fixture-release",
            "alias": "release",
        },
        files={"keystore": ("release.p12", keystore, "application/x-pkcs12")},
    )
    assert r.status_code == 200 and "Signing key &#39;release&#39; added." in r.text
    assert "CN=Appyard Fixture Release" in r.text and ">default<" in r.text
    bad = dev.post(
        "/keys/signing",
        data={"csrf": page_csrf(dev), "name": "x", "platform": "android", "password": "nope"},
        files={"keystore": ("release.p12", keystore, "application/x-pkcs12")},
    )
    assert "The key was not added" in bad.text
    key_id = re.search(r"/keys/signing/(sk_[0-9a-f]+)/delete", r.text)
    assert key_id
    gone = dev.post(f"/keys/signing/{key_id.group(1)}/delete", data={"csrf": page_csrf(dev)})
    assert "deleted" in gone.text and "CN=Appyard Fixture Release" not in gone.text


# --- install links -------------------------------------------------------------------------------


def make_link(client: TestClient, build_id: str, expires: str = "7d") -> str:
    r = client.post(
        f"/builds/{build_id}/install-links",
        data={"csrf": page_csrf(client, f"/builds/{build_id}"), "expires": expires},
    )
    assert r.status_code == 200, r.text
    found = re.search(r'data-test="install-url">([^<]+)<', r.text)
    assert found, r.text
    return urlsplit(found.group(1)).path


def test_an_apk_install_page_installs_records_downloads_and_expires(
    runtime: Runtime, tenant: TenantKey, dev: TestClient, clock: FakeClock
) -> None:
    build = completed_build(
        runtime,
        tenant.tenant_id,
        file_name="shop.apk",
        platform=Platform.ANDROID,
        identifier="com.example.shop",
        version_code="42",
        meta={"changelog": "Fixed the checkout.\nFaster start."},
    )
    path = make_link(dev, build.id)
    anyone = TestClient(dev.app)
    page = anyone.get(path)
    assert page.status_code == 200
    assert 'data-test="install-button"' in page.text and f'href="{path}/download"' in page.text
    assert "Fixed the checkout." in page.text and "<svg" in page.text
    assert page.headers["referrer-policy"] == "no-referrer"
    got = anyone.get(
        f"{path}/download", headers={"User-Agent": "Tester/1 =cmd"}, follow_redirects=False
    )
    assert got.status_code == 302 and "/_blob/" in got.headers["location"]
    downloads = dev.get(f"/builds/{build.id}/downloads.csv")
    rows = list(csv.reader(io.StringIO(downloads.text)))
    assert rows[0][:3] == ["time", "build_id", "build_number"]
    assert rows[1][1] == build.id and rows[1][4] == "apk" and rows[1][6] == "Tester/1 =cmd"
    assert "1</strong> download" in dev.get(f"/builds/{build.id}").text
    clock.advance(days=8)
    gone = anyone.get(path)
    assert gone.status_code == 410 and "expired" in gone.text
    assert anyone.get(f"{path}/download").status_code == 410
    assert anyone.get("/i/not-a-real-token").status_code == 404


def test_csv_cells_never_start_a_formula(
    runtime: Runtime, tenant: TenantKey, dev: TestClient
) -> None:
    build = completed_build(
        runtime,
        tenant.tenant_id,
        file_name="a.apk",
        platform=Platform.ANDROID,
        identifier="com.example.a",
        version_code="1",
    )
    path = make_link(dev, build.id)
    TestClient(dev.app).get(f"{path}/download", headers={"User-Agent": "=HYPERLINK(1)"})
    rows = list(csv.reader(io.StringIO(dev.get(f"/builds/{build.id}/downloads.csv").text)))
    assert rows[1][6] == "'=HYPERLINK(1)"


def test_an_aab_page_says_it_cannot_install_and_offers_the_universal_apk(
    runtime: Runtime, tenant: TenantKey, dev: TestClient
) -> None:
    common = {"identifier": "com.example.maps", "platform": Platform.ANDROID}
    bundle = completed_build(
        runtime,
        tenant.tenant_id,
        file_name="maps.aab",
        version_code="7",
        **common,  # type: ignore[arg-type]
    )
    path = make_link(dev, bundle.id)
    anyone = TestClient(dev.app)
    page = anyone.get(path).text
    assert "cannot be installed on a device directly" in page
    assert 'data-test="install-button"' not in page
    apk = completed_build(
        runtime,
        tenant.tenant_id,
        file_name="maps-universal.apk",
        version_code="7",
        data=b"PK universal apk",
        **common,  # type: ignore[arg-type]
    )
    page = anyone.get(path).text
    assert f'href="{path}/universal.apk"' in page
    got = anyone.get(f"{path}/universal.apk", follow_redirects=True)
    assert got.content == b"PK universal apk"
    rows = list(csv.reader(io.StringIO(dev.get(f"/builds/{bundle.id}/downloads.csv").text)))
    assert rows[1][4] == "universal-apk"
    assert apk.id != bundle.id


@pytest.mark.parametrize("public_url", ["http://testserver", "https://yard.example"])
def test_an_ipa_page_links_an_ota_manifest(
    settings: Settings, clock: FakeClock, public_url: str
) -> None:
    runtime = build_runtime(settings.model_copy(update={"public_url": public_url}), clock=clock)
    try:
        from tests.conftest import make_tenant

        t = make_tenant(runtime)
        make_user(runtime, "dev@acme.test", Role.DEVELOPER, "acme")
        build = completed_build(
            runtime,
            t.tenant_id,
            file_name="Shop.ipa",
            platform=Platform.IOS,
            identifier="com.example.shop",
            version_code="120",
            version_name="1.2",
            facts={"bundle_id": "com.example.shop", "signature": {"profile_type": "ad-hoc"}},
        )
        app = create_app(runtime=runtime, start_worker=False)
        with TestClient(app, base_url=public_url.replace("yard.example", "testserver")) as c:
            sign_in(c, "dev@acme.test")
            path = make_link(c, build.id)
            page = c.get(path).text
            itms = re.search(r'href="(itms-services://[^"]+)"', page)
            assert itms, page
            query = parse_qs(urlsplit(itms.group(1).replace("&amp;", "&")).query)
            assert query["action"] == ["download-manifest"]
            manifest_url = unquote(query["url"][0])
            assert manifest_url == f"{public_url}{path}/manifest.plist"
            manifest = plistlib.loads(c.get(f"{path}/manifest.plist").content)
            item = manifest["items"][0]
            assert item["metadata"]["bundle-identifier"] == "com.example.shop"
            assert item["metadata"]["bundle-version"] == "1.2"
            assert item["metadata"]["title"] == "com.example.shop"
            assert item["assets"][0]["url"] == f"{public_url}{path}/app.ipa"
            assert ('data-test="https-note"' in page) is public_url.startswith("http:")
            got = c.get(f"{path}/app.ipa", follow_redirects=False)
            assert got.status_code == 302
    finally:
        runtime.engine.dispose()


def test_install_links_in_the_native_api(
    runtime: Runtime, tenant: TenantKey, client: TestClient
) -> None:
    build = completed_build(
        runtime,
        tenant.tenant_id,
        file_name="a.apk",
        platform=Platform.ANDROID,
        identifier="com.example.a",
        version_code="1",
    )
    key = {"Authorization": f"Bearer {tenant.key}"}
    made = client.post(
        f"/appyard/v1/builds/{build.number}/install-links", json={"expires": "2d"}, headers=key
    )
    assert made.status_code == 201, made.text
    body = made.json()
    assert body["build_id"] == build.id and body["state"] == "active"
    assert re.fullmatch(r"http://testserver/i/[A-Za-z0-9_-]{32}", body["url"])
    listed = client.get(f"/appyard/v1/builds/{build.id}/install-links", headers=key).json()
    assert [x["id"] for x in listed] == [body["id"]] and listed[0]["url"] == body["url"]
    client.get(urlsplit(body["url"]).path + "/download", headers={"User-Agent": "curl/8"})
    downloads = client.get(f"/appyard/v1/builds/{build.id}/install-downloads", headers=key)
    assert downloads.json()[0]["user_agent"] == "curl/8"
    revoked = client.post(f"/appyard/v1/install-links/{body['id']}/revoke", headers=key)
    assert revoked.json()["state"] == "revoked"
    assert client.get(urlsplit(body["url"]).path).status_code == 410
    bad = client.post(
        f"/appyard/v1/builds/{build.id}/install-links", json={"expires": "9y"}, headers=key
    )
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "request.invalid_field"
    paths = client.get("/appyard/v1/openapi.json").json()["paths"]
    assert "/builds/{build}/install-links" in paths and "/install-links/{link_id}/revoke" in paths


def test_a_build_still_processing_gets_no_install_link(
    runtime: Runtime, tenant: TenantKey, dev: TestClient
) -> None:
    build = upload_build(runtime, tenant, APK)  # queued, no worker ran
    r = dev.post(
        f"/builds/{build.id}/install-links",
        data={"csrf": page_csrf(dev, f"/builds/{build.id}")},
    )
    assert r.status_code == 409 and "completed builds" in r.text
    page = dev.get(f"/builds/{build.id}").text
    assert f'data-poll="/builds/{build.id}/live"' in page  # the page refreshes itself
    assert 'http-equiv="refresh"' in page  # and so without JavaScript


# --- webhook endpoints ---------------------------------------------------------------------------

PUBLIC_HOOK = "https://1.1.1.1/hooks/appyard"  # a public address; no worker runs, nothing is sent


def add_hook(client: TestClient, url: str = PUBLIC_HOOK, events: tuple[str, ...] = ()) -> str:
    r = client.post(
        "/keys/webhooks", data={"csrf": page_csrf(client), "url": url, "events": list(events)}
    )
    assert r.status_code == 201, r.text
    secret = re.search(r'data-test="webhook-secret">([^<]+)<', r.text)
    assert secret and secret.group(1).startswith("whsec_")
    return secret.group(1)


def hook_id(html: str) -> str:
    found = re.findall(r'data-webhook="(wh_[^"]+)"', html)
    assert len(found) == 1, found
    return found[0]


def test_a_webhook_endpoint_shows_its_secret_once_and_is_disabled_enabled_and_deleted(
    dev: TestClient,
) -> None:
    secret = add_hook(dev, events=("build.processed", "version.released"))
    page = dev.get("/keys").text
    assert secret not in page and "whsec_" not in page  # never shown again
    assert PUBLIC_HOOK in page and "build.processed, version.released" in page
    wid = hook_id(page)
    assert "none yet" in page
    r = dev.post(f"/keys/webhooks/{wid}/disable", data={"csrf": page_csrf(dev)})
    assert r.status_code == 200 and "disabled." in r.text  # followed the redirect to /keys
    assert f'action="/keys/webhooks/{wid}/enable"' in r.text
    detail = dev.get(f"/keys/webhooks/{wid}").text
    assert ">disabled<" in detail and "Nothing delivered yet" in detail and secret not in detail
    r = dev.post(
        f"/keys/webhooks/{wid}/enable",
        data={"csrf": csrf_in(detail), "back": "endpoint"},
        follow_redirects=False,
    )
    assert r.headers["location"] == f"/keys/webhooks/{wid}"  # back to the endpoint's page
    assert f'action="/keys/webhooks/{wid}/disable"' in dev.get("/keys").text
    r = dev.post(f"/keys/webhooks/{wid}/delete", data={"csrf": page_csrf(dev)})
    assert "deleted." in r.text and 'data-test="webhooks"' not in r.text
    assert dev.get(f"/keys/webhooks/{wid}").status_code == 404
    audit = dev.get("/audit").text
    for what in ("added", "disabled", "enabled", "deleted"):
        assert f"Webhook endpoint {what}" in audit
    assert secret not in audit


def test_a_refused_webhook_url_is_explained_on_the_form(dev: TestClient) -> None:
    for url, message in (
        ("http://127.0.0.1:9/hook", "loopback, private or link-local"),
        ("http://169.254.169.254/latest/meta-data", "loopback, private or link-local"),
        ("ftp://example.com/x", "http(s) URL"),
        ("not a url", "http(s) URL"),
    ):
        r = dev.post(
            "/keys/webhooks",
            data={"csrf": page_csrf(dev), "url": url, "events": ["build.failed"]},
        )
        assert r.status_code == 400, (url, r.status_code)
        error = re.search(r'data-test="webhook-error">([^<]+)<', r.text)
        assert error and message in error.group(1), (url, r.text[-3000:])
        assert f'value="{url}"' in r.text  # what was typed stays, and so do the events ticked
        assert 'value="build.failed" checked' in r.text
    unknown = dev.post(
        "/keys/webhooks",
        data={"csrf": page_csrf(dev), "url": PUBLIC_HOOK, "events": ["build.exploded"]},
    )
    assert unknown.status_code == 400 and "Unknown event(s) build.exploded" in unknown.text
    assert 'data-test="webhooks"' not in dev.get("/keys").text  # nothing was added


def test_webhook_forms_need_their_csrf_token(dev: TestClient) -> None:
    add_hook(dev)
    wid = hook_id(dev.get("/keys").text)
    for path, data in (
        ("/keys/webhooks", {"url": "https://1.0.0.1/sneaky"}),
        ("/keys/webhooks", {"url": "https://1.0.0.1/sneaky", "csrf": "forged"}),
        (f"/keys/webhooks/{wid}/disable", {}),
        (f"/keys/webhooks/{wid}/delete", {"csrf": "forged"}),
        (f"/keys/webhooks/{wid}/redeliver", {"event": "1"}),
    ):
        r = dev.post(path, data=data)
        assert r.status_code == 403 and "did not come from your current session" in r.text, path
    page = dev.get("/keys").text
    assert "sneaky" not in page and f'action="/keys/webhooks/{wid}/disable"' in page


def test_a_token_cannot_manage_webhook_endpoints(
    dev: TestClient, tenant: TenantKey, runtime: Runtime
) -> None:
    add_hook(dev)
    wid = hook_id(dev.get("/keys").text)
    key = {"Authorization": f"Bearer {tenant.key}"}
    anonymous = TestClient(dev.app)
    # the portal knows sessions only: a token is a visitor who must sign in
    r = anonymous.post(
        "/keys/webhooks", data={"url": PUBLIC_HOOK}, headers=key, follow_redirects=False
    )
    assert r.status_code == 303 and r.headers["location"].startswith("/signin")
    assert anonymous.get(f"/keys/webhooks/{wid}", headers=key, follow_redirects=False).is_redirect
    # and core refuses a token in the native API (an automation key works on builds only)
    for method, path, body in (
        ("GET", "/appyard/v1/webhooks", None),
        ("POST", "/appyard/v1/webhooks", {"url": PUBLIC_HOOK}),
        ("POST", f"/appyard/v1/webhooks/{wid}/disable", None),
        ("DELETE", f"/appyard/v1/webhooks/{wid}", None),
        ("GET", f"/appyard/v1/webhooks/{wid}/deliveries", None),
    ):
        r = anonymous.request(method, path, json=body, headers=key)
        assert r.status_code == 403, (path, r.text)
        assert r.json()["error"]["code"] == "auth.automation_key_limited", r.text
    # a signed-in member may, with the session cookie the portal set
    listed = dev.get("/appyard/v1/webhooks")
    assert listed.status_code == 200 and [w["id"] for w in listed.json()] == [wid]


def test_another_tenants_webhook_endpoint_is_not_found(runtime: Runtime, dev: TestClient) -> None:
    from tests.conftest import make_tenant

    make_tenant(runtime, "globex")
    make_user(runtime, "dev@globex.test", Role.DEVELOPER, "globex")
    add_hook(dev)
    wid = hook_id(dev.get("/keys").text)
    other = TestClient(dev.app)
    sign_in(other, "dev@globex.test")
    assert wid not in other.get("/keys").text
    assert other.get(f"/keys/webhooks/{wid}").status_code == 404
    for action in ("disable", "delete"):
        r = other.post(f"/keys/webhooks/{wid}/{action}", data={"csrf": page_csrf(other)})
        assert r.status_code == 404, action
    r = other.post(f"/keys/webhooks/{wid}/redeliver", data={"csrf": page_csrf(other), "event": "1"})
    assert r.status_code == 404
    assert f'action="/keys/webhooks/{wid}/disable"' in dev.get("/keys").text  # untouched


def test_deliveries_are_listed_per_endpoint_and_redelivered(
    settings: Settings, clock: FakeClock, receiver: Receiver
) -> None:
    from appyard.worker import Worker
    from tests.conftest import make_tenant

    runtime = build_runtime(
        settings.model_copy(update={"webhook_allow_private": True}), clock=clock
    )
    try:
        tenant = make_tenant(runtime)
        make_user(runtime, "dev@acme.test", Role.DEVELOPER, "acme")
        receiver.statuses = [500]  # the first attempt fails, its retry succeeds
        with TestClient(create_app(runtime=runtime, start_worker=False)) as c:
            sign_in(c, "dev@acme.test")
            add_hook(c, receiver.url, ("build.processed",))
            wid = hook_id(c.get("/keys").text)
            upload_build(runtime, tenant, APK)
            worker = Worker(runtime.services)
            while worker.run_once("w"):
                pass
            clock.advance(minutes=1)  # the retry's time
            while worker.run_once("w"):
                pass
            assert len(receiver.deliveries) == 2
            keys = c.get("/keys").text
            latest = re.search(r'data-test="latest-deliveries">(.*?)</div>', keys, re.S)
            assert latest and ">204<" in latest.group(1) and ">500<" in latest.group(1)
            page = c.get(f"/keys/webhooks/{wid}").text
            rows = re.findall(
                r"<tr>(.*?)</tr>", page.split('data-test="deliveries"')[1].split("<tbody>")[1], re.S
            )
            assert len(rows) == 2
            assert "build.processed" in rows[0] and ">204<" in rows[0] and ">2<" in rows[0]
            assert ">500<" in rows[1] and ">1<" in rows[1]
            event = re.search(r'name="event" value="(\d+)"', page)
            assert event
            r = c.post(
                f"/keys/webhooks/{wid}/redeliver",
                data={"csrf": csrf_in(page), "event": event.group(1)},
            )
            assert r.status_code == 200 and "will be delivered again" in r.text
            while worker.run_once("w"):
                pass
            assert len(receiver.deliveries) == 3
            assert receiver.deliveries[2].headers["webhook-id"] == f"msg_{event.group(1)}"
            page = c.get(f"/keys/webhooks/{wid}").text
            assert page.count('name="event"') == 3
    finally:
        runtime.engine.dispose()


# --- app (distribution) tokens -------------------------------------------------------------------


def test_an_app_token_made_in_the_portal_is_bound_to_its_app(
    runtime: Runtime, tenant: TenantKey, dev: TestClient
) -> None:
    mine = completed_build(
        runtime,
        tenant.tenant_id,
        file_name="shop.apk",
        platform=Platform.ANDROID,
        identifier="com.example.shop",
        version_code="1",
    )
    other = completed_build(
        runtime,
        tenant.tenant_id,
        file_name="maps.apk",
        platform=Platform.ANDROID,
        identifier="com.example.maps",
        version_code="1",
    )
    r = dev.post(
        "/keys/tokens",
        data={"csrf": page_csrf(dev), "kind": "app", "name": "shop CI", "app": mine.app_id},
    )
    assert r.status_code == 201, r.text
    raw = re.search(r'data-test="raw-key">([^<]+)<', r.text)
    assert raw
    bearer = {"Authorization": f"Bearer {raw.group(1)}"}
    got = dev.get(f"/v1/integrations/builds/{mine.id}", headers=bearer)
    assert got.status_code == 200, got.text
    assert got.json()["data"]["id"] == mine.id
    assert dev.get(f"/v1/integrations/builds/{other.id}", headers=bearer).status_code == 404
    assert "com.example.shop" in dev.get("/keys").text.split('data-test="tokens"')[1]
    # an app token without its app is explained, and other kinds ignore the app field
    r = dev.post("/keys/tokens", data={"csrf": page_csrf(dev), "kind": "app", "app": ""})
    assert "The key was not created: An app token names its app" in r.text
    r = dev.post("/keys/tokens", data={"csrf": page_csrf(dev), "kind": "ci", "app": mine.app_id})
    assert r.status_code == 201
