"""Logging: one event per line, secrets redacted (signed URL tokens, bearer tokens, key pairs)."""

from __future__ import annotations

import logging
import re

_PATTERNS = [
    (re.compile(r"(/_blob/)[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]+"), r"\1[REDACTED]"),
    (re.compile(r"(?i)(bearer\s+)\S+"), r"\1[REDACTED]"),
    (re.compile(r"\b((?:ak|ci|mt|at|sa)_[0-9a-f]{20}):[A-Za-z0-9_\-]+"), r"\1:[REDACTED]"),
    (re.compile(r"(?i)(X-Amz-Signature=|Signature=)[^&\s\"']+"), r"\1[REDACTED]"),
]


def redact(text: str) -> str:
    for pattern, repl in _PATTERNS:
        text = pattern.sub(repl, text)
    return text


class RedactingFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = redact(message)
        if clean != message:
            record.msg, record.args = clean, None
        return True


def setup_logging(level: str = "INFO") -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    handler.addFilter(RedactingFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
