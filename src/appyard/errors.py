"""The typed errors core raises; every dialect maps them to its own documented shape.

Each class's docstring is its default message; ``code`` is a stable dotted string that is part
of the API, ``status`` the native API's HTTP status. Subclasses carry fields as keyword args.
"""

from __future__ import annotations

from typing import Any, ClassVar


class AppyardError(Exception):
    """Something went wrong."""

    code: ClassVar[str] = "error"
    status: ClassVar[int] = 500

    def __init__(self, message: str | None = None, **details: Any) -> None:
        self.message = message or (self.__doc__ or self.code).strip().splitlines()[0]
        self.details = details
        super().__init__(self.message)

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, **self.details}


# --- base kinds -------------------------------------------------------------------------------


class BadRequest(AppyardError):
    """The request is not valid."""

    code, status = "bad_request", 400


class NotFound(AppyardError):
    """Not found."""

    code, status = "not_found", 404


class Conflict(AppyardError):
    """The request conflicts with the current state."""

    code, status = "conflict", 409


class InvalidArtifact(AppyardError):
    """The artifact is not a valid APK, AAB or IPA."""

    code, status = "artifact.invalid", 422


class LimitExceeded(AppyardError):
    """A limit was reached."""

    code, status = "limit.exceeded", 429


class Unauthenticated(AppyardError):
    """Authentication failed."""

    code, status = "auth.unauthenticated", 401


class Forbidden(AppyardError):
    """Not allowed."""

    code, status = "auth.forbidden", 403


# --- request validation -----------------------------------------------------------------------


class InvalidField(BadRequest):
    """A field is missing or invalid."""

    code = "request.invalid_field"


class MalformedForm(InvalidField):
    """The multipart/form-data body is malformed or incomplete."""

    code = "upload.malformed_form"


class InvalidFileName(BadRequest):
    """The file name must end in lowercase .apk, .aab or .ipa."""

    code = "upload.invalid_file_name"


class PlatformMismatch(BadRequest):
    """The platform does not fit the file's extension."""

    code = "upload.platform_mismatch"


class UploadTooLarge(BadRequest):
    """The file is larger than allowed."""

    code = "upload.too_large"


class NoEnabledControls(BadRequest):
    """No protection or detection control is enabled for this platform and version."""

    code = "controls.none_enabled"


class UnknownSigningKey(BadRequest):
    """The signing key does not exist."""

    code = "signing_key.unknown"


class JobNotCompleted(BadRequest):
    """The job has not completed."""

    code = "job.not_completed"


class UploadIncomplete(BadRequest):
    """The upload is not complete."""

    code = "upload.incomplete"


class InvalidParts(BadRequest):
    """The part list does not match the uploaded parts."""

    code = "upload.invalid_parts"


class UploadNotPending(Conflict):
    """The upload is no longer accepting data."""

    code = "upload.not_pending"


class UploadGone(Conflict):
    """This upload URL can no longer be used: it was used already, or its upload ended."""

    code, status = "upload.gone", 410


# --- not found --------------------------------------------------------------------------------


class TenantNotFound(NotFound):
    """Tenant not found."""

    code = "tenant.not_found"


class JobNotFound(NotFound):
    """Job not found."""

    code = "job.not_found"


class UploadNotFound(NotFound):
    """Upload not found."""

    code = "upload.not_found"


class TokenNotFound(NotFound):
    """Token not found."""

    code = "token.not_found"


class SigningKeyNotFound(NotFound):
    """No such signing key in this tenant (another tenant's answers the same)."""

    code = "signing_key.not_found"


class BlobNotFound(NotFound):
    """Object not found."""

    code = "storage.not_found"


# --- conflicts --------------------------------------------------------------------------------


class TenantExists(Conflict):
    """A tenant with this name already exists."""

    code = "tenant.exists"


class VersionCodeExists(Conflict):
    """A build with this version code already exists."""

    code = "build.version_code_exists"


# --- limits -----------------------------------------------------------------------------------


class ConcurrentBuildLimit(LimitExceeded):
    """Concurrent build limit exceeded; wait for in-progress jobs to finish."""

    code = "limit.concurrent_builds"


class WeeklyBuildLimit(LimitExceeded):
    """Weekly build limit exceeded for this platform and configuration version."""

    code = "limit.weekly_builds"


class TokenLimit(LimitExceeded):
    """The tenant already has the maximum number of keys of this kind."""

    code = "limit.tokens"


# --- auth -------------------------------------------------------------------------------------


class InvalidCredential(Unauthenticated):
    """The credential is missing, malformed, unknown or invalid."""

    code = "auth.invalid_credential"


class CredentialDisabled(Unauthenticated):
    """The credential has been disabled."""

    code = "auth.credential_disabled"


class CredentialExpired(Unauthenticated):
    """The credential has expired."""

    code = "auth.credential_expired"


class PlanNotAllowed(Unauthenticated):
    """The tenant's plan does not include this API."""

    code = "auth.plan_not_allowed"


class WrongTenant(Forbidden):
    """The resource does not belong to the authenticated tenant."""

    code = "auth.wrong_tenant"


class SignedUrlInvalid(Forbidden):
    """The signed URL is invalid, tampered with or expired."""

    code = "storage.signed_url_invalid"


# --- artifacts --------------------------------------------------------------------------------


class ArtifactTooLarge(InvalidArtifact):
    """The artifact expands beyond the allowed size."""

    code = "artifact.too_large"


# --- going out ----------------------------------------------------------------------------------


class StorageFull(AppyardError):
    """The server's storage is full; nothing was kept. Try again once space is freed."""

    code, status = "storage.full", 507


class DeliveryFailed(AppyardError):
    """The mail server or the webhook endpoint did not take the message."""

    code, status = "delivery.failed", 502


class DestinationRefused(BadRequest):
    """appyard does not send to this address."""

    code = "webhook.destination_refused"
