"""Java KeyStore (JKS) and JCEKS files, read without pyjks (which needs a C compiler).

The format (``sun.security.provider.JavaKeyStore``, ``com.sun.crypto.provider.JceKeyStore``):

* magic ``0xFEEDFEED`` (JKS) or ``0xCECECECE`` (JCEKS), a version (1 or 2), an entry count;
* each entry: a tag (1 private key, 2 trusted certificate, 3 secret key; JCEKS only), the
  alias (Java's modified UTF-8 with a 16-bit length), a creation time in milliseconds, then
  for a private key its protected PKCS#8 ``EncryptedPrivateKeyInfo`` and certificate chain,
  for a certificate the certificate (version 2 writes each certificate's type, ``X.509``);
* a SHA-1 digest over the password as UTF-16BE, the words ``Mighty Aphrodite`` and every
  byte before it: the store password's check, and the file's integrity check.

Private keys of a JKS store are protected with Sun's "JKS key protector" (OID
1.3.6.1.4.1.42.2.17.1.1: a SHA-1 keystream XORed over the key, a SHA-1 check of the
plaintext); JCEKS stores use ``PBEWithMD5AndTripleDES`` (OID 1.3.6.1.4.1.42.2.19.1, MD5
key derivation, DES-EDE3-CBC). Secret-key entries (Java-serialized objects) and any other
protection are refused with :class:`Unsupported`, whose message names the keytool command
that converts the store to PKCS#12.

Errors are this module's own (:class:`JksError` and subclasses), translated by
``keystore.py``. Nothing here logs or echoes a password.
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from dataclasses import dataclass, field

from asn1crypto import algos as asn1_algos
from asn1crypto import keys as asn1_keys
from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, modes

JKS_MAGIC = b"\xfe\xed\xfe\xed"
JCEKS_MAGIC = b"\xce\xce\xce\xce"
SUN_JKS_KEY_PROTECTOR = "1.3.6.1.4.1.42.2.17.1.1"
SUN_JCE_PBE_MD5_3DES = "1.3.6.1.4.1.42.2.19.1"
MAX_ENTRIES = 10_000
MAX_ITERATIONS = 1_000_000  # PBEWithMD5AndTripleDES; keytool writes 200 000

CONVERT = "keytool -importkeystore -srckeystore IN -destkeystore OUT.p12 -deststoretype pkcs12"


class JksError(ValueError):
    """The file is not a readable Java KeyStore."""


class BadIntegrity(JksError):
    """The store password is wrong, or the file was altered."""


class BadKeyPassword(JksError):
    """The key password is wrong."""


class Unsupported(JksError):
    """A part of the store appyard does not read; converting it to PKCS#12 helps."""


@dataclass(frozen=True)
class PrivateKeyEntry:
    alias: str
    timestamp_ms: int
    encrypted: bytes = field(repr=False)  # DER EncryptedPrivateKeyInfo
    cert_chain: tuple[bytes, ...]  # DER certificates, as stored (leaf first by convention)


@dataclass(frozen=True)
class TrustedCertEntry:
    alias: str
    timestamp_ms: int
    cert: bytes


@dataclass(frozen=True)
class JavaKeyStore:
    kind: str  # "jks" | "jceks"
    private_keys: dict[str, PrivateKeyEntry]
    certs: dict[str, TrustedCertEntry]

    def decrypt(self, entry: PrivateKeyEntry, password: str) -> bytes:
        """The entry's PKCS#8 ``PrivateKeyInfo`` (DER); :class:`BadKeyPassword` when
        ``password`` does not open it, :class:`Unsupported` for other protections."""
        return decrypt_private_key(entry.encrypted, password)


# --- reading ----------------------------------------------------------------------------------


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise JksError("The Java KeyStore is truncated.")
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def u16(self) -> int:
        return int(struct.unpack(">H", self.take(2))[0])

    def u32(self) -> int:
        return int(struct.unpack(">I", self.take(4))[0])

    def u64(self) -> int:
        return int(struct.unpack(">Q", self.take(8))[0])

    def utf(self) -> str:
        """Java's ``DataInput.readUTF``: modified UTF-8 (NUL as C0 80, supplementary
        characters as surrogate pairs)."""
        raw = self.take(self.u16()).replace(b"\xc0\x80", b"\x00")
        try:
            text = raw.decode("utf-8", "surrogatepass")
            return text.encode("utf-16-be", "surrogatepass").decode("utf-16-be")
        except UnicodeError:
            raise JksError("An alias in the Java KeyStore is not valid text.") from None

    def blob(self) -> bytes:
        return self.take(self.u32())


def store_digest(password: str, content: bytes) -> bytes:
    """The store's SHA-1 integrity digest over ``content`` (everything before the digest)."""
    return hashlib.sha1(  # noqa: S324 - the format's own check, not our choice
        _utf16be(password) + b"Mighty Aphrodite" + content
    ).digest()


def read_keystore(data: bytes, password: str) -> JavaKeyStore:
    """Parse a JKS or JCEKS store and check its digest with ``password``.

    Keys stay encrypted until :meth:`JavaKeyStore.decrypt`. Raises :class:`BadIntegrity`
    when the password does not match the digest, :class:`JksError` for a damaged file and
    :class:`Unsupported` for entries appyard does not read (secret keys)."""
    if len(data) < 32:
        raise JksError("The Java KeyStore is truncated.")
    content, digest = data[:-20], data[-20:]
    reader = _Reader(content)
    magic = reader.take(4)
    if magic not in (JKS_MAGIC, JCEKS_MAGIC):
        raise JksError("The file is not a Java KeyStore.")
    kind = "jks" if magic == JKS_MAGIC else "jceks"
    version = reader.u32()
    if version not in (1, 2):
        raise JksError(f"The Java KeyStore has an unknown version ({version}).")
    # The digest is checked before anything in the entries is trusted: a wrong password
    # and a damaged file are the same answer, as they are for keytool.
    if not hmac.compare_digest(store_digest(password, content), digest):
        raise BadIntegrity()
    count = reader.u32()
    if count > MAX_ENTRIES:
        raise JksError(f"The Java KeyStore claims {count} entries.")
    private_keys: dict[str, PrivateKeyEntry] = {}
    certs: dict[str, TrustedCertEntry] = {}
    for _ in range(count):
        tag = reader.u32()
        alias = reader.utf()
        timestamp = reader.u64()
        if tag == 1:
            encrypted = reader.blob()
            chain = tuple(_cert(reader, version) for _ in range(reader.u32()))
            private_keys[alias] = PrivateKeyEntry(alias, timestamp, encrypted, chain)
        elif tag == 2:
            certs[alias] = TrustedCertEntry(alias, timestamp, _cert(reader, version))
        elif tag == 3 and kind == "jceks":
            raise Unsupported(
                f"The JCEKS store holds a secret key (alias {alias!r}), which appyard does "
                f"not read; convert the store to PKCS#12 first: {CONVERT}"
            )
        else:
            raise JksError(f"The Java KeyStore has an entry of unknown type {tag}.")
    if reader.pos != len(content):
        raise JksError("The Java KeyStore has bytes after its last entry.")
    return JavaKeyStore(kind=kind, private_keys=private_keys, certs=certs)


def _cert(reader: _Reader, version: int) -> bytes:
    if version == 2:
        cert_type = reader.utf()
        if cert_type != "X.509":
            raise Unsupported(
                f"The Java KeyStore holds a {cert_type!r} certificate; only X.509 is read."
            )
    return reader.blob()


# --- private keys -----------------------------------------------------------------------------


def decrypt_private_key(encrypted: bytes, password: str) -> bytes:
    """PKCS#8 ``PrivateKeyInfo`` (DER) from a JKS or JCEKS ``EncryptedPrivateKeyInfo``."""
    try:
        info = asn1_keys.EncryptedPrivateKeyInfo.load(encrypted)
        algorithm = info["encryption_algorithm"]["algorithm"].dotted
        ciphertext = info["encrypted_data"].native
        params = info["encryption_algorithm"]["parameters"]
        params_der = params.dump() if params.native is not None else b""
    except (ValueError, TypeError, KeyError) as exc:
        raise JksError(f"A protected key is not valid DER ({exc}).") from None
    if algorithm == SUN_JKS_KEY_PROTECTOR:
        return jks_key_protector_decrypt(ciphertext, password)
    if algorithm == SUN_JCE_PBE_MD5_3DES:
        try:
            pbe = asn1_algos.Pbes1Params.load(params_der)
            salt, iterations = bytes(pbe["salt"].native), int(pbe["iterations"].native)
        except (ValueError, TypeError, KeyError) as exc:
            raise JksError(f"A protected key's parameters are not valid ({exc}).") from None
        return jce_pbe_decrypt(ciphertext, password, salt, iterations)
    raise Unsupported(
        f"A key in the Java KeyStore is protected with algorithm {algorithm}, which appyard "
        f"does not read; convert the store to PKCS#12 first: {CONVERT}"
    )


def jks_key_protector_decrypt(protected: bytes, password: str) -> bytes:
    """Sun's JKS key protector (``sun.security.provider.KeyProtector``): 20 bytes of salt,
    the key XORed with a keystream of chained SHA-1 digests (``d1 = SHA1(pw || salt)``,
    ``dn = SHA1(pw || dn-1)``), then ``SHA1(pw || key)`` as a check."""
    if len(protected) < 40:
        raise JksError("A protected key is truncated.")
    pw = _utf16be(password)
    salt, body, check = protected[:20], protected[20:-20], protected[-20:]
    stream = bytearray()
    digest = salt
    while len(stream) < len(body):
        digest = hashlib.sha1(pw + digest).digest()  # noqa: S324 - the format's own cipher
        stream += digest
    key = bytes(a ^ b for a, b in zip(body, stream, strict=False))
    if not hmac.compare_digest(hashlib.sha1(pw + key).digest(), check):  # noqa: S324
        raise BadKeyPassword()
    return key


def jce_pbe_decrypt(ciphertext: bytes, password: str, salt: bytes, iterations: int) -> bytes:
    """``PBEWithMD5AndTripleDES`` (``com.sun.crypto.provider.PBES1Core``): the two salt
    halves (the first reversed when they are equal) are each hashed ``iterations`` times with
    MD5 together with the ASCII password; the 32 bytes give a 3DES key and an IV."""
    if len(salt) != 8 or not 0 < iterations <= MAX_ITERATIONS:
        raise JksError("A protected key's parameters are not valid.")
    if len(ciphertext) == 0 or len(ciphertext) % 8:
        raise JksError("A protected key is truncated.")
    try:
        pw = password.encode("ascii")
    except UnicodeEncodeError:
        raise BadKeyPassword() from None  # Java refuses non-ASCII here, so it cannot match
    halves = [salt[:4], salt[4:]]
    if halves[0] == halves[1]:
        halves[0] = halves[0][::-1]
    derived = b""
    for half in halves:
        block = half
        for _ in range(iterations):
            block = hashlib.md5(block + pw).digest()  # noqa: S324 - the format's own KDF
        derived += block
    decryptor = Cipher(TripleDES(derived[:24]), modes.CBC(derived[24:])).decryptor()
    padded = decryptor.update(ciphertext) + decryptor.finalize()
    unpadder = padding.PKCS7(64).unpadder()
    try:
        key = unpadder.update(padded) + unpadder.finalize()
        asn1_keys.PrivateKeyInfo.load(key)["private_key_algorithm"].native  # noqa: B018
    except (ValueError, TypeError, KeyError):
        raise BadKeyPassword() from None  # no check value in this format: bad padding or DER
    return key


def _utf16be(password: str) -> bytes:
    """Java's ``char[]`` as bytes, big-endian (what both digests and the JKS protector use)."""
    return password.encode("utf-16-be", "surrogatepass")
