"""Protection transforms: each is a control id (``protect.*``) and a function in -> out.

The processing pipeline applies the enabled ones in catalog order (``core.controls``):
``protect.strip_debug``, ``protect.external``, ``protect.integrity``, then
``protect.zipalign`` last, right before signing. Each reads its input file and writes a new
output file; none modifies its input, so a stage is safe to run twice. Entries are streamed
(copied raw, never recompressed); only the central directory is held in memory. Where an
archive keeps things (an APK's ``assets/``, a bundle's ``base/assets/``) is its kind's
:class:`Layout`. docs/protection.md describes every transform, its control and its defaults.
"""

from __future__ import annotations

import base64
import contextlib
import fnmatch
import hashlib
import json
import logging
import os
import shlex
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.hazmat.primitives.serialization import Encoding

from appyard import errors
from appyard.core.controls import PROTECTION_CONTROLS, ProtectionOptions
from appyard.signing.align import (
    OffsetWriter,
    copy_entries,
    finish_archive,
    read_layout,
    replacing,
    write_entry,
)
from appyard.signing.keystore import SigningMaterial
from appyard.signing.v1_sign import is_signature_file
from appyard.signing.zipmeta import NotAZip, find_zip_sections, iter_uncompressed_data

log = logging.getLogger("appyard.pipeline")

INTEGRITY_MANIFEST = "assets/appyard-integrity.json"
INTEGRITY_SIGNATURE = "assets/appyard-integrity.json.jws"
"""Paths in the (base) APK, where the app reads them; :attr:`Layout.base` places them."""
INTEGRITY_FORMAT = "appyard-integrity/1"


class ProtectionFailed(errors.AppyardError):
    """A protection transform failed."""

    code, status = "protection.failed", 422


class IntegrityNeedsSigningKey(ProtectionFailed):
    """protect.integrity needs the build's signing key, and the build has none."""

    code = "protection.integrity_needs_signing_key"


class ProtectorFailed(ProtectionFailed):
    """The external protector failed."""

    code = "protection.protector_failed"


@dataclass
class TransformContext:
    """What a transform may use besides its input: a scratch directory, the server's
    options and, loaded on first use, the signing key the build will be signed with."""

    workdir: Path
    options: ProtectionOptions = field(default_factory=ProtectionOptions)
    signing_material: Callable[[], SigningMaterial | None] = lambda: None


Transform = Callable[[Path, Path, str, TransformContext], bool]
"""``(src, dst, kind, ctx) -> wrote``: False when the transform had nothing to do (``dst``
unused); ``kind`` is ``apk``, ``aab`` or ``ipa``."""


# --- where things are, per kind ---------------------------------------------------------------

BUNDLE_FILES = ("BUNDLE-METADATA", "META-INF")
"""Top-level folders of a bundle that are no module: build metadata and the JAR signature."""


def bundle_apk_path(name: str) -> str | None:
    """The path a bundle entry has in the APKs bundletool builds, for what it copies to the
    APK root: ``<module>/root/X`` -> ``X``. ``None`` for the rest: the module's manifest,
    ``dex/``, ``res/``, ``lib/`` and ``assets/`` (code and resources, which bundletool
    converts or copies into their own APK paths), ``*.pb`` configuration, ``BundleConfig.pb``,
    ``BUNDLE-METADATA/`` and the JAR signature."""
    module, _, rest = name.partition("/")
    folder, _, inner = rest.partition("/")
    if module in BUNDLE_FILES or folder != "root" or not inner:
        return None
    return inner


@dataclass(frozen=True)
class Layout:
    """Where one kind of archive keeps things. ``apk_path`` maps an entry to the path its
    file has in an APK (what strip patterns and :data:`PROTECTED` are matched against;
    ``None``: never removed); ``base`` is the prefix of the base APK's files (an AAB's base
    module), where the integrity manifest goes."""

    apk_path: Callable[[str], str | None]
    base: str = ""

    @property
    def integrity_manifest(self) -> str:
        return self.base + INTEGRITY_MANIFEST

    @property
    def integrity_signature(self) -> str:
        return self.base + INTEGRITY_SIGNATURE


APK = Layout(apk_path=lambda name: name)
AAB = Layout(apk_path=bundle_apk_path, base="base/")  # bundletool puts base/assets/ in base APK
LAYOUTS = {"apk": APK, "aab": AAB}


# --- rewriting an archive ---------------------------------------------------------------------


def _rewrite(
    src: Path,
    dst: Path,
    *,
    keep: Callable[[str], bool],
    extra: list[tuple[str, bytes]] | None = None,
) -> None:
    """Copy the entries ``keep`` accepts raw (their alignment kept), then add ``extra``."""
    with open(src, "rb") as fh:
        layout = read_layout(fh)
        with replacing(dst) as raw:
            out = OffsetWriter(raw)
            records = copy_entries(fh, layout, out, keep=lambda e: keep(e.name))
            for name, data in extra or ():
                records.append(write_entry(out, name, data))
            finish_archive(out, records, comment=layout.comment)


# --- protect.zipalign -------------------------------------------------------------------------


def _zipalign(src: Path, dst: Path, kind: str, ctx: TransformContext) -> bool:
    from appyard.signing.align import align_apk

    align_apk(src, dst)
    return True


# --- protect.strip_debug ----------------------------------------------------------------------

PROTECTED = (
    "AndroidManifest.xml",
    "classes*.dex",
    "resources.arsc",
    "res/*",
    "lib/*",
    "assets/*",
)
"""Never removed, whatever the patterns: code, resources, the manifest, native libraries."""


def is_protected(name: str) -> bool:
    return any(fnmatch.fnmatchcase(name, p) for p in PROTECTED)


def strippable(name: str, patterns: tuple[str, ...], layout: Layout = APK) -> bool:
    """Whether ``protect.strip_debug`` removes the entry ``name``: the patterns and
    :data:`PROTECTED` apply to the path its file has in an APK (``layout.apk_path``)."""
    path = layout.apk_path(name)
    if path is None or is_protected(path) or is_signature_file(name) or is_signature_file(path):
        return False
    return any(fnmatch.fnmatchcase(path, p) for p in patterns)


def _strip_debug(src: Path, dst: Path, kind: str, ctx: TransformContext) -> bool:
    patterns, layout = ctx.options.strip_patterns, LAYOUTS[kind]
    removed: list[str] = []

    def keep(name: str) -> bool:
        if strippable(name, patterns, layout):
            removed.append(name)
            return False
        return True

    _rewrite(src, dst, keep=keep)
    log.info("protect.strip_debug removed=%d names=%s", len(removed), ",".join(removed[:20]))
    return True


# --- protect.integrity ------------------------------------------------------------------------


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def listed_in_integrity_manifest(name: str, layout: Layout = APK) -> bool:
    """Entries the manifest covers, by their name in the archive: every file except JAR
    signature files (the signer rewrites them) and the integrity manifest and its signature
    themselves."""
    return (
        not name.endswith("/")
        and not is_signature_file(name)
        and name not in (layout.integrity_manifest, layout.integrity_signature)
    )


def integrity_manifest(path: Path, layout: Layout = APK) -> bytes:
    """The manifest of ``path``: canonical JSON, entries sorted by name, streamed hashing."""
    entries = []
    with open(path, "rb") as fh:
        zip_layout = read_layout(fh)
        for entry in zip_layout.entries:
            if not listed_in_integrity_manifest(entry.name, layout):
                continue
            digest = hashlib.sha256()
            for chunk in iter_uncompressed_data(fh, entry, zip_layout.sections.cd_offset):
                digest.update(chunk)
            entries.append(
                {"name": entry.name, "size": entry.uncompressed_size, "sha256": digest.hexdigest()}
            )
    entries.sort(key=lambda e: str(e["name"]))
    document = {"format": INTEGRITY_FORMAT, "algorithm": "sha256", "entries": entries}
    return json.dumps(document, indent=1, sort_keys=True).encode() + b"\n"


def detached_jws(payload: bytes, material: SigningMaterial) -> bytes:
    """A JWS (RFC 7515) compact serialization with a detached payload (Appendix F):
    ``header..signature``; RS256 for RSA keys, ES256 for EC P-256; ``x5c`` is the chain."""
    key = material.private_key
    header = {
        "alg": "RS256" if isinstance(key, rsa.RSAPrivateKey) else "ES256",
        "typ": "appyard-integrity+jws",
        "x5c": [
            base64.b64encode(c.public_bytes(Encoding.DER)).decode() for c in material.cert_chain
        ],
        "x5t#S256": _b64url(bytes.fromhex(material.certificate_sha256)),
    }
    protected = _b64url(json.dumps(header, separators=(",", ":"), sort_keys=True).encode())
    signing_input = f"{protected}.{_b64url(payload)}".encode("ascii")
    signature = material.sign(signing_input)
    if not isinstance(key, rsa.RSAPrivateKey):  # JWS wants ES256 as r || s, not DER
        r, s = decode_dss_signature(signature)
        signature = r.to_bytes(32, "big") + s.to_bytes(32, "big")
    return f"{protected}..{_b64url(signature)}".encode("ascii")


def _integrity(src: Path, dst: Path, kind: str, ctx: TransformContext) -> bool:
    material = ctx.signing_material()
    if material is None:
        raise IntegrityNeedsSigningKey(
            "protect.integrity signs its manifest with the build's signing key, and this build "
            "has none: choose a signing key for the build or disable protect.integrity."
        )
    layout = LAYOUTS[kind]
    manifest = integrity_manifest(src, layout)
    signature = detached_jws(manifest, material)
    names = (layout.integrity_manifest, layout.integrity_signature)
    _rewrite(
        src,
        dst,
        keep=lambda name: name not in names,
        extra=[(names[0], manifest), (names[1], signature)],
    )
    return True


# --- protect.external -------------------------------------------------------------------------

_STDERR_TAIL = 600


def _clean_env() -> dict[str, str]:
    """The protector's environment: ours without appyard's own settings (secrets among them)."""
    return {k: v for k, v in os.environ.items() if not k.upper().startswith("APPYARD_")}


def _tail(path: Path, secrets: list[str], replacements: dict[str, str]) -> str:
    """The last lines of a log file, bounded, with secrets and temporary paths replaced."""
    try:
        with open(path, "rb") as fh:
            fh.seek(max(0, path.stat().st_size - 4 * _STDERR_TAIL))
            text = fh.read().decode("utf-8", "replace")
    except OSError:
        return ""
    for old, new in replacements.items():
        text = text.replace(old, new)
    for secret in secrets:
        text = text.replace(secret, "***")
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    tail = " | ".join(lines[-3:])
    return tail[-_STDERR_TAIL:]


def _external(src: Path, dst: Path, kind: str, ctx: TransformContext) -> bool:
    template = ctx.options.protector_command
    if not template:
        log.info("protect.external skipped reason=no_command")
        return False  # no copy of the artifact for nothing
    work = ctx.workdir / "protector"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    given, produced = work / f"input.{kind}", work / f"output.{kind}"
    shutil.copyfile(src, given)
    try:
        parts = shlex.split(template)
    except ValueError as exc:
        raise ProtectorFailed(f"APPYARD_PROTECTOR_COMMAND cannot be parsed: {exc}.") from None
    argv = [p.replace("{input}", str(given)).replace("{output}", str(produced)) for p in parts]
    # Arguments other than the program and the placeholders may be licence keys: never shown.
    secrets = [p for p in parts[1:] if "{input}" not in p and "{output}" not in p and len(p) >= 6]
    program = os.path.basename(parts[0]) if parts else "?"
    timeout = ctx.options.protector_timeout_seconds
    stdout_path, stderr_path = work / "stdout.log", work / "stderr.log"
    started = time.monotonic()
    with open(stdout_path, "wb") as out, open(stderr_path, "wb") as err:
        try:
            proc = subprocess.Popen(  # the operator's configured command, never a shell
                argv,
                cwd=work,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                env=_clean_env(),
                start_new_session=True,  # its own process group: a timeout kills all of it
            )
        except OSError as exc:
            raise ProtectorFailed(
                f"The external protector {program!r} could not be started: {exc.strerror}."
            ) from None
        try:
            code = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            raise ProtectorFailed(
                f"The external protector {program!r} did not finish within {timeout:g} seconds "
                "and was stopped."
            ) from None
        finally:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)  # leftovers of a finished command
    replacements = {str(given): "{input}", str(produced): "{output}", str(work): "."}
    log.info(
        "protect.external program=%s exit=%d seconds=%.2f",
        program,
        code,
        time.monotonic() - started,
    )
    if code != 0:
        detail = _tail(stderr_path, secrets, replacements) or _tail(
            stdout_path, secrets, replacements
        )
        how = f"was killed by signal {-code}" if code < 0 else f"exited with status {code}"
        raise ProtectorFailed(
            f"The external protector {program!r} {how}" + (f": {detail}" if detail else ".")
        )
    if not produced.is_file() or produced.stat().st_size == 0:
        raise ProtectorFailed(
            f"The external protector {program!r} exited with status 0 but wrote no output "
            "file at {output}."
        )
    try:
        with open(produced, "rb") as fh:
            find_zip_sections(fh)
    except NotAZip:
        raise ProtectorFailed(
            f"The external protector {program!r} wrote an output that is not a zip archive "
            f"(an {kind.upper()} is one)."
        ) from None
    shutil.move(produced, dst)
    shutil.rmtree(work, ignore_errors=True)
    return True


# --- the list ---------------------------------------------------------------------------------

TRANSFORMS: dict[str, tuple[tuple[str, ...], Transform]] = {
    # control id: (kinds it applies to, function); applied in the catalog's order
    "protect.strip_debug": (("apk", "aab"), _strip_debug),
    "protect.external": (("apk", "aab", "ipa"), _external),
    "protect.integrity": (("apk", "aab"), _integrity),
    "protect.zipalign": (("apk",), _zipalign),
}


def apply(control_ids: list[str], kind: str, src: Path, ctx: TransformContext) -> Path:
    """Apply the enabled transforms for ``kind`` in catalog order
    (``core.controls.PROTECTION_CONTROLS``: alignment last); returns the path of the final
    file (a new file, never ``src``)."""
    current = src
    enabled = set(control_ids)
    for index, spec in enumerate(PROTECTION_CONTROLS):
        kinds, function = TRANSFORMS[spec.id]
        if spec.id not in enabled or kind not in kinds:
            continue
        out = ctx.workdir / f"step{index}-{spec.id}.{kind}"
        if function(current, out, kind, ctx):
            current = out
    if current == src:  # nothing applied: the input, as a file of its own name
        out = ctx.workdir / f"output.{kind}"
        try:
            os.link(src, out)
        except OSError:
            shutil.copyfile(src, out)
        current = out
    return current
