"""Request bodies of the automation API, with the vendor's field names
(../shared/specs/protection-automation-api.txt)."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

# The values the spec names, documented (core parses them: case-insensitive, trimmed).
Platform = Annotated[str, Field(json_schema_extra={"enum": ["android", "ios"]})]
Version = Annotated[
    str,
    Field(
        description="case-insensitive; responses say development, staging or production",
        json_schema_extra={"enum": ["development", "staging", "production", "dev", "stg", "prod"]},
    ),
]
FileName = Annotated[
    str,
    Field(
        description="base name with a lowercase .apk, .aab or .ipa extension",
        json_schema_extra={"pattern": r"^[A-Za-z0-9][A-Za-z0-9 ._+()\-]{0,199}\.(apk|aab|ipa)$"},
    ),
]


class UploadRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    file_name: FileName
    platform: Platform
    version: Version
    file_size: int | None = None
    signing_key_id: str | None = None


class PartIn(BaseModel):
    ETag: str
    PartNumber: int = Field(ge=1)


class CompleteRequest(BaseModel):
    file_path: str
    upload_id: str
    parts: list[PartIn]


class AbortRequest(BaseModel):
    file_path: str
    upload_id: str | None = None  # appyard: a single-part upload is aborted by its file_path
