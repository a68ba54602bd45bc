"""Request bodies of the automation API, with the vendor's field names
(../shared/specs/protection-automation-api.txt)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class UploadRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    file_name: str
    platform: str
    version: str
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
