"""Open a signing key: Java KeyStore (JKS/JCEKS), PKCS#12, or PEM key + certificate chain.

:func:`load_keystore` (a path) and :func:`load_keystore_bytes` (bytes, e.g. decrypted from
storage) detect the format from the content, open it with the store password, pick the
private-key entry named ``alias`` (decrypted with ``key_password``, default: the store
password) and return a :class:`SigningMaterial`. :func:`load_pem` takes a key file and a
separate certificate chain file.

Every refusal is a :class:`SigningKeyInvalid` subclass with a reason a person can act on:
a file over :data:`MAX_KEYSTORE_BYTES`, an unknown format, a wrong store or key password, a
missing alias, no private key, an expired certificate, a certificate that does not belong to
the key, a key the signer does not support (RSA under 2048 bits, EC other than P-256, DSA), or
(``pkcs12_only``, for iOS keys) a file that is not PKCS#12.
Java KeyStores are read by :mod:`appyard.signing.jks`. Nothing here logs or echoes a password.
"""

from __future__ import annotations

import hashlib
import re
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from asn1crypto import pkcs12 as asn1_pkcs12
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.serialization import pkcs12

from appyard.errors import BadRequest
from appyard.signing import jks

MAX_KEYSTORE_BYTES = 10 * 1024 * 1024
MIN_RSA_BITS = 2048

SigningKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


# --- errors -----------------------------------------------------------------------------------


class SigningKeyInvalid(BadRequest):
    """The signing key cannot be used."""

    code = "signing_key.invalid"


class KeystoreTooLarge(SigningKeyInvalid):
    """The keystore file is larger than 10 MB."""

    code = "signing_key.too_large"


class KeystoreUnreadable(SigningKeyInvalid):
    """The file is not a Java KeyStore, PKCS#12 or PEM file."""

    code = "signing_key.unreadable"


class NotPkcs12(SigningKeyInvalid):
    """An iOS signing key must be a PKCS#12 (.p12) file holding the certificate and its key."""

    code = "signing_key.not_pkcs12"


class WrongPassword(SigningKeyInvalid):
    """The keystore password is wrong."""

    code = "signing_key.wrong_password"


class AliasNotFound(SigningKeyInvalid):
    """The keystore has no private key under this alias."""

    code = "signing_key.alias_not_found"


class NoPrivateKey(SigningKeyInvalid):
    """The keystore holds no private key."""

    code = "signing_key.no_private_key"


class CertificateExpired(SigningKeyInvalid):
    """The signing certificate has expired."""

    code = "signing_key.certificate_expired"


class KeyCertificateMismatch(SigningKeyInvalid):
    """No certificate in the chain belongs to the private key."""

    code = "signing_key.certificate_mismatch"


class UnsupportedKey(SigningKeyInvalid):
    """Only RSA (2048 bits or more) and EC P-256 keys can sign."""

    code = "signing_key.unsupported_key"


# --- result -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class SigningMaterial:
    """A private key and its certificate chain, leaf first (``cert_chain[0]`` is the signer)."""

    private_key: SigningKey = field(repr=False)
    cert_chain: tuple[x509.Certificate, ...]
    alias: str

    @property
    def certificate(self) -> x509.Certificate:
        return self.cert_chain[0]

    @property
    def key_algorithm(self) -> str:
        """``"RSA"`` or ``"EC"`` (also the v1 signature block's file extension)."""
        return "RSA" if isinstance(self.private_key, rsa.RSAPrivateKey) else "EC"

    @property
    def certificate_sha256(self) -> str:
        """Lowercase hex SHA-256 of the signer certificate's DER (apksigner's "certificate
        SHA-256 digest")."""
        return hashlib.sha256(self.certificate.public_bytes(serialization.Encoding.DER)).hexdigest()

    def sign(self, data: bytes, algorithm: hashes.HashAlgorithm | None = None) -> bytes:
        """Sign ``data``: RSASSA-PKCS1-v1_5 for RSA keys, ECDSA (DER ``r, s``) for EC keys,
        with ``algorithm`` (SHA-256 unless given) as the digest."""
        chosen = algorithm or hashes.SHA256()
        key = self.private_key
        if isinstance(key, rsa.RSAPrivateKey):
            return key.sign(data, padding.PKCS1v15(), chosen)
        return key.sign(data, ec.ECDSA(chosen))


# --- entry points -----------------------------------------------------------------------------


def load_keystore(
    path: str | Path,
    *,
    password: str,
    alias: str | None = None,
    key_password: str | None = None,
    now: datetime | None = None,
) -> SigningMaterial:
    """Open a JKS, JCEKS, PKCS#12 or combined PEM (key + certificates) file.

    ``alias`` may be omitted when the store holds exactly one private key. ``key_password``
    defaults to ``password`` (what keytool and Android Studio do). ``now`` is the time the
    certificates must be valid at (default: the current time).
    """
    return load_keystore_bytes(
        _read_bounded(Path(path)),
        password=password,
        alias=alias,
        key_password=key_password,
        now=now,
        default_alias=Path(path).stem,
    )


def load_keystore_bytes(
    data: bytes,
    *,
    password: str,
    alias: str | None = None,
    key_password: str | None = None,
    now: datetime | None = None,
    default_alias: str = "signer",
    pkcs12_only: bool = False,
) -> SigningMaterial:
    """Same as :func:`load_keystore` for content already in memory. ``pkcs12_only`` (iOS
    keys) refuses JKS, JCEKS and PEM content with :class:`NotPkcs12`."""
    if len(data) > MAX_KEYSTORE_BYTES:
        raise _too_large(len(data))
    kind = _detect(data)
    if pkcs12_only and kind != "pkcs12":
        raise NotPkcs12(
            "An iOS signing key must be a PKCS#12 (.p12) file with the signing certificate "
            f"and its private key; this file is a {_KIND_NAMES[kind]}.",
            format=kind,
        )
    if kind == "jks":
        key, chain, name = _open_jks(data, password, alias, key_password)
    elif kind == "pkcs12":
        key, chain, name = _open_pkcs12(data, password, alias, default_alias)
    else:
        key, chain = _open_pem(data, data, key_password if key_password is not None else password)
        name = alias or default_alias
    return _finish(key, chain, name, now)


class OpenedKeys:
    """Keystores opened once per process: :meth:`load` is :func:`load_keystore_bytes`, but
    the same content with the same passwords is decrypted only the first time.

    Opening a keystore derives its keys from the password (PKCS#12: PBKDF2 over thousands of
    rounds): about 0.1 s of CPU, during which the cryptography library holds the GIL, so
    every other thread of the process (the API's requests) waits. A build job signs with a
    managed key it opened before. Entries are found by a SHA-256 of the content and the
    passwords (neither is kept); the certificates' validity is checked at every load, as
    :func:`load_keystore_bytes` does; a failed load is never kept. At most ``size`` keys,
    the least recently used leaving first."""

    def __init__(self, size: int = 16) -> None:
        self.size = size
        self._opened: OrderedDict[bytes, SigningMaterial] = OrderedDict()
        self._lock = threading.Lock()

    def load(
        self,
        data: bytes,
        *,
        password: str,
        alias: str | None = None,
        key_password: str | None = None,
        now: datetime | None = None,
        pkcs12_only: bool = False,
    ) -> SigningMaterial:
        entry = hashlib.sha256()
        for part in (data, password, alias, key_password, pkcs12_only):
            value = part if isinstance(part, bytes) else repr(part).encode()
            entry.update(len(value).to_bytes(8, "big") + value)
        found = entry.digest()
        with self._lock:
            opened = self._opened.get(found)
            if opened is not None:
                self._opened.move_to_end(found)
        if opened is not None:  # judged again at ``now``, as a fresh load would be
            return _finish(opened.private_key, list(opened.cert_chain), opened.alias, now)
        opened = load_keystore_bytes(
            data,
            password=password,
            alias=alias,
            key_password=key_password,
            now=now,
            pkcs12_only=pkcs12_only,
        )
        with self._lock:
            self._opened[found] = opened
            while len(self._opened) > self.size:
                self._opened.popitem(last=False)
        return opened


def load_pem(
    key_path: str | Path,
    cert_path: str | Path,
    *,
    key_password: str | None = None,
    alias: str | None = None,
    now: datetime | None = None,
) -> SigningMaterial:
    """Open a PEM private key (PKCS#8, PKCS#1 or SEC1; optionally encrypted) and a PEM chain."""
    key_data = _read_bounded(Path(key_path))
    cert_data = _read_bounded(Path(cert_path))
    for data in (key_data, cert_data):
        if _detect(data) != "pem":
            raise KeystoreUnreadable("The key and certificate files must be PEM files.")
    key, chain = _open_pem(key_data, cert_data, key_password)
    return _finish(key, chain, alias or Path(key_path).stem, now)


# --- formats ----------------------------------------------------------------------------------

_KIND_NAMES = {"jks": "Java KeyStore", "pem": "PEM file", "pkcs12": "PKCS#12 file"}
_JKS_MAGIC = (jks.JKS_MAGIC, jks.JCEKS_MAGIC)
_PEM_BLOCK = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----\r?\n.*?-----END \1-----", re.DOTALL)


def _read_bounded(path: Path) -> bytes:
    try:
        size = path.stat().st_size
        if size > MAX_KEYSTORE_BYTES:
            raise _too_large(size)
        with path.open("rb") as fh:
            data = fh.read(MAX_KEYSTORE_BYTES + 1)
    except OSError as exc:
        raise KeystoreUnreadable(
            f"The keystore file cannot be read ({exc.strerror or exc})."
        ) from None
    if len(data) > MAX_KEYSTORE_BYTES:
        raise _too_large(len(data))
    return data


def _too_large(size: int) -> KeystoreTooLarge:
    return KeystoreTooLarge(
        f"The keystore file is {size} bytes; at most {MAX_KEYSTORE_BYTES} (10 MB) are accepted.",
        size=size,
        limit=MAX_KEYSTORE_BYTES,
    )


def _detect(data: bytes) -> str:
    if data[:4] in _JKS_MAGIC:
        return "jks"
    if b"-----BEGIN " in data[: 64 * 1024]:
        return "pem"
    if data[:1] == b"\x30":
        try:
            pfx = asn1_pkcs12.Pfx.load(data)
            pfx["auth_safe"]["content_type"].native  # noqa: B018 - forces parsing
        except (ValueError, TypeError, KeyError):
            pass
        else:
            return "pkcs12"
    raise KeystoreUnreadable()


def _open_jks(
    data: bytes, password: str, alias: str | None, key_password: str | None
) -> tuple[object, list[x509.Certificate], str]:
    try:
        store = jks.read_keystore(data, password)
    except jks.BadIntegrity:
        raise WrongPassword(which="store") from None
    except jks.Unsupported as exc:
        raise KeystoreUnreadable(str(exc)) from None
    except jks.JksError as exc:
        raise KeystoreUnreadable(f"The Java KeyStore is damaged ({exc}).") from None
    keys = store.private_keys
    if not keys:
        raise NoPrivateKey("The keystore holds no private key (only certificates or secret keys).")
    name = _pick_alias(alias, sorted(keys))
    entry = keys[name]
    try:
        pkcs8 = store.decrypt(entry, key_password if key_password is not None else password)
    except jks.BadKeyPassword:
        raise WrongPassword(
            f"The key password for alias {name!r} is wrong.", which="key", alias=name
        ) from None
    except jks.Unsupported as exc:
        raise KeystoreUnreadable(str(exc)) from None
    except jks.JksError as exc:
        raise KeystoreUnreadable(f"The key under alias {name!r} cannot be read ({exc}).") from None
    try:
        key = serialization.load_der_private_key(pkcs8, password=None)
        chain = [x509.load_der_x509_certificate(der) for der in entry.cert_chain]
    except (ValueError, TypeError, NotImplementedError) as exc:
        raise KeystoreUnreadable(f"The key under alias {name!r} cannot be read ({exc}).") from None
    return key, chain, name


def _pick_alias(alias: str | None, available: list[str]) -> str:
    if alias is None:
        if len(available) == 1:
            return available[0]
        raise AliasNotFound(
            f"The keystore holds {len(available)} private keys; name one with an alias "
            f"({', '.join(available)}).",
            available=available,
        )
    for name in available:
        if name == alias or name.lower() == alias.lower():  # JKS lower-cases aliases
            return name
    raise AliasNotFound(
        f"The keystore has no private key under alias {alias!r}; "
        f"it has: {', '.join(available) or 'none'}.",
        alias=alias,
        available=available,
    )


def _open_pkcs12(
    data: bytes, password: str, alias: str | None, default_alias: str
) -> tuple[object, list[x509.Certificate], str]:
    loaded: pkcs12.PKCS12KeyAndCertificates | None = None
    for candidate in (password.encode(), None) if password == "" else (password.encode(),):
        try:
            loaded = pkcs12.load_pkcs12(data, candidate)
            break
        except ValueError:
            continue
        except (TypeError, NotImplementedError) as exc:  # unsupported encryption
            raise KeystoreUnreadable(f"The PKCS#12 file cannot be opened ({exc}).") from None
    if loaded is None:
        raise WrongPassword(which="store")
    if loaded.key is None:
        raise NoPrivateKey("The PKCS#12 file holds no private key (only certificates).")
    certs = ([loaded.cert] if loaded.cert is not None else []) + list(loaded.additional_certs)
    friendly = loaded.cert.friendly_name if loaded.cert is not None else None
    names = [friendly.decode("utf-8", "replace")] if friendly else []
    name = _pick_alias(alias, names) if names or alias is not None else default_alias
    return loaded.key, [c.certificate for c in certs], name


def _open_pem(
    key_data: bytes, cert_data: bytes, key_password: str | None
) -> tuple[object, list[x509.Certificate]]:
    key_blocks = [
        m.group(0) for m in _PEM_BLOCK.finditer(key_data) if m.group(1).endswith(b"PRIVATE KEY")
    ]
    cert_blocks = [
        m.group(0) for m in _PEM_BLOCK.finditer(cert_data) if m.group(1) == b"CERTIFICATE"
    ]
    if not key_blocks:
        raise NoPrivateKey("The PEM file holds no private key.")
    if len(key_blocks) > 1:
        raise KeystoreUnreadable("The PEM file holds more than one private key.")
    if not cert_blocks:
        raise KeyCertificateMismatch("The PEM input holds no certificate for the key.")
    block = key_blocks[0]
    encrypted = b"ENCRYPTED" in block.split(b"\n", 1)[0] or b"Proc-Type: 4,ENCRYPTED" in block
    if encrypted and not key_password:
        raise WrongPassword("The PEM private key is encrypted; give its password.", which="key")
    try:
        key = serialization.load_pem_private_key(
            block, password=key_password.encode() if encrypted and key_password else None
        )
    except ValueError:
        if encrypted:
            raise WrongPassword("The PEM private key password is wrong.", which="key") from None
        raise KeystoreUnreadable("The PEM private key cannot be read.") from None
    except (TypeError, NotImplementedError) as exc:
        raise KeystoreUnreadable(f"The PEM private key cannot be read ({exc}).") from None
    try:
        chain = [x509.load_pem_x509_certificate(b) for b in cert_blocks]
    except ValueError as exc:
        raise KeystoreUnreadable(f"A PEM certificate cannot be read ({exc}).") from None
    return key, chain


# --- checks -----------------------------------------------------------------------------------


def _finish(
    key: object, chain: list[x509.Certificate], alias: str, now: datetime | None
) -> SigningMaterial:
    if isinstance(key, rsa.RSAPrivateKey):
        if key.key_size < MIN_RSA_BITS:
            raise UnsupportedKey(
                f"The RSA key has {key.key_size} bits; at least {MIN_RSA_BITS} are required.",
                key_size=key.key_size,
            )
    elif isinstance(key, ec.EllipticCurvePrivateKey):
        if not isinstance(key.curve, ec.SECP256R1):
            raise UnsupportedKey(
                f"The EC key uses curve {key.curve.name}; only P-256 (secp256r1) is supported.",
                curve=key.curve.name,
            )
    else:
        raise UnsupportedKey(
            f"The key is a {type(key).__name__.lstrip('_')}; only RSA and EC P-256 keys can sign."
        )
    public = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    leaf_index = next(
        (
            i
            for i, cert in enumerate(chain)
            if cert.public_key().public_bytes(
                serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            == public
        ),
        None,
    )
    if leaf_index is None:
        raise KeyCertificateMismatch(
            "No certificate in the chain belongs to the private key."
            if chain
            else "The key has no certificate."
        )
    ordered = [chain[leaf_index], *chain[:leaf_index], *chain[leaf_index + 1 :]]
    at = now or datetime.now(UTC)
    for cert in ordered:
        if cert.not_valid_after_utc < at:
            raise CertificateExpired(
                f"The certificate {cert.subject.rfc4514_string()} expired on "
                f"{cert.not_valid_after_utc.date().isoformat()}.",
                subject=cert.subject.rfc4514_string(),
                not_after=cert.not_valid_after_utc.isoformat(),
            )
    return SigningMaterial(private_key=key, cert_chain=tuple(ordered), alias=alias)


# --- a new key ----------------------------------------------------------------------------------


def generate_pkcs12(
    *,
    common_name: str,
    organization: str,
    password: str,
    now: datetime,
    years: int = 30,
    bits: int = 3072,
    alias: str = "appyard",
) -> bytes:
    """A new RSA key (3072 bits by default) with a self-signed certificate valid for
    ``years`` (Android wants app keys to outlive the app: 25 years or more), as a PKCS#12
    file encrypted with ``password`` under ``alias``."""
    from datetime import timedelta

    from cryptography.x509.oid import NameOID

    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization),
        ]
    )
    start = now.astimezone(UTC).replace(microsecond=0) - timedelta(days=1)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + timedelta(days=365 * years))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return pkcs12.serialize_key_and_certificates(
        alias.encode(),
        key,
        cert,
        None,
        serialization.BestAvailableEncryption(password.encode()),
    )
