"""The portal and install pages in a real browser: Debian's Chromium (Playwright) against a
real ``appyard serve`` on loopback. Every page visited is photographed (tests/portal/conftest.py
says where)."""

from __future__ import annotations

import io
import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import FIXTURES, need
from tests.e2e.conftest import Server, start_server
from tests.going_out import Receiver
from tests.portal.conftest import PASSWORD, Shots, create_user

pytest.importorskip("playwright")
from playwright.sync_api import expect

RELEASE_APK = FIXTURES / "fixture-release-v1v2v3.apk"
MOBILE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 900}


def sign_in(page: Any, base: str, email: str) -> None:
    page.goto(f"{base}/signin")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_load_state()
    assert "/signin" not in page.url, page.content()


def read_qr(element: Any) -> str:
    zxingcpp = pytest.importorskip("zxingcpp")
    image = pytest.importorskip("PIL.Image")
    found = zxingcpp.read_barcodes(image.open(io.BytesIO(element.screenshot())))
    assert len(found) == 1, found
    return str(found[0].text)


def watch(page: Any, problems: list[str]) -> Any:
    """Collect what the browser complains about (a script error, a CSP violation)."""
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    return page


def csrf_of(page: Any) -> str:
    return str(page.locator("input[name=csrf]").first.get_attribute("value"))


def test_developer_watches_a_build_complete_and_shares_it(
    server: Server, chromium: Any, shots: Shots
) -> None:
    create_user(server, "dev@default.test", "developer", "default")
    context = chromium.new_context(viewport=DESKTOP)
    problems: list[str] = []
    page = watch(context.new_page(), problems)
    page.on("dialog", lambda dialog: dialog.accept())
    sign_in(page, server.url, "dev@default.test")
    expect(page.get_by_role("heading", name="Apps", exact=True)).to_be_visible()
    shots(page, "apps-empty")

    # An automation key, shown once.
    page.goto(f"{server.url}/keys")
    form = page.locator("form[action='/keys/tokens']")
    form.locator("select[name=kind]").select_option("automation")
    form.locator("input[name=name]").fill("GitHub Actions")
    form.get_by_role("button", name="Create key").click()
    raw = page.locator("[data-test=raw-key]").inner_text().strip()
    assert re.fullmatch(r"ak_[0-9a-f]{20}:\S{20,}", raw), raw
    shots(page, "key-created")
    page.goto(f"{server.url}/keys")
    assert raw not in page.content()  # never shown again
    assert raw.split(":")[0] in page.content()  # but listed by its id
    shots(page, "keys")

    # The build waits for its bytes; its page is open while they arrive and it is processed.
    api = httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {raw}"})
    ticket = api.post(
        "/automate/upload",
        json={"file_name": "app-release.apk", "platform": "android", "version": "production"},
    ).json()
    page.goto(f"{server.url}/builds/{ticket['job_id']}")
    status = page.locator("[data-test=build-status]")
    expect(status).to_have_text("processing")
    page.evaluate("window.__samePage = true")
    shots(page, "build-waiting")
    put = httpx.put(ticket["upload_url"], content=RELEASE_APK.read_bytes(), timeout=60)
    assert put.status_code == 200, put.text
    expect(status).to_have_text("completed", timeout=60_000)
    assert page.evaluate("window.__samePage") is True  # updated in place, never reloaded
    expect(page.locator("[data-test=inspection]")).to_contain_text("org.appyard.fixture")
    expect(page.locator("[data-test=build-version]")).to_contain_text("1.0.0")
    shots(page, "build-completed")
    build_url = page.url

    # The same facts without JavaScript.
    facts = {
        name: page.locator(f"[data-test={name}]").inner_text()
        for name in ("build-facts", "inspection", "signing", "build-status")
    }
    plain = chromium.new_context(viewport=DESKTOP, java_script_enabled=False)
    plain.add_cookies(context.cookies())
    no_js = plain.new_page()
    no_js.goto(build_url)
    for name, text in facts.items():
        assert no_js.locator(f"[data-test={name}]").inner_text() == text, name
    shots(no_js, "build-without-javascript")
    plain.close()

    # An install link, its QR code on the build page, its page at phone and desktop width.
    page.get_by_role("button", name="New install link").click()
    link = page.locator("[data-test=install-url]").inner_text().strip()
    assert re.fullmatch(rf"{re.escape(server.url)}/i/[A-Za-z0-9_-]{{32}}", link), link
    assert read_qr(page.locator("#install .qr svg")) == link
    shots(page, "build-with-install-link")
    for label, viewport in (("phone", MOBILE), ("desktop", DESKTOP)):
        visitor = chromium.new_context(viewport=viewport)  # no session: anyone with the link
        install = watch(visitor.new_page(), problems)
        response = install.goto(link)
        assert response is not None and response.status == 200
        expect(install.locator("[data-test=install-name]")).to_be_visible()
        expect(install.locator("[data-test=install-version]")).to_have_text("1.0.0")
        button = install.locator("[data-test=install-button]")
        assert button.get_attribute("href") == f"/i/{link.rsplit('/', 1)[1]}/download"
        assert read_qr(install.locator("[data-test=install-qr] svg")) == link
        width = install.evaluate("document.documentElement.scrollWidth")
        assert width <= viewport["width"], f"the install page scrolls sideways at {label} width"
        shots(install, f"install-page-{label}")
        visitor.close()

    # A download through the link is recorded, shown on the build page and in the CSV.
    got = httpx.get(
        f"{link}/download",
        headers={"User-Agent": "PortalTest/1.0 (Linux; Android 14)"},
        follow_redirects=True,
        timeout=60,
    )
    assert got.status_code == 200 and got.content[:2] == b"PK"
    page.reload()
    expect(page.locator("[data-test=download-count]")).to_have_text("1")
    expect(page.locator("[data-test=downloads]")).to_contain_text("PortalTest/1.0")
    csv_text = page.request.get(f"{build_url}/downloads.csv").text()
    assert "PortalTest/1.0 (Linux; Android 14)" in csv_text and "apk" in csv_text
    shots(page, "build-with-download")

    # CSRF: the same form posted without its token is refused, and nothing is made.
    forged = page.request.post(f"{build_url}/install-links", form={"expires": "7d"})
    assert forged.status == 403 and "session" in forged.text()
    page.reload()
    assert page.locator("#install .links li").count() == 1

    # Revoked: the page says so with 410.
    page.get_by_role("button", name="Revoke").click()
    expect(page.locator("#install .links")).to_contain_text("revoked")
    visitor = chromium.new_context(viewport=MOBILE)
    gone = visitor.new_page()
    response = gone.goto(link)
    assert response is not None and response.status == 410
    expect(gone.locator("[data-test=install-gone]")).to_contain_text("revoked")
    shots(gone, "install-page-revoked")
    visitor.close()

    # Every page at 390 px: nothing scrolls sideways.
    phone = chromium.new_context(viewport=MOBILE)
    phone.add_cookies(context.cookies())
    small = phone.new_page()
    for path, what in (
        ("/", "apps"),
        (build_url.removeprefix(server.url), "build"),
        ("/keys", "keys"),
        ("/store", "store"),
        ("/audit", "audit"),
    ):
        small.goto(f"{server.url}{path}")
        assert small.evaluate("document.documentElement.scrollWidth") <= MOBILE["width"], path
        shots(small, f"phone-{what}")
    phone.close()

    page.goto(f"{server.url}/audit")
    expect(page.locator("[data-test=audit]")).to_contain_text("Install link revoked")
    expect(page.locator("[data-test=audit]")).to_contain_text("dev@default.test")
    shots(page, "audit")

    # Signing out ends the session.
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url(re.compile(r".*/signin$"))
    shots(page, "signed-out")
    page.goto(f"{server.url}/keys")
    assert "/signin" in page.url
    context.close()
    assert problems == []


def test_store_team_reviews_and_releases_a_version(
    server: Server, chromium: Any, shots: Shots
) -> None:
    need(RELEASE_APK.exists(), "the release fixture")
    create_user(server, "dev@default.test", "developer", "default")
    create_user(server, "reviewer@store.test", "store-reviewer")
    create_user(server, "admin@store.test", "store-admin")
    made = server.admin("create-key", "--tenant", "default", "--kind", "ci", "--json")
    ci = {"Authorization": f"Bearer {json.loads(made.stdout)['key']}"}
    store = httpx.Client(base_url=f"{server.url}/portal/api", headers=ci, timeout=60)
    with open(RELEASE_APK, "rb") as fh:
        r = store.post("/uploads/ci", files={"apk": ("app.apk", fh)})
    assert r.status_code == 201, r.text
    vid = r.json()["version"]["id"]
    deadline = time.monotonic() + 60
    while store.get(f"/versions/{vid}/validation").json()["runs"][0]["status"] == "running":
        assert time.monotonic() < deadline
        time.sleep(0.2)

    # The developer submits the draft.
    dev_context = chromium.new_context(viewport=DESKTOP)
    dev = dev_context.new_page()
    sign_in(dev, server.url, "dev@default.test")
    dev.goto(f"{server.url}/store")
    shots(dev, "developer-store")
    dev.locator(f"form[action='/store/versions/{vid}/submit']").get_by_role(
        "button", name="Submit for review"
    ).click()
    expect(dev.locator(".flash.ok")).to_have_text("Submitted for review.")
    shots(dev, "developer-submitted")
    dev_context.close()

    # The reviewer approves; no release button, and a forged release is refused by core.
    reviewer_context = chromium.new_context(viewport=DESKTOP)
    reviewer = reviewer_context.new_page()
    sign_in(reviewer, server.url, "reviewer@store.test")
    assert reviewer.url.endswith("/store")  # store staff land on the review queue
    expect(reviewer.locator("[data-test=versions-review]")).to_contain_text("org.appyard.fixture")
    shots(reviewer, "reviewer-queue")
    reviewer.goto(f"{server.url}/store/versions/{vid}")
    expect(reviewer.locator("[data-test=approve]")).to_be_visible()
    expect(reviewer.locator("[data-test=release]")).to_have_count(0)
    shots(reviewer, "reviewer-version")
    reviewer.locator("[data-test=approve]").click()
    expect(reviewer.locator(".flash.ok")).to_have_text("Approved.")
    expect(reviewer.locator("[data-test=release]")).to_have_count(0)
    forged = reviewer.request.post(
        f"{server.url}/store/versions/{vid}/release",
        form={"csrf": csrf_of(reviewer), "countries": "DE", "rollout_percentage": "10"},
    )
    assert forged.status == 403, forged.text()
    assert "store-admin" in forged.text()
    assert store.get(f"/versions/{vid}").json()["status"] == "approved"
    shots(reviewer, "reviewer-approved")
    reviewer_context.close()

    # The store admin releases to two countries at 10 %.
    admin_context = chromium.new_context(viewport=MOBILE)
    problems: list[str] = []
    admin = watch(admin_context.new_page(), problems)
    sign_in(admin, server.url, "admin@store.test")
    admin.goto(f"{server.url}/store/versions/{vid}")
    release = admin.locator("[data-test=release-form]")
    release.get_by_label("Countries").fill("DE, AT")
    release.get_by_label("Rollout percentage").fill("10")
    shots(admin, "admin-release-form-phone")
    release.locator("[data-test=release]").click()
    expect(admin.locator(".flash.ok")).to_have_text("Released.")
    expect(admin.locator("[data-test=targets]")).to_contain_text("DE, AT")
    assert admin.evaluate("document.documentElement.scrollWidth") <= MOBILE["width"]
    shots(admin, "admin-released-phone")
    admin.goto(f"{server.url}/store")
    shots(admin, "admin-store-phone")
    admin.goto(f"{server.url}/audit")
    expect(admin.locator("[data-test=audit]")).to_contain_text("Version released")
    expect(admin.locator("[data-test=audit]")).to_contain_text("reviewer@store.test")
    shots(admin, "admin-audit-phone")
    admin_context.close()
    assert problems == []

    # The store CI API sees it.
    assert store.get(f"/versions/{vid}").json()["status"] == "live"
    assert store.get(f"/versions/{vid}/release").json() == {
        "live": True,
        "targets": {"countries": ["DE", "AT"], "vehicle_contexts": []},
    }
    session = httpx.post(
        f"{server.url}/appyard/v1/auth/login",
        json={"email": "admin@store.test", "password": PASSWORD},
    ).json()["token"]
    native = httpx.get(
        f"{server.url}/appyard/v1/versions/{vid}", headers={"Authorization": f"Bearer {session}"}
    ).json()
    assert native["rollout"] == {"percentage": 10, "halted": False}


@pytest.fixture
def hooks_server(tmp_path: Path, database_url: str) -> Iterator[Server]:
    """A server that may deliver to the receiver on loopback (as tests/e2e does)."""
    srv = start_server(
        tmp_path / "srv", database_url, env_extra={"APPYARD_WEBHOOK_ALLOW_PRIVATE": "true"}
    )
    yield srv
    srv.stop()


def test_developer_adds_a_webhook_endpoint_and_watches_its_deliveries(
    hooks_server: Server, receiver: Receiver, chromium: Any, shots: Shots
) -> None:
    server = hooks_server
    create_user(server, "dev@default.test", "developer", "default")
    context = chromium.new_context(viewport=DESKTOP)
    problems: list[str] = []
    page = watch(context.new_page(), problems)
    page.on("dialog", lambda dialog: dialog.accept())
    sign_in(page, server.url, "dev@default.test")

    # An automation key for the upload, then the endpoint: its secret is shown once.
    page.goto(f"{server.url}/keys")
    form = page.locator("form[action='/keys/tokens']")
    form.locator("select[name=kind]").select_option("automation")
    form.get_by_role("button", name="Create key").click()
    key = page.locator("[data-test=raw-key]").inner_text().strip()
    hook_form = page.locator("[data-test=webhook-form]")
    hook_form.get_by_label("URL").fill(receiver.url)
    hook_form.get_by_label("processed").check()
    hook_form.get_by_label("failed").check()
    hook_form.get_by_role("button", name="Add endpoint").click()
    secret = page.locator("[data-test=webhook-secret]").inner_text().strip()
    assert re.fullmatch(r"whsec_[A-Za-z0-9+/=]{40,}", secret), secret
    shots(page, "webhook-created")
    page.goto(f"{server.url}/keys#webhooks")
    assert secret not in page.content()  # never shown again
    row = page.locator("[data-test=webhooks] tbody tr")
    expect(row).to_have_count(1)
    expect(row).to_contain_text(receiver.url)
    expect(row).to_contain_text("build.processed, build.failed")
    expect(row.locator("[data-test=latest-deliveries]")).to_contain_text("none yet")
    shots(page, "webhooks")

    # A build through the automation API; its delivery appears on the endpoint's page.
    api = httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {key}"})
    ticket = api.post(
        "/automate/upload",
        json={"file_name": "app-release.apk", "platform": "android", "version": "production"},
    ).json()
    put = httpx.put(ticket["upload_url"], content=RELEASE_APK.read_bytes(), timeout=60)
    assert put.status_code == 200, put.text
    row.get_by_role("link", name=receiver.url).click()
    expect(page.locator("[data-test=webhook-url]")).to_have_text(receiver.url)
    deliveries = page.locator("[data-test=deliveries] tbody tr")
    deadline = time.monotonic() + 60
    while deliveries.count() == 0:
        assert time.monotonic() < deadline, "no delivery appeared on the endpoint's page"
        time.sleep(0.5)
        page.reload()
    expect(deliveries.first).to_contain_text("build.processed")
    expect(deliveries.first).to_contain_text("204")
    expect(deliveries.first).to_contain_text(" ms")
    shots(page, "webhook-deliveries")

    # What the receiver got verifies with the secret the page showed once.
    from standardwebhooks.webhooks import Webhook as Verifier

    assert len(receiver.deliveries) == 1
    got = receiver.deliveries[0]
    payload = Verifier(secret).verify(got.body, got.headers)
    assert payload["type"] == "build.processed" and str(payload["data"]["number"]) == str(
        ticket["job_id"]
    )

    # Redeliver: the same event (the same webhook-id) arrives again and is logged.
    deliveries.first.get_by_role("button", name="Redeliver").click()
    expect(page.locator(".flash.ok")).to_contain_text("will be delivered again")
    deadline = time.monotonic() + 60
    while deliveries.count() < 2:
        assert time.monotonic() < deadline, "the redelivery did not appear"
        time.sleep(0.5)
        page.reload()
    assert len(receiver.deliveries) == 2
    assert receiver.deliveries[1].headers["webhook-id"] == got.headers["webhook-id"]
    Verifier(secret).verify(receiver.deliveries[1].body, receiver.deliveries[1].headers)

    # Disabled on its page, listed as such.
    page.get_by_role("button", name="Disable").click()
    expect(page.locator(".flash.ok")).to_contain_text("disabled")
    expect(page.locator("[data-test=webhook-state]")).to_have_text("disabled")
    page.goto(f"{server.url}/keys#webhooks")
    expect(row.locator("td[data-label=State]")).to_have_text("disabled")
    expect(row.locator("[data-test=latest-deliveries] .badge")).to_have_count(2)
    shots(page, "webhooks-disabled")

    # At 390 px: nothing scrolls sideways, a refused URL is explained on the form.
    phone = chromium.new_context(viewport=MOBILE)
    phone.add_cookies(context.cookies())
    small = watch(phone.new_page(), problems)
    wid = str(row.get_attribute("data-webhook"))
    for path, what in ((f"/keys/webhooks/{wid}", "webhook"), ("/keys#webhooks", "keys")):
        small.goto(f"{server.url}{path}")
        assert small.evaluate("document.documentElement.scrollWidth") <= MOBILE["width"], path
        shots(small, f"phone-{what}")
    assert problems == []
    hook_form = small.locator("[data-test=webhook-form]")
    hook_form.get_by_label("URL").fill("ftp://example.com/hooks")
    hook_form.get_by_role("button", name="Add endpoint").click()
    expect(small.locator("[data-test=webhook-error]")).to_contain_text("http(s) URL")
    assert small.evaluate("document.documentElement.scrollWidth") <= MOBILE["width"]
    small.locator("[data-test=webhook-form]").scroll_into_view_if_needed()
    shots(small, "phone-webhook-refused")
    phone.close()

    # Deleted: gone from the list; its page is not found.
    page.goto(f"{server.url}/keys#webhooks")
    row.get_by_role("button", name="Delete").click()
    expect(page.locator(".flash.ok")).to_contain_text("deleted")
    expect(page.locator("[data-test=webhooks]")).to_have_count(0)
    assert page.goto(f"{server.url}/keys/webhooks/{wid}").status == 404  # type: ignore[union-attr]
    context.close()
    # the browser notes only the two error pages asked for: the refused form and the 404
    assert [p.rsplit("status of ", 1)[-1][:3] for p in problems] == ["400", "404"], problems
