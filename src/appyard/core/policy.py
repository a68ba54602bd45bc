"""The server's upload rules (from settings): sizes, part size, signed-URL lifetime, expiry."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class UploadPolicy:
    max_size: int
    multipart_threshold: int
    chunk_size: int
    url_ttl: int
    expiry_seconds: int
