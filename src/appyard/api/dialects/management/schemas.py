"""Request bodies of the management API, with the vendor's field names
(../shared/specs/protection-management-api.txt). Unknown fields are ignored; strings are
bounded and free of control characters, numbers are bounded, so bad input is a 400."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints


def _printable(value: str) -> str:
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise ValueError("must not contain control characters")
    return value


Text = Annotated[str, StringConstraints(max_length=255), AfterValidator(_printable)]
Path = Annotated[str, StringConstraints(max_length=1024), AfterValidator(_printable)]
Secret = Annotated[str, StringConstraints(max_length=1024)]
# The values the spec names, documented (core parses them: case-insensitive, trimmed).
Platform = Annotated[Text, Field(json_schema_extra={"enum": ["android", "ios"]})]
Version = Annotated[
    Text,
    Field(
        description="development, staging or production (dev, stg, prod; any case)",
        json_schema_extra={"enum": ["development", "staging", "production", "dev", "stg", "prod"]},
    ),
]
FileName = Annotated[
    Text,
    Field(
        description="base name with a lowercase .apk, .aab or .ipa extension",
        json_schema_extra={"pattern": r"^[A-Za-z0-9][A-Za-z0-9 ._+()\-]{0,199}\.(apk|aab|ipa)$"},
    ),
]
StartTime = Annotated[int, Field(ge=0, le=10**15)]
Size = Annotated[int, Field(le=2**62)]


class Body(BaseModel):
    model_config = ConfigDict(extra="ignore")


class Empty(Body):
    pass


class BuildsRequest(Body):
    version: Version
    page: int = 1  # bounds are core's rule (builds.history)
    page_size: int = 6


class UploadRequest(Body):
    file_name: FileName
    platform: Platform
    version: Version
    file_size: Size | None = None
    signing_key_id: Text | None = None


class PartIn(BaseModel):
    PartNumber: int = Field(ge=1, le=10_000)
    ETag: Text


class CompleteRequest(Body):
    file_path: Path
    upload_id: Text
    parts: list[PartIn] = Field(max_length=10_000)


class AbortRequest(Body):
    file_path: Path
    upload_id: Text | None = None  # appyard: a single-part upload is aborted by its file_path


class NamedBuild(Body):
    version: Version
    platform: Platform
    start_time: StartTime
    file_name: Text


class DeleteApplication(Body):
    application_id: Text


class UploadSigningKey(Body):
    key_name: Text
    platform: Platform
    file_name: Text
    password: Secret
    alias: Text | None = None
    file_size: Size | None = None
    is_default: bool = False


class SetDefaultKey(Body):
    platform: Platform
    key_id: Text | None = None


class KeyRef(Body):
    key_id: Text


class CodeSigningFile(Body):
    file: Text
    password: Secret
    application_id: Text
    platform: Platform
    alias: Text | None = None


class SignBuild(Body):
    platform: Platform
    name: Text
    start_time: StartTime
