"""Signing-key rotation: SigningCertificateLineage files and how a rotated APK is signed.

A lineage is the proof that a signing certificate was rotated: a list of certificates, oldest
first, each one after the first signed by the key of the one before. ``apksigner rotate
--out FILE`` writes it (apksig ``SigningCertificateLineage.write``)::

    u32 magic 0x3eff39d1 | u32 version 1 | u32 length | encoded lineage

and the encoded lineage (``u32 1`` then length-prefixed nodes) is exactly the value a v3 or
v3.1 signer carries as its proof-of-rotation attribute, so appyard keeps it byte for byte
(node capabilities included) and never re-encodes it. Every link is verified on reading with
the verifier's own lineage code (:func:`appyard.signing.verify.lineage_certificates`).

Signing with a rotation (:class:`Rotation`) follows apksigner: the lineage's first (original)
key signs v1 and v2, because devices before Android 9 know nothing of rotation; the current
key signs the v3 (Android 9+) or v3.1 (Android 13+) signer that carries the lineage. The
rotation's ``min_sdk`` (apksigner's ``--rotation-min-sdk-version``, default 33) decides
which: 28 to 32 put the current key in the v3 block; 33 and later put it in a v3.1 block and
keep the original key in the v3 block for API 24 to ``min_sdk - 1``, unless the APK's own
minSdk already reaches ``min_sdk`` (then the v3 block alone carries the rotated key).
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass

from appyard.errors import BadRequest
from appyard.signing.keystore import SigningMaterial
from appyard.signing.model import CertificateInfo
from appyard.signing.verify import SDK_P, SDK_T, lineage_certificates

LINEAGE_FILE_MAGIC = 0x3EFF39D1
LINEAGE_FILE_VERSION = 1
MAX_LINEAGE_BYTES = 1024 * 1024
DEFAULT_ROTATION_MIN_SDK = SDK_T
"""apksigner's default ``--rotation-min-sdk-version`` since build tools 33: rotate on 13+."""

__all__ = [
    "DEFAULT_ROTATION_MIN_SDK",
    "InvalidLineage",
    "Lineage",
    "Rotation",
    "load_lineage",
    "read_lineage",
]


class InvalidLineage(BadRequest):
    """The signing-certificate lineage cannot be used."""

    code = "signing.invalid_lineage"


@dataclass(frozen=True)
class Lineage:
    """A verified lineage: its encoded bytes (the proof-of-rotation attribute value) and its
    certificates, oldest first."""

    encoded: bytes
    certificates: tuple[CertificateInfo, ...]


def read_lineage(data: bytes) -> Lineage:
    """Parse and verify a lineage file as ``apksigner rotate`` writes it."""
    if len(data) > MAX_LINEAGE_BYTES:
        raise InvalidLineage("The lineage file is larger than 1 MiB; it cannot be a lineage.")
    if len(data) < 12:
        raise InvalidLineage("The lineage file is too short to be a SigningCertificateLineage.")
    magic, version, length = struct.unpack_from("<III", data)
    if magic != LINEAGE_FILE_MAGIC:
        raise InvalidLineage(
            "The file is not a SigningCertificateLineage (wrong magic); make one with "
            "`apksigner rotate`."
        )
    if version != LINEAGE_FILE_VERSION:
        raise InvalidLineage(f"Unsupported SigningCertificateLineage version {version}.")
    if length != len(data) - 12:
        raise InvalidLineage("The lineage file's length does not match its contents.")
    encoded = data[12:]
    try:
        certificates = tuple(lineage_certificates(encoded))
    except ValueError as exc:
        raise InvalidLineage(f"The lineage does not verify: {exc}") from None
    if len(certificates) < 2:
        raise InvalidLineage("The lineage holds a single certificate: nothing was rotated.")
    return Lineage(encoded=encoded, certificates=certificates)


def load_lineage(path: str | os.PathLike[str]) -> Lineage:
    with open(path, "rb") as fh:
        return read_lineage(fh.read(MAX_LINEAGE_BYTES + 1))


@dataclass(frozen=True)
class Rotation:
    """Sign with a rotated key: ``original`` is the lineage's first signer (it signs v1, v2
    and, below ``min_sdk``, v3), the signing key given to the signer is its last."""

    lineage: Lineage
    original: SigningMaterial
    min_sdk: int = DEFAULT_ROTATION_MIN_SDK

    def check(self, current: SigningMaterial) -> None:
        """Refuse a rotation whose keys are not the lineage's first and last certificates."""
        if self.min_sdk < SDK_P:
            raise InvalidLineage(
                f"Key rotation needs Android 9 (API {SDK_P}) or later; "
                f"the rotation's minimum SDK is {self.min_sdk}."
            )
        first, last = self.lineage.certificates[0], self.lineage.certificates[-1]
        if self.original.certificate_sha256 != first.sha256:
            raise InvalidLineage(
                "The original key is not the lineage's first certificate "
                f"({first.dn}); v1 and v2 must be signed by the key the app was first "
                "signed with."
            )
        if current.certificate_sha256 != last.sha256:
            raise InvalidLineage(
                f"The signing key is not the lineage's last certificate ({last.dn}); sign with "
                "the key the lineage rotates to."
            )

    def uses_v31(self, apk_min_sdk: int) -> bool:
        """Whether the rotated key goes in a v3.1 block (and the original stays in v3)."""
        return self.min_sdk >= SDK_T and apk_min_sdk < self.min_sdk
