"""iOS signing keys through the management API: one PKCS#12 file per key (a provisioning
profile is attached with the admin CLI), listed in the spec's shape without secrets, and an
IPA build with an iOS key goes to the re-signer, whose refusal fails it at Signing (the
re-signing itself: tests/pipeline/test_ipa_signing.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from appyard.runtime import Runtime
from tests.api.dialects.management.test_management_api import (
    Caller,
    build_of,
    call,
    client,
    failed,
    me,
    ok,
    request_upload,
    signing_keys,
    work,
)

__all__ = ["client", "me"]  # the management tests' fixtures
from tests.core.test_signing_keys_ios import DEVELOPER, PASSWORD, make_jks, make_p12
from tests.inspect.test_ipa_factory import make_ipa, make_profile, make_signer

SPEC_KEY_FIELDS = {
    "key_id",
    "key_name",
    "platform",
    "file_name",
    "is_default",
    "uploaded_by",
    "creation_time",
}


def upload_ios_key(
    client: TestClient, caller: Caller, data: bytes, file_name: str = "distribution.p12"
) -> str:
    body = {
        "key_name": "iOS distribution",
        "platform": "ios",
        "file_name": file_name,
        "password": PASSWORD,
        "file_size": len(data),
    }
    made = ok(client, caller, "upload_signing_key", body)
    put = client.put(made["url"], content=data)
    assert put.status_code == 200, put.text
    return str(made["key_id"])


def test_an_ios_p12_is_uploaded_and_listed_without_secrets(client: TestClient, me: Caller) -> None:
    p12 = make_p12(make_signer(DEVELOPER))
    key_id = upload_ios_key(client, me, p12)
    listed = ok(client, me, "get_signing_keys")
    key = signing_keys(client, me)[key_id]
    # the spec's fields plus appyard's two (status, error_message), nothing else
    assert set(key) == SPEC_KEY_FIELDS | {"status", "error_message"}
    assert key["platform"] == "ios" and key["file_name"] == "distribution.p12"
    assert key["status"] == "ready" and key["is_default"] is True
    assert PASSWORD not in str(listed)


def test_an_ios_key_file_must_be_a_p12(client: TestClient, me: Caller) -> None:
    base: dict[str, Any] = {"key_name": "k", "platform": "ios", "password": "p"}
    for name in ("distribution.jks", "profile.mobileprovision", "key.pem", "cert.cer"):
        error = failed(
            call(client, me, "upload_signing_key", {**base, "file_name": name}),
            400,
            "request.invalid_field",
        )
        assert "PKCS#12" in error["message"] and "--profile" in error["message"]
    assert ok(client, me, "upload_signing_key", {**base, "file_name": "Dist.P12"})["url"]


def test_a_jks_named_p12_is_refused_when_it_arrives(client: TestClient, me: Caller) -> None:
    key_id = upload_ios_key(client, me, make_jks(make_signer(DEVELOPER)))
    key = signing_keys(client, me)[key_id]
    assert key["status"] == "invalid" and key["is_default"] is False
    assert key["error_message"].startswith("An iOS signing key must be a PKCS#12 (.p12) file")


def test_an_ipa_build_with_an_ios_key_fails_at_signing_with_the_reason(
    client: TestClient, runtime: Runtime, me: Caller, tmp_path: Path
) -> None:
    signer = make_signer(DEVELOPER)
    key_id = upload_ios_key(client, me, make_p12(signer))
    ipa = make_ipa(tmp_path / "app.ipa", profile=make_profile(developer_certs=(signer.der,)))
    r = request_upload(
        client, me, file_name="app.ipa", platform="ios", file_size=ipa.stat().st_size
    )
    assert r.status_code == 200, r.text
    ticket = r.json()
    assert ticket["signing_key_id"] == key_id  # the iOS default
    assert client.put(ticket["url"], content=ipa.read_bytes()).status_code == 200
    assert work(runtime)
    build = build_of(client, me, ticket["start_time"])
    assert build["signed"] is False and build["signing_key_id"] == key_id
    assert build["success"] is False  # the Signing stage fails the build
    assert build["signing_error_message"] == (  # make_ipa's executable is a bare header
        "Payload/Example.app/Example (arm64) has no __LINKEDIT segment to hold a code signature."
    )
