"""``embedded.mobileprovision``: moved to :mod:`appyard.signing.ios.mobileprovision` (the IPA
signer and verifier read profiles too, and signing is the lowest layer); re-exported here."""

from appyard.signing.ios.mobileprovision import MAX_CERTIFICATES as MAX_CERTIFICATES
from appyard.signing.ios.mobileprovision import MAX_PROFILE_BYTES as MAX_PROFILE_BYTES
from appyard.signing.ios.mobileprovision import CertificateInfo as CertificateInfo
from appyard.signing.ios.mobileprovision import ProvisioningProfile as ProvisioningProfile
from appyard.signing.ios.mobileprovision import SigningType as SigningType
from appyard.signing.ios.mobileprovision import bundle_id_matches as bundle_id_matches
from appyard.signing.ios.mobileprovision import describe_certificate as describe_certificate
from appyard.signing.ios.mobileprovision import parse_mobileprovision as parse_mobileprovision
from appyard.signing.ios.mobileprovision import signing_type as signing_type
