"""``appyard admin install-link`` and ``revoke-install-link`` against a running server: a build
named by its automation job_id gets a link whose URL answers, then 410 once revoked."""

from __future__ import annotations

import json
import time

import httpx

from tests.conftest import FIXTURES
from tests.e2e.conftest import Server


def test_admin_makes_and_revokes_an_install_link(server: Server) -> None:
    api = httpx.Client(
        base_url=server.url, headers={"Authorization": f"Bearer {server.key}"}, timeout=60
    )
    ticket = api.post(
        "/automate/upload",
        json={"file_name": "app.apk", "platform": "android", "version": "staging"},
    ).json()
    early = server.admin("install-link", ticket["job_id"], "--json")
    assert early.returncode == 1 and "processing" in early.stderr
    put = httpx.put(
        ticket["upload_url"], content=(FIXTURES / "fixture-release-v1v2v3.apk").read_bytes()
    )
    assert put.status_code == 200
    deadline = time.monotonic() + 60
    while api.get(f"/automate/status/{ticket['job_id']}").json()["status"] == "processing":
        assert time.monotonic() < deadline
        time.sleep(0.2)
    made = server.admin("install-link", ticket["job_id"], "--expires", "2d", "--json")
    assert made.returncode == 0, made.stderr
    link = json.loads(made.stdout)
    assert link["url"].startswith(f"{server.url}/i/") and link["id"].startswith("il_")
    page = httpx.get(link["url"])
    assert page.status_code == 200 and "org.appyard.fixture" in page.text
    revoked = server.admin("revoke-install-link", link["id"], "--json")
    assert revoked.returncode == 0, revoked.stderr
    assert json.loads(revoked.stdout)["state"] == "revoked"
    assert httpx.get(link["url"]).status_code == 410
