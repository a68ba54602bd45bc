"""Secrets at rest: AES-256-GCM under a master key.

A sealed value is ``b"ay1" + key_id(8) + nonce(12) + ciphertext+tag``; ``key_id`` is the
first 8 bytes of SHA-256 of the master key, so a box that holds the current and the next key
(during rotation) opens values sealed with either. The associated data binds a value to its
record and field (a sealed password cannot be moved to another key's row).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from appyard import errors

MAGIC = b"ay1"


class SecretUnreadable(errors.AppyardError):
    """A sealed secret cannot be opened with the master key(s) this server has."""

    code, status = "secrets.unreadable", 500


def key_id(master: bytes) -> bytes:
    return hashlib.sha256(master).digest()[:8]


class SecretBox:
    """Seals with the current master key, opens with any key it holds. ``reload`` (optional)
    returns the keys afresh; it is called when a value names a key this box lacks, so a
    running server follows a rotation made by ``appyard admin rotate-master-key``."""

    def __init__(
        self, current: bytes, *others: bytes, reload: Callable[[], tuple[bytes, ...]] | None = None
    ) -> None:
        self._reload = reload
        self._load((current, *others))

    def _load(self, keys: tuple[bytes, ...]) -> None:
        for key in keys:
            if len(key) != 32:
                raise ValueError("A master key is 32 bytes.")
        self.current = keys[0]
        self._keys = {key_id(k): AESGCM(k) for k in keys}

    def seal(self, plaintext: bytes, aad: str) -> bytes:
        if self._reload is not None:  # never seal with a key a rotation has retired
            self._load(self._reload())
        nonce = os.urandom(12)
        kid = key_id(self.current)
        return MAGIC + kid + nonce + self._keys[kid].encrypt(nonce, plaintext, aad.encode())

    def open(self, sealed: bytes, aad: str) -> bytes:
        if sealed[:3] != MAGIC or len(sealed) < 3 + 8 + 12 + 16:
            raise SecretUnreadable("A sealed secret is malformed.")
        kid, nonce, body = sealed[3:11], sealed[11:23], sealed[23:]
        if kid not in self._keys and self._reload is not None:
            self._load(self._reload())
        aead = self._keys.get(kid)
        if aead is None:
            raise SecretUnreadable("A secret was sealed with a master key this server lacks.")
        try:
            return aead.decrypt(nonce, body, aad.encode())
        except InvalidTag:
            raise SecretUnreadable("A sealed secret failed authentication.") from None

    def reseal(self, sealed: bytes, aad: str) -> bytes:
        """Open with whichever key sealed it, seal again with the current key."""
        return self.seal(self.open(sealed, aad), aad)
