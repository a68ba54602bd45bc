"""Why an IPA cannot be re-signed (raised before a byte of output is written) or why a
signature does not verify. Codes are stable dotted strings (``ipa_signing.*``)."""

from __future__ import annotations

from appyard.errors import InvalidArtifact
from appyard.signing.keystore import SigningKeyInvalid


class IpaSigningRefused(InvalidArtifact):
    """The IPA cannot be re-signed."""

    code = "ipa_signing.refused"


class BadMachO(IpaSigningRefused):
    """A Mach-O binary in the IPA is damaged or of a kind appyard cannot sign."""

    code = "ipa_signing.bad_macho"


class EncryptedBinary(IpaSigningRefused):
    """The binary is encrypted (App Store FairPlay); only a decrypted build can be re-signed."""

    code = "ipa_signing.encrypted_binary"


class NoRoomForSignature(IpaSigningRefused):
    """The binary has no room for a code signature."""

    code = "ipa_signing.no_signature_room"


class ProfileRefused(SigningKeyInvalid):
    """The provisioning profile cannot sign this IPA with this key."""

    code = "ipa_signing.profile_refused"


class ProfileMissing(ProfileRefused):
    """No provisioning profile is available for this key."""

    code = "ipa_signing.profile_missing"


class ProfileExpired(ProfileRefused):
    """The provisioning profile has expired."""

    code = "ipa_signing.profile_expired"


class ProfileCertificateMismatch(ProfileRefused):
    """The provisioning profile does not list the signing certificate."""

    code = "ipa_signing.profile_certificate_mismatch"


class BundleIdNotCovered(ProfileRefused):
    """The provisioning profile does not cover the bundle id."""

    code = "ipa_signing.bundle_id_not_covered"


class EntitlementsUnencodable(IpaSigningRefused):
    """The entitlements hold a value that DER entitlements cannot carry."""

    code = "ipa_signing.entitlements_unencodable"
