"""Artifact parsers: path -> facts. Pure, bounded, no database, no HTTP.

:func:`inspect_file` picks the parser by kind (the file's extension); each parser raises
:class:`appyard.errors.InvalidArtifact` with a reason a person can act on.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Union

from appyard.errors import InvalidArtifact
from appyard.inspect.facts import Identity
from appyard.inspect.serialize import to_jsonable

__all__ = ["Facts", "inspect_file", "summary", "to_jsonable", "upload_identity"]

if TYPE_CHECKING:
    from appyard.inspect.aab import AabFacts
    from appyard.inspect.apk import ApkFacts
    from appyard.inspect.ipa import IpaFacts

Facts = Union["ApkFacts", "AabFacts", "IpaFacts"]


def inspect_file(path: Path, kind: str | None = None, *, verify_signatures: bool = True) -> Facts:
    """Every fact of the artifact; ``verify_signatures=False`` skips what reads every byte
    (the upload-time fast path: manifest or Info.plist, resources, icon, profile)."""
    kind = (kind or path.suffix.lstrip(".")).lower()
    if kind == "apk":
        from appyard.inspect.apk import inspect_apk

        return inspect_apk(path, verify_signatures=verify_signatures)
    if kind == "aab":
        from appyard.inspect.aab import inspect_aab

        return inspect_aab(path, verify_signatures=verify_signatures)
    if kind == "ipa":
        from appyard.inspect.ipa import inspect_ipa

        return inspect_ipa(path, verify_signatures=verify_signatures)
    raise InvalidArtifact(f"Unknown artifact kind {kind!r}: expected apk, aab or ipa.")


def summary(path: Path, kind: str) -> Facts:
    """The upload-time fast path: :func:`inspect_file` without signature verification."""
    return inspect_file(path, kind, verify_signatures=False)


def upload_identity(path: Path) -> tuple[Identity, bool]:
    """The upload-time fast path for an APK: its identity, and whether it carries any
    signature (v1 files or an APK Signing Block). Signatures are verified later, in a job."""
    from appyard.inspect.apk import inspect_apk
    from appyard.signing.verify import signature_present

    facts = inspect_apk(path, verify_signatures=False)  # verifying reads every byte
    return facts.identity, signature_present(path)
