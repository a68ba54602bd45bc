"""The protection transforms, each shown on a fixture APK (and the bundle fixture) through the
real pipeline: the tenant's controls choose them, the worker runs them, the output is signed
with the tenant's managed key and must still pass ``apksigner verify`` and ``zipalign -c -p 4``
(an AAB: ``jarsigner -verify``)."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import subprocess
import sys
import textwrap
import time
import tracemalloc
import zipfile
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.hazmat.primitives.serialization import Encoding

from appyard.core import controls
from appyard.core.controls import DEFAULT_STRIP_PATTERNS, ProtectionOptions
from appyard.core.models import BuildStatus, ConfigVersion, Platform
from appyard.pipeline import transforms
from appyard.runtime import Runtime
from appyard.signing.keystore import load_keystore
from appyard.signing.sign import sign_aab, sign_apk
from appyard.signing.verify import verify_jar
from tests.conftest import (
    FIXTURES,
    KEYS,
    RELEASE_KEY,
    TenantKey,
    add_signing_key,
    apk_with_large_assets,
    rewrite_zip,
)
from tests.pipeline.conftest import entries, process, set_controls, with_entries
from tests.signing.test_align import assert_aligned
from tests.signing.test_sign import apksigner_verify, tool, zipalign_ok

OTHER_KEY = ("other.p12", "fixture-other", "other")  # EC P-256

DEBUG_ONLY = {
    "META-INF/app_release.kotlin_module": b"\x00\x00\x00\x03kotlin module",
    "META-INF/androidx.core_core.version": b"task ':core:writeVersionFile'\n1.12.0\n",
    "META-INF/kotlinx_coroutines_core.version": b"1.7.3\n",
    "DebugProbesKt.bin": b"\xca\xfe\xba\xbe debug probes",
    "kotlin-tooling-metadata.json": b'{"buildSystem":"Gradle"}',
    "META-INF/maven/com.example/lib/pom.properties": b"version=1.0\n",
}
NEEDED = {  # match a default pattern, but are code, resources, assets or native libraries
    "res/raw/kept.kotlin_module": b"a resource the app reads",
    "assets/kept.kotlin_module": b"an asset the app reads",
    "lib/arm64-v8a/libkept.kotlin_module": b"native",
    "META-INF/LICENSE.txt": b"Apache-2.0\n",  # no default pattern names it
}


def cert_sha256(key: tuple[str, str, str]) -> str:
    material = load_keystore(KEYS / key[0], password=key[1], alias=key[2])
    return hashlib.sha256(material.certificate.public_bytes(Encoding.DER)).hexdigest()


def release_signed(
    tmp: Path, extra: dict[str, bytes], base: str = "fixture-native-libs.apk"
) -> Path:
    """A fixture APK (or AAB) with ``extra`` entries, release-signed the way a CI would upload
    it."""
    suffix = Path(base).suffix
    raw = with_entries(FIXTURES / base, tmp / f"unsigned{suffix}", extra)
    material = load_keystore(KEYS / RELEASE_KEY[0], password=RELEASE_KEY[1], alias=RELEASE_KEY[2])
    sign = sign_aab if suffix == ".aab" else sign_apk
    sign(raw, tmp / f"input{suffix}", material)
    return tmp / f"input{suffix}"


def assert_signed_by(path: Path, key: tuple[str, str, str]) -> None:
    report = apksigner_verify(path)
    assert report.ok, report.output
    assert [sha for _dn, sha in report.signers] == [cert_sha256(key)]
    assert zipalign_ok(path)
    assert_aligned(path)


def assert_bundle_signed_by(path: Path, key: tuple[str, str, str]) -> None:
    """JAR-signed by ``key`` only, every entry covered: jarsigner (the reference) and appyard's
    own verifier agree."""
    result = subprocess.run(
        [tool("jarsigner"), "-verify", "-verbose", str(path)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "jar verified." in result.stdout and "unsigned entries" not in result.stdout
    jar = verify_jar(path)
    assert jar.verified, jar.errors
    assert [c.sha256 for c in jar.signers] == [cert_sha256(key)]


# --- controls -------------------------------------------------------------------------------------


def test_transforms_are_controls_with_documented_defaults(
    runtime: Runtime, tenant: TenantKey
) -> None:
    with runtime.services.uow() as uow:
        on = {
            v: [
                c
                for c in controls.enabled(
                    uow, tenant_id=tenant.tenant_id, platform=Platform.ANDROID, version=v
                )
                if c.startswith("protect.")
            ]
            for v in ConfigVersion
        }
    assert on[ConfigVersion.DEVELOPMENT] == ["protect.zipalign"]
    assert on[ConfigVersion.STAGING] == [
        "protect.strip_debug",
        "protect.external",
        "protect.zipalign",
    ]
    assert on[ConfigVersion.PRODUCTION] == on[ConfigVersion.STAGING]


# --- protect.strip_debug --------------------------------------------------------------------------


def test_strip_debug_removes_debug_metadata_and_keeps_what_the_app_needs(
    runtime: Runtime, tenant: TenantKey, tmp_path: Path
) -> None:
    key_id = add_signing_key(runtime, tenant.tenant_id)
    src = release_signed(tmp_path, {**DEBUG_ONLY, **NEEDED})

    done = process(runtime, tenant, src, tmp_path)  # production: strip_debug on by default

    assert done.build.status is BuildStatus.COMPLETED, done.build.error_message
    assert done.build.signed and done.build.signing_key_id == key_id
    assert done.output is not None
    before, after = entries(src), entries(done.output)
    assert not set(DEBUG_ONLY) & set(after)
    for name in [*NEEDED, "AndroidManifest.xml", "classes.dex", "resources.arsc"]:
        assert after[name] == before[name], name
    assert after["lib/arm64-v8a/libfixture.so"] == before["lib/arm64-v8a/libfixture.so"]
    assert_signed_by(done.output, RELEASE_KEY)


def test_strip_debug_is_off_for_development_builds(
    runtime: Runtime, tenant: TenantKey, tmp_path: Path
) -> None:
    add_signing_key(runtime, tenant.tenant_id)
    src = release_signed(tmp_path, DEBUG_ONLY)

    done = process(runtime, tenant, src, tmp_path, version="development")

    assert done.build.status is BuildStatus.COMPLETED, done.build.error_message
    assert done.output is not None
    assert set(DEBUG_ONLY) <= set(entries(done.output))
    assert_signed_by(done.output, RELEASE_KEY)


def test_strip_patterns_are_configurable_but_never_remove_code(
    runtime: Runtime, tenant: TenantKey, tmp_path: Path
) -> None:
    add_signing_key(runtime, tenant.tenant_id)
    src = release_signed(tmp_path, {"assets/kept.txt": b"x", "debug/trace.txt": b"trace"})
    options = ProtectionOptions(
        strip_patterns=("debug/*", "*.dex", "AndroidManifest.xml", "lib/*", "*.arsc", "res/*")
    )

    done = process(runtime, tenant, src, tmp_path, options=options)

    assert done.build.status is BuildStatus.COMPLETED, done.build.error_message
    assert done.output is not None
    after = entries(done.output)
    assert "debug/trace.txt" not in after
    assert {"classes.dex", "AndroidManifest.xml", "resources.arsc", "assets/kept.txt"} <= set(after)
    assert any(n.startswith("lib/") for n in after) and any(n.startswith("res/") for n in after)
    assert_signed_by(done.output, RELEASE_KEY)


def test_default_patterns_are_the_documented_ones() -> None:
    doc = (Path(__file__).resolve().parents[2] / "docs" / "protection.md").read_text()
    for pattern in DEFAULT_STRIP_PATTERNS:
        assert f"`{pattern}`" in doc


# --- protect.integrity ----------------------------------------------------------------------------


def _b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def check_integrity(apk: Path, base: str = "") -> tuple[dict[str, object], x509.Certificate]:
    """What an app or a store does, with nothing from appyard: verify the detached JWS over
    the manifest with the certificate it names, then every entry's SHA-256 and size. ``base``
    is where the base APK's files are (``base/`` in a bundle)."""
    manifest_name = f"{base}assets/appyard-integrity.json"
    with zipfile.ZipFile(apk) as zf:
        payload = zf.read(manifest_name)
        jws = zf.read(f"{manifest_name}.jws").decode()
        protected, empty, signature_b64 = jws.split(".")
        assert empty == ""  # detached payload (RFC 7515 appendix F)
        header = json.loads(_b64url_decode(protected))
        cert = x509.load_der_x509_certificate(base64.b64decode(header["x5c"][0]))
        assert (
            _b64url_decode(header["x5t#S256"])
            == hashlib.sha256(cert.public_bytes(Encoding.DER)).digest()
        )
        signing_input = (
            protected + "." + base64.urlsafe_b64encode(payload).rstrip(b"=").decode()
        ).encode()
        signature = _b64url_decode(signature_b64)
        public = cert.public_key()
        if header["alg"] == "RS256":
            assert isinstance(public, rsa.RSAPublicKey)
            public.verify(signature, signing_input, padding.PKCS1v15(), hashes.SHA256())
        else:
            assert header["alg"] == "ES256" and isinstance(public, ec.EllipticCurvePublicKey)
            r, s = int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
            public.verify(encode_dss_signature(r, s), signing_input, ec.ECDSA(hashes.SHA256()))

        manifest = json.loads(payload)
        assert manifest["format"] == "appyard-integrity/1" and manifest["algorithm"] == "sha256"
        listed = {e["name"]: e for e in manifest["entries"]}
        jar_signature = ("META-INF/MANIFEST.MF", ".SF", ".RSA", ".EC", ".DSA")
        present = [
            n
            for n in zf.namelist()
            if not n.endswith("/")
            and not n.startswith(manifest_name)
            and not (n.startswith("META-INF/") and n.endswith(jar_signature))
        ]
        assert sorted(listed) == sorted(present)
        for name in present:
            data = zf.read(name)
            assert listed[name]["size"] == len(data), name
            assert listed[name]["sha256"] == hashlib.sha256(data).hexdigest(), name
    return manifest, cert


@pytest.mark.parametrize("key", [RELEASE_KEY, OTHER_KEY], ids=["rsa", "ec"])
def test_integrity_manifest_is_signed_by_the_build_key_and_checks_out(
    key: tuple[str, str, str], runtime: Runtime, tenant: TenantKey, tmp_path: Path
) -> None:
    add_signing_key(runtime, tenant.tenant_id, key=key)
    set_controls(runtime, tenant, enable=("protect.integrity",))
    src = release_signed(tmp_path, {"assets/data.bin": b"payload" * 1000})

    done = process(runtime, tenant, src, tmp_path)

    assert done.build.status is BuildStatus.COMPLETED, done.build.error_message
    assert done.output is not None
    manifest, cert = check_integrity(done.output)
    # the certificate in the signature is the one the APK is signed with: an app compares the
    # two, so nobody can re-sign the manifest without re-signing the APK
    assert hashlib.sha256(cert.public_bytes(Encoding.DER)).hexdigest() == cert_sha256(key)
    assert any(e["name"] == "classes.dex" for e in manifest["entries"])  # type: ignore[union-attr]
    assert_signed_by(done.output, key)


def test_integrity_check_notices_a_changed_entry(
    runtime: Runtime, tenant: TenantKey, tmp_path: Path
) -> None:
    add_signing_key(runtime, tenant.tenant_id)
    set_controls(runtime, tenant, enable=("protect.integrity",))
    done = process(runtime, tenant, release_signed(tmp_path, {}), tmp_path)
    assert done.output is not None
    with zipfile.ZipFile(done.output) as zf:
        dex = zf.read("classes.dex")
    tampered = rewrite_zip(done.output, tmp_path / "tampered.apk", {"classes.dex": dex + b"\x00"})

    with pytest.raises(AssertionError, match=r"classes\.dex"):
        check_integrity(tampered)


def test_integrity_manifest_signature_breaks_when_the_manifest_changes(
    runtime: Runtime, tenant: TenantKey, tmp_path: Path
) -> None:
    add_signing_key(runtime, tenant.tenant_id)
    set_controls(runtime, tenant, enable=("protect.integrity",))
    done = process(runtime, tenant, release_signed(tmp_path, {}), tmp_path)
    assert done.output is not None
    name = "assets/appyard-integrity.json"
    with zipfile.ZipFile(done.output) as zf:
        changed = zf.read(name).replace(b'"size": ', b'"size": 1', 1)
    forged = rewrite_zip(done.output, tmp_path / "forged.apk", {name: changed})

    with pytest.raises(InvalidSignature):
        check_integrity(forged)


def test_integrity_without_a_signing_key_fails_the_job_clearly(
    runtime: Runtime, tenant: TenantKey, tmp_path: Path
) -> None:
    set_controls(runtime, tenant, enable=("protect.integrity",))

    done = process(runtime, tenant, release_signed(tmp_path, {}), tmp_path)

    assert done.build.status is BuildStatus.FAILED
    assert done.build.error_message is not None
    assert "protect.integrity" in done.build.error_message
    assert "signing key" in done.build.error_message


# --- bundles (AAB) --------------------------------------------------------------------------------

BUNDLE = "fixture-bundle.aab"
BUNDLE_DEBUG_ONLY = {"base/root/META-INF/x.kotlin_module": b"\x00\x00\x00\x03kotlin module"}
BUNDLE_NEEDED = {  # match *.kotlin_module, but bundletool makes code and resources of them
    "base/dex/x.kotlin_module": b"in the code folder",
    "base/res/raw/kept.kotlin_module": b"a resource the app reads",
    "BUNDLE-METADATA/com.example/x.kotlin_module": b"build metadata, in no APK",
}


def test_strip_patterns_match_the_apk_path_of_a_bundle_entry() -> None:
    patterns = ("*.kotlin_module", "META-INF/*", "*.pb", "*.dex", "res/*", "root/*")
    removed = [
        "base/root/META-INF/x.kotlin_module",  # META-INF/x.kotlin_module in the APK
        "feature/root/META-INF/y.version",
        "base/root/debug/x.kotlin_module",
    ]
    kept = [
        "base/manifest/AndroidManifest.xml",
        "base/dex/classes.dex",
        "base/dex/x.kotlin_module",
        "base/res/raw/x.kotlin_module",
        "base/lib/arm64-v8a/libx.so",
        "base/assets/x.kotlin_module",
        "base/root/classes2.dex",  # classes2.dex in the APK: code
        "base/root/assets/x.kotlin_module",  # assets/...: protected there too
        "base/root/META-INF/MANIFEST.MF",  # the APK signer's
        "base/resources.pb",
        "base/native.pb",
        "BundleConfig.pb",
        "BUNDLE-METADATA/com.example/x.kotlin_module",
        "BUNDLE-METADATA/root/x.kotlin_module",
        "META-INF/MANIFEST.MF",
        "META-INF/RELEASE.SF",
    ]
    for name in removed:
        assert transforms.strippable(name, patterns, transforms.AAB), name
    for name in kept:
        assert not transforms.strippable(name, patterns, transforms.AAB), name


def test_strip_debug_on_a_bundle_removes_only_root_metadata(
    runtime: Runtime, tenant: TenantKey, tmp_path: Path
) -> None:
    add_signing_key(runtime, tenant.tenant_id)
    src = release_signed(tmp_path, {**BUNDLE_DEBUG_ONLY, **BUNDLE_NEEDED}, base=BUNDLE)

    done = process(runtime, tenant, src, tmp_path)  # production: strip_debug on by default

    assert done.build.status is BuildStatus.COMPLETED, done.build.error_message
    assert done.build.signed and done.output is not None
    before, after = entries(src), entries(done.output)
    assert set(after) == set(before) - set(BUNDLE_DEBUG_ONLY)
    for name in after:
        if not name.startswith("META-INF/"):  # the JAR signature is the tenant key's
            assert after[name] == before[name], name
    assert_bundle_signed_by(done.output, RELEASE_KEY)


def test_integrity_manifest_of_a_bundle_is_in_the_base_module_assets(
    runtime: Runtime, tenant: TenantKey, tmp_path: Path
) -> None:
    add_signing_key(runtime, tenant.tenant_id, key=OTHER_KEY)
    set_controls(runtime, tenant, enable=("protect.integrity",))
    src = release_signed(tmp_path, {**BUNDLE_DEBUG_ONLY, **BUNDLE_NEEDED}, base=BUNDLE)

    done = process(runtime, tenant, src, tmp_path)  # strip_debug, then integrity

    assert done.build.status is BuildStatus.COMPLETED, done.build.error_message
    assert done.output is not None
    manifest, cert = check_integrity(done.output, base="base/")  # every bundle entry checks out
    assert hashlib.sha256(cert.public_bytes(Encoding.DER)).hexdigest() == cert_sha256(OTHER_KEY)
    names = {e["name"] for e in manifest["entries"]}  # type: ignore[union-attr]
    assert {
        "BundleConfig.pb",
        "base/manifest/AndroidManifest.xml",
        "base/dex/classes.dex",
        "base/resources.pb",
        *BUNDLE_NEEDED,
    } <= names
    assert not set(BUNDLE_DEBUG_ONLY) & names  # made after strip_debug
    assert "assets/appyard-integrity.json" not in entries(done.output)  # not at the top level
    assert_bundle_signed_by(done.output, OTHER_KEY)


# --- protect.external -----------------------------------------------------------------------------

PROTECTOR = textwrap.dedent(
    """
    import os, sys, zipfile
    src, dst = sys.argv[1], sys.argv[2]
    leaked = sorted(k for k in os.environ if k.startswith("APPYARD_"))
    with zipfile.ZipFile(src) as a, zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED) as b:
        for info in a.infolist():
            if not info.filename.startswith("META-INF/"):
                b.writestr(info.filename, a.read(info))
        b.writestr("assets/protected-by.txt", "example protector\\n" + ",".join(leaked))
    """
)
FAILING = textwrap.dedent(
    """
    import sys
    print("checking licence", sys.argv[1])
    print("protector: licence expired for this machine", file=sys.stderr)
    sys.exit(3)
    """
)
HANGING = textwrap.dedent(
    """
    import subprocess, sys, time
    subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    time.sleep(120)
    """
)


def script(tmp: Path, name: str, body: str) -> Path:
    path = tmp / name
    path.write_text(body)
    return path


def test_external_protector_output_is_taken_then_aligned_and_signed(
    runtime: Runtime, tenant: TenantKey, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("APPYARD_MASTER_KEY", "not-for-the-protector")
    add_signing_key(runtime, tenant.tenant_id)
    protector = script(tmp_path, "protector.py", PROTECTOR)
    options = ProtectionOptions(
        protector_command=f"{sys.executable} {protector} {{input}} {{output}}"
    )

    done = process(runtime, tenant, release_signed(tmp_path, {}), tmp_path, options=options)

    assert done.build.status is BuildStatus.COMPLETED, done.build.error_message
    assert done.output is not None
    after = entries(done.output)
    assert after["assets/protected-by.txt"] == b"example protector\n"  # no APPYARD_* variables
    assert_signed_by(done.output, RELEASE_KEY)  # the protector deflated all: aligned again


def test_failing_protector_fails_the_job_with_its_message_and_no_secret(
    runtime: Runtime, tenant: TenantKey, tmp_path: Path
) -> None:
    add_signing_key(runtime, tenant.tenant_id)
    failing = script(tmp_path, "failing.py", FAILING)
    options = ProtectionOptions(
        protector_command=f"{sys.executable} {failing} {{input}} {{output}} --licence=SECRET-LIC-42"
    )

    done = process(runtime, tenant, release_signed(tmp_path, {}), tmp_path, options=options)

    assert done.build.status is BuildStatus.FAILED
    assert done.output is None
    message = done.build.error_message
    assert message is not None
    assert "exited with status 3" in message
    assert "licence expired for this machine" in message
    assert "SECRET-LIC-42" not in message and str(tmp_path) not in message


def test_hanging_protector_is_stopped_at_its_time_limit(
    runtime: Runtime, tenant: TenantKey, tmp_path: Path
) -> None:
    add_signing_key(runtime, tenant.tenant_id)
    hanging = script(tmp_path, "hanging.py", HANGING)
    options = ProtectionOptions(
        protector_command=f"{sys.executable} {hanging} {{input}} {{output}}",
        protector_timeout_seconds=1.5,
    )

    started = time.monotonic()
    done = process(runtime, tenant, release_signed(tmp_path, {}), tmp_path, options=options)

    assert time.monotonic() - started < 30
    assert done.build.status is BuildStatus.FAILED
    assert done.build.error_message is not None
    assert "did not finish within 1.5 seconds" in done.build.error_message


def test_a_job_past_its_wall_clock_budget_fails_and_writes_nothing(
    runtime: Runtime, tenant: TenantKey, tmp_path: Path
) -> None:
    add_signing_key(runtime, tenant.tenant_id)
    hanging = script(tmp_path, "hanging.py", HANGING)
    options = ProtectionOptions(
        protector_command=f"{sys.executable} {hanging} {{input}} {{output}}",
        protector_timeout_seconds=4,
    )
    hurried = dataclasses.replace(
        runtime, services=dataclasses.replace(runtime.services, job_timeout_seconds=1)
    )

    done = process(hurried, tenant, release_signed(tmp_path, {}), tmp_path, options=options)

    assert done.build.status is BuildStatus.FAILED and done.output is None
    assert "longer than the 1 s a job may take" in (done.build.error_message or "")
    with runtime.services.uow() as uow:
        (job,) = uow.jobs.for_build(done.build.id)
    assert job.state.value == "failed"
    assert not list(runtime.services.work_dir.iterdir())  # its working folder is gone


def test_protector_that_writes_no_zip_fails_the_job(
    runtime: Runtime, tenant: TenantKey, tmp_path: Path
) -> None:
    add_signing_key(runtime, tenant.tenant_id)
    bad = script(tmp_path, "bad.py", "import sys; open(sys.argv[2], 'w').write('not a zip')")
    options = ProtectionOptions(protector_command=f"{sys.executable} {bad} {{input}} {{output}}")

    done = process(runtime, tenant, release_signed(tmp_path, {}), tmp_path, options=options)

    assert done.build.status is BuildStatus.FAILED
    assert "not a zip archive" in (done.build.error_message or "")


def test_missing_protector_program_fails_the_job(
    runtime: Runtime, tenant: TenantKey, tmp_path: Path
) -> None:
    add_signing_key(runtime, tenant.tenant_id)
    options = ProtectionOptions(protector_command="/nonexistent/protector {input} {output}")

    done = process(runtime, tenant, release_signed(tmp_path, {}), tmp_path, options=options)

    assert done.build.status is BuildStatus.FAILED
    assert "could not be started" in (done.build.error_message or "")


def test_all_transforms_together_keep_alignment_last(
    runtime: Runtime, tenant: TenantKey, tmp_path: Path
) -> None:
    add_signing_key(runtime, tenant.tenant_id, key=OTHER_KEY)
    set_controls(runtime, tenant, enable=("protect.integrity",))
    protector = script(tmp_path, "protector.py", PROTECTOR)
    options = ProtectionOptions(
        protector_command=f"{sys.executable} {protector} {{input}} {{output}}"
    )

    done = process(runtime, tenant, release_signed(tmp_path, DEBUG_ONLY), tmp_path, options=options)

    assert done.build.status is BuildStatus.COMPLETED, done.build.error_message
    assert done.output is not None
    manifest, _cert = check_integrity(done.output)  # made after the protector ran
    names = {e["name"] for e in manifest["entries"]}  # type: ignore[union-attr]
    assert "assets/protected-by.txt" in names and not set(DEBUG_ONLY) & names
    assert_signed_by(done.output, OTHER_KEY)


# --- bounded memory -------------------------------------------------------------------------------


def test_transforms_stream_a_large_apk(tmp_path: Path) -> None:
    src = apk_with_large_assets(
        tmp_path / "big.apk",
        FIXTURES / "fixture-native-libs.apk",
        mib=16,
        extra={"META-INF/x.version": b"1"},
    )
    material = load_keystore(KEYS / OTHER_KEY[0], password=OTHER_KEY[1], alias=OTHER_KEY[2])
    context = transforms.TransformContext(workdir=tmp_path, signing_material=lambda: material)

    tracemalloc.start()
    try:
        out = transforms.apply(
            ["protect.strip_debug", "protect.integrity", "protect.zipalign"], "apk", src, context
        )
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert peak < 8 * 1024 * 1024, f"peak Python allocation {peak} bytes for a 32 MB APK"
    names = entries(out)
    assert "META-INF/x.version" not in names and "assets/appyard-integrity.json" in names
    check_integrity(out)


def test_settings_refuse_a_protector_command_without_placeholders(tmp_path: Path) -> None:
    from pydantic import ValidationError

    from appyard.settings import Settings

    with pytest.raises(ValidationError, match=r"\{input\} and \{output\}"):
        Settings(data_dir=tmp_path, protector_command="/opt/protect {input}")
    ok = Settings(
        data_dir=tmp_path,
        protector_command="/opt/protect --in {input} --out {output}",
        strip_patterns="debug/*, *.kotlin_module",
    )
    assert ok.strip_pattern_list == ("debug/*", "*.kotlin_module")
    assert Settings(data_dir=tmp_path).strip_pattern_list is None


def test_the_server_takes_the_protection_settings(tmp_path: Path) -> None:
    from appyard.runtime import build_runtime
    from appyard.settings import Settings

    runtime = build_runtime(
        Settings(
            data_dir=tmp_path,
            protector_command="/opt/protect --in {input} --out {output}",
            protector_timeout_seconds=42,
            strip_patterns="debug/*",
        )
    )
    try:
        options = runtime.services.protection
        assert options.protector_command == "/opt/protect --in {input} --out {output}"
        assert options.protector_timeout_seconds == 42
        assert options.strip_patterns == ("debug/*",)
        assert build_runtime(Settings(data_dir=tmp_path / "b")).services.protection == (
            ProtectionOptions()
        )
    finally:
        runtime.engine.dispose()
