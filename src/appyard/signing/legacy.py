"""DSA, which cryptography 51 deprecates (naming ``dsa.DSAPublicKey`` or loading a DSA key
warns) and which old APKs are still signed with (apksigner verifies DSA signers in v1 and v2,
as we must).

The class is fetched here once, and :func:`public_key` / :func:`quiet` load keys, with that
one warning silenced; the rest of appyard goes through this module. Verifying with a DSA key
does not warn. When cryptography removes DSA, loading such a key will fail and the signer will
be reported as unsupported, as an unknown algorithm is today.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import dsa
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes
from cryptography.hazmat.primitives.serialization import load_der_public_key

_DEPRECATED = "DSA is deprecated"


@contextmanager
def quiet() -> Iterator[None]:
    """cryptography's DSA deprecation warning silenced (only that one)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=_DEPRECATED)
        yield


with quiet():
    DSAPublicKey = dsa.DSAPublicKey


def public_key(spki_der: bytes) -> PublicKeyTypes:
    """``load_der_public_key``, DSA keys included."""
    with quiet():
        return load_der_public_key(spki_der)


def certificate_key(der: bytes) -> PublicKeyTypes:
    """The public key of a DER certificate, DSA keys included."""
    with quiet():
        return x509.load_der_x509_certificate(der).public_key()


__all__ = ["DSAPublicKey", "certificate_key", "public_key", "quiet"]
