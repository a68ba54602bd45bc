"""Request bodies of the upload-context API, with the vendor's field names
(../shared/specs/upload-context-api.txt)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, StrictInt, StrictStr, StringConstraints


def _context_id(value: int | str) -> int:
    """The spec's example sends ``"28"`` and its response returns ``28``: both are taken."""
    text = str(value).strip()
    if isinstance(value, bool) or not (text.isascii() and text.isdigit()) or len(text) > 18:
        raise ValueError("must be a positive integer")
    number = int(text)
    if number < 1:
        raise ValueError("must be a positive integer")
    return number


def _iso8601(value: str) -> str:
    try:
        datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ValueError("must be an ISO 8601 timestamp such as 2024-03-07T14:55:43.540Z") from None
    return value.strip()


def _apk_name(value: str) -> str:
    if not value.strip().endswith(".apk"):
        raise ValueError("must name an .apk file, e.g. app-play-release.apk")
    return value


Text = Annotated[str, StringConstraints(max_length=255)]


class BuildRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    contextId: Annotated[StrictInt | StrictStr, AfterValidator(_context_id)]
    buildType: Literal["APK", "INSTRUMENTED_APK"]
    buildFileName: Annotated[Text, AfterValidator(_apk_name)]
    name: Text | None = None
    description: Annotated[str, StringConstraints(max_length=4000)] | None = None
    sourceControlId: Text | None = None
    sourceControlIsoTimestamp: Annotated[Text, AfterValidator(_iso8601)] | None = None
