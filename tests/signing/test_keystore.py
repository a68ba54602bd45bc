"""Opening signing keys: JKS, PKCS#12 and PEM; every refusal is typed and says why.

The helpers at the top (fixture keys, keys and stores made on the spot) are shared with
test_sign.py.
"""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID

from appyard.errors import BadRequest
from appyard.signing.keystore import (
    MAX_KEYSTORE_BYTES,
    AliasNotFound,
    CertificateExpired,
    KeyCertificateMismatch,
    KeystoreTooLarge,
    KeystoreUnreadable,
    NoPrivateKey,
    OpenedKeys,
    SigningKeyInvalid,
    SigningMaterial,
    UnsupportedKey,
    WrongPassword,
    load_keystore,
    load_keystore_bytes,
    load_pem,
)
from tests.conftest import need
from tests.signing.jks_files import jks_bytes

KEYS = Path(__file__).resolve().parents[1] / "fixtures" / "keys"

# name -> (file, store password, alias, certificate subject as apksigner prints it, algorithm)
FIXTURE_KEYS = {
    "rsa-p12": (
        "release.p12",
        "fixture-release",
        "release",
        "CN=Appyard Fixture Release, O=Appyard Fixtures, C=US",
        "RSA",
    ),
    "ec-p12": (
        "other.p12",
        "fixture-other",
        "other",
        "CN=Appyard Fixture Other, O=Other Org, C=DE",
        "EC",
    ),
}
# Made at test time, so the matrix covers both key types in every container:
# name -> (alias, certificate subject as apksigner prints it, algorithm)
GENERATED_KEYS = {
    # RSA 2048 and EC P-256 in JKS keystores written by keytool itself (tests/fixtures/keys/
    # debug.keystore is, like Android Studio's debug keystores since JDK 9, a PKCS#12 file)
    "rsa-jks": ("rsajks", "CN=Appyard Test RSA JKS, O=Appyard Tests, C=US", "RSA"),
    "ec-jks": ("ecjks", "CN=Appyard Test EC JKS, O=Appyard Tests, C=US", "EC"),
    # EC P-256 PEM key + a chain of two PEM certificates (leaf issued by an RSA CA)
    "ec-pem-chain": ("ecleaf", "CN=Appyard Test EC Leaf, O=Appyard Tests, C=US", "EC"),
}
KEY_TYPES = [*FIXTURE_KEYS, "rsa-pem", *GENERATED_KEYS]
PEM_PASSWORD = "pem-password"
GENERATED_PASSWORD = "generated-password"

Key = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


def export_pem(material: SigningMaterial, directory: Path) -> tuple[Path, Path]:
    """Write the key (encrypted PKCS#8) and its certificate chain as a PEM pair."""
    key_path, cert_path = directory / "signer.key.pem", directory / "signer.crt.pem"
    key_path.write_bytes(
        material.private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(PEM_PASSWORD.encode()),
        )
    )
    cert_path.write_bytes(
        b"".join(c.public_bytes(serialization.Encoding.PEM) for c in material.cert_chain)
    )
    return key_path, cert_path


def _name(cn: str) -> x509.Name:
    # ASN.1 order C, O, CN: Java (apksigner, jarsigner) prints it as "CN=..., O=..., C=..."
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "US"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Appyard Tests"),
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
        ]
    )


KEYTOOL_ALGORITHMS = {
    "rsa-jks": ["-keyalg", "RSA", "-keysize", "2048", "-sigalg", "SHA256withRSA"],
    "ec-jks": ["-keyalg", "EC", "-groupname", "secp256r1", "-sigalg", "SHA256withECDSA"],
}


def make_jks_with_keytool(
    tmp: Path, name: str = "ec-jks", *, storetype: str = "JKS", key_password: str = ""
) -> Path:
    """A key pair (``rsa-jks`` or ``ec-jks``) in a JKS (or JCEKS) keystore made by keytool,
    the reference tool; the key password is the store password unless given."""
    keytool = shutil.which("keytool")
    need(keytool is not None, "keytool (a JDK) is not installed")
    assert keytool is not None
    path = tmp / f"{name}.{storetype.lower()}"
    path.unlink(missing_ok=True)
    alias, subject_dn, _algorithm = GENERATED_KEYS[name]
    subprocess.run(
        [
            keytool, "-genkeypair", "-keystore", str(path), "-storetype", storetype,
            "-storepass", GENERATED_PASSWORD, "-keypass", key_password or GENERATED_PASSWORD,
            "-alias", alias, *KEYTOOL_ALGORITHMS[name],
            "-dname", subject_dn, "-validity", "3650",
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return path


def make_ec_pem_chain(tmp: Path) -> tuple[Path, Path]:
    """An EC P-256 leaf key (encrypted PKCS#8 PEM) and its chain (leaf, RSA CA) as PEM."""
    now = datetime.now(UTC)
    ca_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name("Appyard Test CA"))
        .issuer_name(_name("Appyard Test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(_name("Appyard Test EC Leaf"))
        .issuer_name(ca.subject)
        .public_key(leaf_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key_path, chain_path = tmp / "ec-leaf.key.pem", tmp / "ec-chain.crt.pem"
    key_path.write_bytes(
        leaf_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(GENERATED_PASSWORD.encode()),
        )
    )
    chain_path.write_bytes(
        leaf.public_bytes(serialization.Encoding.PEM) + ca.public_bytes(serialization.Encoding.PEM)
    )
    return key_path, chain_path


def load_key_type(name: str, tmp: Path) -> SigningMaterial:
    """One of KEY_TYPES; ``rsa-pem`` is release.p12 exported to a PEM pair in ``tmp``, the
    GENERATED_KEYS are made in ``tmp``."""
    if name == "rsa-pem":
        key_path, cert_path = export_pem(load_key_type("rsa-p12", tmp), tmp)
        return load_pem(key_path, cert_path, key_password=PEM_PASSWORD, alias="release")
    if name in KEYTOOL_ALGORITHMS:
        path = make_jks_with_keytool(tmp, name)
        return load_keystore(path, password=GENERATED_PASSWORD, alias=GENERATED_KEYS[name][0])
    if name == "ec-pem-chain":
        key_path, chain_path = make_ec_pem_chain(tmp)
        return load_pem(
            key_path, chain_path, key_password=GENERATED_PASSWORD, alias=GENERATED_KEYS[name][0]
        )
    file, password, alias, _subject, _algorithm = FIXTURE_KEYS[name]
    return load_keystore(KEYS / file, password=password, alias=alias)


def _key_facts(name: str) -> tuple[str, str, str]:
    """(alias, subject, algorithm) of one of KEY_TYPES."""
    if name in GENERATED_KEYS:
        return GENERATED_KEYS[name]
    _file, _password, alias, subject_dn, algorithm = FIXTURE_KEYS[
        "rsa-p12" if name == "rsa-pem" else name
    ]
    return alias, subject_dn, algorithm


def expected_subject(name: str) -> str:
    return _key_facts(name)[1]


def make_key(kind: str = "rsa") -> Key:
    if kind == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    if kind == "rsa1024":
        return rsa.generate_private_key(public_exponent=65537, key_size=1024)
    if kind == "p384":
        return ec.generate_private_key(ec.SECP384R1())
    return ec.generate_private_key(ec.SECP256R1())


def make_cert(
    key: Key,
    *,
    cn: str = "Test Signer",
    not_before: datetime | None = None,
    not_after: datetime | None = None,
) -> x509.Certificate:
    now = datetime.now(UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before or now - timedelta(days=1))
        .not_valid_after(not_after or now + timedelta(days=3650))
        .sign(key, hashes.SHA256())
    )


def write_p12(
    path: Path,
    key: Key | None,
    certs: list[x509.Certificate],
    *,
    password: str,
    alias: str = "signer",
) -> Path:
    encryption = serialization.BestAvailableEncryption(password.encode())
    if key is None:
        data = pkcs12.serialize_key_and_certificates(alias.encode(), None, None, certs, encryption)
    else:
        data = pkcs12.serialize_key_and_certificates(
            alias.encode(), key, certs[0], certs[1:] or None, encryption
        )
    path.write_bytes(data)
    return path


def write_jks(
    path: Path,
    entries: list[tuple[str, Key | None, x509.Certificate]],
    *,
    password: str,
    key_password: str | None = None,
) -> Path:
    """A JKS store written by the test helper (a trusted certificate where the key is None)."""
    rows = [
        (
            alias,
            None
            if key is None
            else key.private_bytes(
                serialization.Encoding.DER,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            ),
            [cert.public_bytes(serialization.Encoding.DER)],
        )
        for alias, key, cert in entries
    ]
    path.write_bytes(jks_bytes(rows, password=password, key_password=key_password))
    return path


def subject(material: SigningMaterial) -> str:
    """The certificate subject the way apksigner prints it (``CN=..., O=..., C=...``)."""
    return material.certificate.subject.rfc4514_string().replace(",", ", ")


# --- the fixture keys open ---------------------------------------------------------------------


@pytest.mark.parametrize("name", KEY_TYPES)
def test_fixture_keys_open_with_their_password_and_alias(name: str, tmp_path: Path) -> None:
    material = load_key_type(name, tmp_path)

    alias, subject_dn, algorithm = _key_facts(name)
    assert subject(material) == subject_dn
    assert material.key_algorithm == algorithm
    assert material.alias == alias
    assert material.certificate.public_key() == material.private_key.public_key()


def test_signing_material_is_frozen_and_keeps_the_key_out_of_its_repr(tmp_path: Path) -> None:
    material = load_key_type("rsa-p12", tmp_path)

    with pytest.raises(dataclasses.FrozenInstanceError):
        material.alias = "other"  # type: ignore[misc]
    assert "private_key" not in repr(material)


def test_alias_may_be_omitted_when_the_store_holds_one_key() -> None:
    material = load_keystore(KEYS / "debug.keystore", password="android")

    assert material.alias == "androiddebugkey"


def test_jks_aliases_match_case_insensitively_like_keytool() -> None:
    material = load_keystore(KEYS / "debug.keystore", password="android", alias="AndroidDebugKey")

    assert material.alias == "androiddebugkey"


def test_keystore_bytes_open_like_files() -> None:
    data = (KEYS / "release.p12").read_bytes()

    material = load_keystore_bytes(data, password="fixture-release", alias="release")

    assert material.key_algorithm == "RSA"


def test_combined_pem_file_holds_key_and_chain(tmp_path: Path) -> None:
    key = make_key("ec")
    cert = make_cert(key)
    combined = tmp_path / "signer.pem"
    combined.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"secret"),
        )
        + cert.public_bytes(serialization.Encoding.PEM)
    )

    material = load_keystore(combined, password="secret", alias="mine")

    assert material.alias == "mine"
    assert material.certificate == cert


def test_pem_chain_is_reordered_leaf_first(tmp_path: Path) -> None:
    ca_key, key = make_key(), make_key()
    ca = make_cert(ca_key, cn="CA")
    leaf = make_cert(key, cn="Leaf")
    key_path = tmp_path / "k.pem"
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    chain = tmp_path / "chain.pem"
    chain.write_bytes(
        ca.public_bytes(serialization.Encoding.PEM) + leaf.public_bytes(serialization.Encoding.PEM)
    )

    material = load_pem(key_path, chain)

    assert material.cert_chain == (leaf, ca)


def test_keytool_agrees_on_a_jks_we_write(tmp_path: Path) -> None:
    """Our test stores are real stores: keytool lists them."""
    if shutil.which("keytool") is None:
        pytest.skip("keytool is not installed")
    key = make_key()
    path = write_jks(tmp_path / "t.jks", [("mykey", key, make_cert(key))], password="storepw")

    listing = subprocess.run(
        ["keytool", "-list", "-keystore", str(path), "-storepass", "storepw"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout

    assert "mykey" in listing and "PrivateKeyEntry" in listing
    assert load_keystore(path, password="storepw", alias="mykey").alias == "mykey"


# --- refusals ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("file", "password"),
    [("release.p12", "Tr0ub4dor&3"), ("other.p12", ""), ("debug.keystore", "Tr0ub4dor&3")],
)
def test_wrong_store_password_is_refused_without_echoing_it(file: str, password: str) -> None:
    with pytest.raises(WrongPassword) as caught:
        load_keystore(KEYS / file, password=password)

    assert caught.value.code == "signing_key.wrong_password"
    assert caught.value.details["which"] == "store"
    assert isinstance(caught.value, BadRequest)
    assert "Tr0ub4dor" not in str(caught.value.to_dict())


def test_wrong_key_password_in_jks_is_refused(tmp_path: Path) -> None:
    key = make_key()
    path = write_jks(
        tmp_path / "t.jks", [("k", key, make_cert(key))], password="storepw", key_password="keypw"
    )

    with pytest.raises(WrongPassword) as caught:
        load_keystore(path, password="storepw", alias="k")  # key password defaults to store's

    assert caught.value.details["which"] == "key"
    assert load_keystore(path, password="storepw", alias="k", key_password="keypw").alias == "k"


def test_wrong_pem_key_password_is_refused(tmp_path: Path) -> None:
    key_path, cert_path = export_pem(load_key_type("rsa-p12", tmp_path), tmp_path)

    with pytest.raises(WrongPassword):
        load_pem(key_path, cert_path, key_password="nope")
    with pytest.raises(WrongPassword):
        load_pem(key_path, cert_path)


@pytest.mark.parametrize(
    ("file", "password"),
    [("release.p12", "fixture-release"), ("debug.keystore", "android")],
)
def test_missing_alias_is_refused_and_lists_what_exists(file: str, password: str) -> None:
    with pytest.raises(AliasNotFound) as caught:
        load_keystore(KEYS / file, password=password, alias="nope")

    assert caught.value.code == "signing_key.alias_not_found"
    assert caught.value.details["alias"] == "nope"
    assert caught.value.details["available"] in (["release"], ["androiddebugkey"])


def test_two_keys_and_no_alias_is_refused(tmp_path: Path) -> None:
    a, b = make_key(), make_key("ec")
    path = write_jks(
        tmp_path / "two.jks", [("a", a, make_cert(a)), ("b", b, make_cert(b))], password="pw"
    )

    with pytest.raises(AliasNotFound) as caught:
        load_keystore(path, password="pw")

    assert caught.value.details["available"] == ["a", "b"]
    assert load_keystore(path, password="pw", alias="b").key_algorithm == "EC"


@pytest.mark.parametrize("kind", ["p12", "jks"])
def test_expired_certificate_is_refused(kind: str, tmp_path: Path) -> None:
    key = make_key()
    past = datetime.now(UTC) - timedelta(days=1)
    cert = make_cert(key, not_before=past - timedelta(days=400), not_after=past)
    path = (
        write_p12(tmp_path / "old.p12", key, [cert], password="pw")
        if kind == "p12"
        else write_jks(tmp_path / "old.jks", [("signer", key, cert)], password="pw")
    )

    with pytest.raises(CertificateExpired) as caught:
        load_keystore(path, password="pw", alias="signer")

    assert caught.value.code == "signing_key.certificate_expired"
    assert caught.value.details["not_after"].startswith(past.date().isoformat())


def test_expiry_is_judged_at_the_given_time() -> None:
    later = datetime(2060, 1, 1, tzinfo=UTC)  # the fixture certificates end in 2054

    with pytest.raises(CertificateExpired):
        load_keystore(KEYS / "release.p12", password="fixture-release", now=later)


# --- keys opened once per process -----------------------------------------------------------


def test_a_keystore_is_opened_once_and_judged_at_every_load() -> None:
    """Build jobs sign with keys opened before: deriving a PKCS#12 key from its password
    holds the GIL for about 0.1 s, and every request of the process waited for it."""
    opened = OpenedKeys()
    data = (KEYS / "release.p12").read_bytes()

    first = opened.load(data, password="fixture-release", alias="release")
    again = opened.load(data, password="fixture-release", alias="release")

    assert again.private_key is first.private_key  # not derived a second time
    assert again.certificate == first.certificate and again.alias == "release"
    with pytest.raises(CertificateExpired):  # the certificates end in 2054
        opened.load(
            data, password="fixture-release", alias="release", now=datetime(2060, 1, 1, tzinfo=UTC)
        )


def test_a_wrong_password_is_refused_every_time_even_after_the_right_one() -> None:
    opened = OpenedKeys()
    data = (KEYS / "release.p12").read_bytes()
    opened.load(data, password="fixture-release", alias="release")

    for _ in range(2):
        with pytest.raises(WrongPassword):
            opened.load(data, password="not-the-password", alias="release")


def test_opened_keys_are_bounded_the_least_recently_used_leaving_first() -> None:
    opened = OpenedKeys(size=1)
    release = (KEYS / "release.p12").read_bytes()
    other = (KEYS / "other.p12").read_bytes()

    first = opened.load(release, password="fixture-release", alias="release")
    opened.load(other, password="fixture-other", alias="other")
    reopened = opened.load(release, password="fixture-release", alias="release")

    assert reopened.private_key is not first.private_key
    assert reopened.certificate == first.certificate


def test_keystore_over_10_mb_is_refused_before_it_is_parsed(tmp_path: Path) -> None:
    big = tmp_path / "big.p12"
    with big.open("wb") as fh:
        fh.write((KEYS / "release.p12").read_bytes())
        fh.truncate(MAX_KEYSTORE_BYTES + 1)

    with pytest.raises(KeystoreTooLarge) as caught:
        load_keystore(big, password="fixture-release")
    with pytest.raises(KeystoreTooLarge):
        load_keystore_bytes(b"\x30" * (MAX_KEYSTORE_BYTES + 1), password="x")

    assert caught.value.code == "signing_key.too_large"
    assert caught.value.details["limit"] == 10 * 1024 * 1024


@pytest.mark.parametrize("kind", ["p12", "jks", "pem"])
def test_keystore_without_a_private_key_is_refused(kind: str, tmp_path: Path) -> None:
    key = make_key()
    cert = make_cert(key)
    if kind == "p12":
        path = write_p12(tmp_path / "certs.p12", None, [cert], password="pw")
    elif kind == "jks":
        path = write_jks(tmp_path / "certs.jks", [("ca", None, cert)], password="pw")
    else:
        path = tmp_path / "cert.pem"
        path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))

    with pytest.raises(NoPrivateKey) as caught:
        load_keystore(path, password="pw")

    assert caught.value.code == "signing_key.no_private_key"


@pytest.mark.parametrize("content", [b"", b"hello world", b"\x30\x03\x02\x01\x01", b"PK\x03\x04"])
def test_unknown_format_is_refused(content: bytes, tmp_path: Path) -> None:
    path = tmp_path / "junk"
    path.write_bytes(content)

    with pytest.raises(KeystoreUnreadable):
        load_keystore(path, password="pw")


def test_missing_file_is_refused_with_a_typed_error(tmp_path: Path) -> None:
    with pytest.raises(KeystoreUnreadable):
        load_keystore(tmp_path / "absent.p12", password="pw")


@pytest.mark.parametrize("kind", ["rsa1024", "p384"])
def test_keys_the_signer_cannot_use_are_refused(kind: str, tmp_path: Path) -> None:
    key = make_key(kind)
    path = write_p12(tmp_path / "k.p12", key, [make_cert(key)], password="pw")

    with pytest.raises(UnsupportedKey):
        load_keystore(path, password="pw")


def test_certificate_of_another_key_is_refused(tmp_path: Path) -> None:
    key, other = make_key(), make_key()
    key_path = tmp_path / "k.pem"
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    cert_path = tmp_path / "c.pem"
    cert_path.write_bytes(make_cert(other).public_bytes(serialization.Encoding.PEM))

    with pytest.raises(KeyCertificateMismatch):
        load_pem(key_path, cert_path)


def test_every_refusal_is_one_catchable_bad_request() -> None:
    for error in (
        KeystoreTooLarge,
        KeystoreUnreadable,
        WrongPassword,
        AliasNotFound,
        NoPrivateKey,
        CertificateExpired,
        KeyCertificateMismatch,
        UnsupportedKey,
    ):
        assert issubclass(error, SigningKeyInvalid)
        assert issubclass(error, BadRequest)
        assert error.code.startswith("signing_key.")


@pytest.mark.parametrize("name", sorted(KEYTOOL_ALGORITHMS))
def test_jks_made_by_a_current_keytool_opens_and_checks_the_key_password(
    name: str, tmp_path: Path
) -> None:
    # JDK 9+ keytool writes the JKS key protector without algorithm parameters
    path = make_jks_with_keytool(tmp_path, name)
    assert path.read_bytes()[:4] == b"\xfe\xed\xfe\xed"  # the JKS magic, not PKCS#12
    alias, _subject, algorithm = GENERATED_KEYS[name]

    material = load_keystore(path, password=GENERATED_PASSWORD, alias=alias)
    assert material.key_algorithm == algorithm
    with pytest.raises(WrongPassword) as caught:
        load_keystore(path, password=GENERATED_PASSWORD, alias=alias, key_password="wrong!")
    assert caught.value.details["which"] == "key"
    assert "wrong!" not in str(caught.value.to_dict())


@pytest.mark.parametrize("name", sorted(KEYTOOL_ALGORITHMS))
def test_jceks_made_by_keytool_opens_and_checks_the_key_password(name: str, tmp_path: Path) -> None:
    # JCEKS protects keys with PBEWithMD5AndTripleDES; keytool's key password differs here
    path = make_jks_with_keytool(tmp_path, name, storetype="JCEKS", key_password="key-only")
    assert path.read_bytes()[:4] == b"\xce\xce\xce\xce"
    alias, subject_dn, algorithm = GENERATED_KEYS[name]

    material = load_keystore(path, password=GENERATED_PASSWORD, key_password="key-only")
    assert (material.alias, material.key_algorithm) == (alias, algorithm)
    assert subject(material) == subject_dn
    assert material.certificate.public_key() == material.private_key.public_key()
    for wrong in (None, "key-onlY", "clé"):  # None: the store password, as keytool tries
        with pytest.raises(WrongPassword) as caught:
            load_keystore(path, password=GENERATED_PASSWORD, key_password=wrong)
        assert caught.value.details["which"] == "key"
    with pytest.raises(WrongPassword) as store:
        load_keystore(path, password="not-the-store-password", key_password="key-only")
    assert store.value.details["which"] == "store"


def keytool(*args: str, stdin: bytes | None = None) -> bytes:
    need(shutil.which("keytool") is not None, "keytool (a JDK) is not installed")
    return subprocess.run(["keytool", *args], input=stdin, capture_output=True, check=True).stdout


def test_a_keytool_chain_and_trusted_certificate_in_one_jks_are_read(tmp_path: Path) -> None:
    """A leaf issued by a CA (two certificates in the key entry, version 2 types), the CA's
    own key and a trusted-certificate entry, all written by keytool; a non-ASCII alias."""
    store = str(tmp_path / "chain.jks")
    common = ["-keystore", store, "-storetype", "JKS", "-storepass", "chainpass"]
    ca = ["-alias", "ca", "-keyalg", "RSA", "-keysize", "2048", "-ext", "bc:c"]
    leaf = ["-alias", "clé", "-keyalg", "EC", "-groupname", "secp256r1"]
    keytool("-genkeypair", *common, "-keypass", "chainpass", *ca, "-dname", "CN=Chain CA")
    keytool("-genkeypair", *common, "-keypass", "chainpass", *leaf, "-dname", "CN=Chain Leaf")
    request = keytool("-certreq", *common, "-alias", "clé")
    issued = keytool("-gencert", *common, "-alias", "ca", "-rfc", stdin=request)
    ca_pem = keytool("-exportcert", *common, "-alias", "ca", "-rfc")
    keytool("-importcert", *common, "-alias", "clé", "-noprompt", stdin=ca_pem + issued)
    keytool("-importcert", *common, "-alias", "trusted", "-noprompt", stdin=ca_pem)

    material = load_keystore(store, password="chainpass", alias="CLÉ")

    assert material.alias == "clé"
    assert [c.subject.rfc4514_string() for c in material.cert_chain] == [
        "CN=Chain Leaf",
        "CN=Chain CA",
    ]
    with pytest.raises(AliasNotFound) as caught:
        load_keystore(store, password="chainpass")  # two keys: ca and clé; "trusted" is none
    assert caught.value.details["available"] == ["ca", "clé"]


def test_an_altered_or_truncated_jks_is_refused(tmp_path: Path) -> None:
    key = make_key("ec")
    data = write_jks(tmp_path / "t.jks", [("k", key, make_cert(key))], password="pw").read_bytes()
    flipped = bytearray(data)
    flipped[60] ^= 1

    with pytest.raises(WrongPassword):  # the digest cannot tell a change from a wrong password
        load_keystore_bytes(bytes(flipped), password="pw")
    for cut in (data[:30], data[:-1], data[:4]):
        with pytest.raises((KeystoreUnreadable, WrongPassword)):
            load_keystore_bytes(cut, password="pw")


def test_a_jceks_secret_key_is_refused_with_the_conversion_command(tmp_path: Path) -> None:
    path = make_jks_with_keytool(tmp_path, "ec-jks", storetype="JCEKS")
    keytool("-genseckey", "-keystore", str(path), "-storetype", "JCEKS", "-storepass",
            GENERATED_PASSWORD, "-keypass", GENERATED_PASSWORD, "-alias", "aes",
            "-keyalg", "AES", "-keysize", "128")  # fmt: skip

    with pytest.raises(KeystoreUnreadable) as caught:
        load_keystore(path, password=GENERATED_PASSWORD)

    assert "keytool -importkeystore" in caught.value.message
    assert "-deststoretype pkcs12" in caught.value.message
