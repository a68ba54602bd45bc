"""Writes Java KeyStore (JKS) files for tests, written from the format's description and not
from appyard's reader (``test_keytool_agrees_on_a_jks_we_write`` has keytool list one).

Keys are protected the way JDK 8's keytool did it (Sun's JKS key protector, algorithm
parameters NULL); JDK 9+ keytool omits the parameters, which keytool-made stores cover.
"""

from __future__ import annotations

import hashlib
import os
import struct

from asn1crypto import core as asn1_core
from asn1crypto import keys as asn1_keys

SUN_JKS_KEY_PROTECTOR = "1.3.6.1.4.1.42.2.17.1.1"


def _utf(text: str) -> bytes:
    raw = text.encode("utf-8")
    return struct.pack(">H", len(raw)) + raw


def _blob(data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + data


def protect_key(pkcs8: bytes, password: str, salt: bytes | None = None) -> bytes:
    """An ``EncryptedPrivateKeyInfo`` holding ``pkcs8`` under Sun's JKS key protector."""
    pw = password.encode("utf-16-be")
    salt = salt or os.urandom(20)
    stream, digest = b"", salt
    while len(stream) < len(pkcs8):
        digest = hashlib.sha1(pw + digest).digest()
        stream += digest
    body = bytes(a ^ b for a, b in zip(pkcs8, stream, strict=False))
    protected = salt + body + hashlib.sha1(pw + pkcs8).digest()
    return asn1_keys.EncryptedPrivateKeyInfo(
        {
            "encryption_algorithm": {
                "algorithm": SUN_JKS_KEY_PROTECTOR,
                "parameters": asn1_core.Null(),
            },
            "encrypted_data": protected,
        }
    ).dump()


def jks_bytes(
    entries: list[tuple[str, bytes | None, list[bytes]]],
    *,
    password: str,
    key_password: str | None = None,
) -> bytes:
    """A version 2 JKS store: ``(alias, pkcs8 or None, [certificate DER, ...])`` per entry;
    an entry without a key is a trusted certificate (its first certificate)."""
    out = b"\xfe\xed\xfe\xed" + struct.pack(">II", 2, len(entries))
    for alias, pkcs8, certs in entries:
        stamp = struct.pack(">Q", 1_700_000_000_000)
        if pkcs8 is None:
            out += struct.pack(">I", 2) + _utf(alias) + stamp + _utf("X.509") + _blob(certs[0])
            continue
        protected = protect_key(pkcs8, key_password if key_password is not None else password)
        out += struct.pack(">I", 1) + _utf(alias) + stamp + _blob(protected)
        out += struct.pack(">I", len(certs))
        for der in certs:
            out += _utf("X.509") + _blob(der)
    pw = password.encode("utf-16-be")
    return out + hashlib.sha1(pw + b"Mighty Aphrodite" + out).digest()
