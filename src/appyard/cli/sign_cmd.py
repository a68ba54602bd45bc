"""``appyard sign IN OUT --keystore FILE --alias A --password-env VAR [--schemes v1,v2,v3]``,
and for an IPA ``appyard sign IN.ipa OUT.ipa --p12 FILE --password-env VAR --profile FILE
[--profile FILE ...] [--bundle-id ID]`` (:func:`run_sign_ipa`).

Signs an APK (aligned; v1/v2/v3, chosen from its minSdk like apksigner unless ``--schemes``
says otherwise) or an AAB (JAR signature) outside the server. With ``--lineage FILE`` (from
``apksigner rotate``) the APK is signed for a rotated key: ``--keystore`` is the new key, the
``--original-*`` options name the key the app was first signed with (it signs v1 and v2), and
``--rotation-min-sdk-version`` (default 33) picks a v3.1 (33+) or v3 (28-32) rotation.
Passwords are read from the environment variables named on the command line, never from the
command line itself, so they stay out of shell history and ``ps``. Exit status: 0 signed, 1
the key or the artifact was refused (the reason is printed), 2 a usage error.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

from appyard.errors import AppyardError, BadRequest
from appyard.signing.ios.mobileprovision import MAX_PROFILE_BYTES
from appyard.signing.ios.resign import resign_ipa
from appyard.signing.keystore import (
    MAX_KEYSTORE_BYTES,
    SigningKeyInvalid,
    SigningMaterial,
    load_keystore,
    load_keystore_bytes,
)
from appyard.signing.lineage import (
    DEFAULT_ROTATION_MIN_SDK,
    InvalidLineage,
    Rotation,
    load_lineage,
)
from appyard.signing.sign import choose_schemes, min_sdk_of, parse_schemes, sign_aab, sign_apk

EXIT_OK, EXIT_REFUSED, EXIT_USAGE = 0, 1, 2


def _fail(message: str, status: int) -> int:
    sys.stderr.write(f"appyard sign: {message}\n")
    return status


class _Usage(Exception):
    pass


def _env(name: str, what: str) -> str:
    value = os.environ.get(name)
    if value is None:
        raise _Usage(f"the environment variable {name} ({what}) is not set")
    return value


@dataclass(frozen=True)
class KeyOptions:
    """Where a key is and which environment variables hold its passwords."""

    keystore: Path
    alias: str
    password_env: str
    key_password_env: str | None = None

    def load(self) -> SigningMaterial:
        password = _env(self.password_env, "keystore password")
        key_password = (
            _env(self.key_password_env, "key password") if self.key_password_env else None
        )
        try:
            return load_keystore(
                self.keystore, password=password, alias=self.alias, key_password=key_password
            )
        except SigningKeyInvalid as exc:
            raise SigningKeyInvalid(f"{self.keystore}: {exc.message}") from None


def run_sign(
    src: Path,
    dst: Path,
    *,
    key: KeyOptions,
    schemes: str | None = None,
    lineage: Path | None = None,
    original: KeyOptions | None = None,
    rotation_min_sdk: int = DEFAULT_ROTATION_MIN_SDK,
) -> int:
    """Sign ``src`` into ``dst`` (they may be the same file); return the exit status."""
    kind = Path(src).suffix.lower()
    try:
        if (lineage is None) != (original is None):
            raise _Usage("--lineage and --original-keystore go together (key rotation)")
        if kind not in (".apk", ".aab"):
            raise _Usage(f"{src} is neither an .apk nor an .aab")
        if kind == ".aab" and lineage is not None:
            raise _Usage("an AAB carries a JAR signature only; key rotation is for APKs")
        if not Path(src).is_file():
            raise _Usage(f"{src} does not exist")
        chosen = parse_schemes(schemes) if schemes is not None else None
        if kind == ".aab" and chosen is not None and chosen != {"v1"}:
            raise _Usage("an AAB carries a JAR signature only (--schemes v1)")
        material = key.load()
        rotation = (
            Rotation(load_lineage(lineage), original.load(), rotation_min_sdk)
            if lineage is not None and original is not None
            else None
        )
        if kind == ".aab":
            sign_aab(src, dst, material)
            done = "v1"
        else:
            min_sdk = min_sdk_of(src)
            chosen = chosen or choose_schemes(min_sdk)
            sign_apk(src, dst, material, schemes=chosen, min_sdk=min_sdk, rotation=rotation)
            done = ",".join(sorted(chosen))
            if rotation is not None:
                done += ", rotated " + ("v3.1" if rotation.uses_v31(min_sdk) else "v3")
    except _Usage as exc:
        return _fail(str(exc), EXIT_USAGE)
    except (SigningKeyInvalid, InvalidLineage) as exc:
        return _fail(exc.message, EXIT_REFUSED)
    except BadRequest as exc:
        return _fail(exc.message, EXIT_USAGE)
    except AppyardError as exc:
        return _fail(f"{src}: {exc.message}", EXIT_REFUSED)
    except OSError as exc:
        return _fail(f"{exc.filename or dst}: {exc.strerror or exc}", EXIT_REFUSED)
    sys.stdout.write(f"signed {dst} ({done}) as {material.certificate.subject.rfc4514_string()}\n")
    return EXIT_OK


def _read_file(path: Path, limit: int, what: str) -> bytes:
    if not path.is_file():
        raise _Usage(f"{path} ({what}) does not exist")
    if path.stat().st_size > limit:
        raise SigningKeyInvalid(f"{path} ({what}) is larger than {limit} bytes.")
    return path.read_bytes()


def run_sign_ipa(
    src: Path,
    dst: Path,
    *,
    p12: Path,
    password_env: str,
    profiles: list[Path],
    bundle_id: str | None = None,
) -> int:
    """Re-sign an IPA with a PKCS#12 identity and provisioning profiles (none: the IPA's own
    ``embedded.mobileprovision`` when it lists the certificate); return the exit status."""
    try:
        if Path(src).suffix.lower() != ".ipa":
            raise _Usage(f"{src} is not an .ipa")
        if not Path(src).is_file():
            raise _Usage(f"{src} does not exist")
        password = _env(password_env, "PKCS#12 password")
        data = _read_file(p12, MAX_KEYSTORE_BYTES, "PKCS#12")
        try:
            material = load_keystore_bytes(
                data, password=password, pkcs12_only=True, default_alias=p12.stem
            )
        except SigningKeyInvalid as exc:
            raise SigningKeyInvalid(f"{p12}: {exc.message}") from None
        profile_data = [_read_file(p, MAX_PROFILE_BYTES, "provisioning profile") for p in profiles]
        result = resign_ipa(src, dst, material, profiles=profile_data, bundle_id=bundle_id)
    except _Usage as exc:
        return _fail(str(exc), EXIT_USAGE)
    except SigningKeyInvalid as exc:
        return _fail(exc.message, EXIT_REFUSED)
    except AppyardError as exc:
        return _fail(f"{src}: {exc.message}", EXIT_REFUSED)
    except OSError as exc:
        return _fail(f"{exc.filename or dst}: {exc.strerror or exc}", EXIT_REFUSED)
    for bundle in result.bundles:
        if bundle.dropped_entitlements:
            sys.stdout.write(
                f"note: {bundle.path} loses entitlements its profile does not permit: "
                f"{', '.join(bundle.dropped_entitlements)}\n"
            )
    sys.stdout.write(
        f"signed {dst} ({result.bundle_id}, team {result.team_id or '-'}, "
        f"{len(result.signed_files)} Mach-O files) as {result.certificate_subject}\n"
    )
    return EXIT_OK
