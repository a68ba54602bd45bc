"""``appyard sign IN OUT --keystore FILE --alias A --password-env VAR [--schemes v1,v2,v3]``.

Signs an APK (aligned; v1/v2/v3, chosen from its minSdk like apksigner unless ``--schemes``
says otherwise) or an AAB (JAR signature) outside the server. Passwords are read from the
environment variables named on the command line, never from the command line itself, so
they stay out of shell history and ``ps``. Exit status: 0 signed, 1 the key or the artifact
was refused (the reason is printed), 2 a usage error.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from appyard.core.errors import AppyardError, BadRequest
from appyard.signing.keystore import SigningKeyInvalid, load_keystore
from appyard.signing.sign import choose_schemes, min_sdk_of, parse_schemes, sign_aab, sign_apk

EXIT_OK, EXIT_REFUSED, EXIT_USAGE = 0, 1, 2


def _fail(message: str, status: int) -> int:
    sys.stderr.write(f"appyard sign: {message}\n")
    return status


def run_sign(
    src: Path,
    dst: Path,
    *,
    keystore: Path,
    alias: str,
    password_env: str,
    key_password_env: str | None = None,
    schemes: str | None = None,
) -> int:
    """Sign ``src`` into ``dst`` (they may be the same file); return the exit status."""
    password = os.environ.get(password_env)
    if password is None:
        return _fail(
            f"the environment variable {password_env} (keystore password) is not set", EXIT_USAGE
        )
    key_password = None
    if key_password_env is not None:
        key_password = os.environ.get(key_password_env)
        if key_password is None:
            return _fail(
                f"the environment variable {key_password_env} (key password) is not set", EXIT_USAGE
            )
    kind = Path(src).suffix.lower()
    if kind not in (".apk", ".aab"):
        return _fail(f"{src} is neither an .apk nor an .aab", EXIT_USAGE)
    if not Path(src).is_file():
        return _fail(f"{src} does not exist", EXIT_USAGE)
    try:
        chosen = parse_schemes(schemes) if schemes is not None else None
        if kind == ".aab" and chosen is not None and chosen != {"v1"}:
            return _fail("an AAB carries a JAR signature only (--schemes v1)", EXIT_USAGE)
        material = load_keystore(
            keystore, password=password, alias=alias, key_password=key_password
        )
        if kind == ".aab":
            sign_aab(src, dst, material)
            done = "v1"
        else:
            min_sdk = min_sdk_of(src)
            chosen = chosen or choose_schemes(min_sdk)
            sign_apk(src, dst, material, schemes=chosen, min_sdk=min_sdk)
            done = ",".join(sorted(chosen))
    except SigningKeyInvalid as exc:
        return _fail(f"{keystore}: {exc.message}", EXIT_REFUSED)
    except BadRequest as exc:
        return _fail(exc.message, EXIT_USAGE)
    except AppyardError as exc:
        return _fail(f"{src}: {exc.message}", EXIT_REFUSED)
    except OSError as exc:
        return _fail(f"{exc.filename or dst}: {exc.strerror or exc}", EXIT_REFUSED)
    sys.stdout.write(f"signed {dst} ({done}) as {material.certificate.subject.rfc4514_string()}\n")
    return EXIT_OK
