"""Logging: one event per line, as text (the default) or one JSON object per line
(``APPYARD_LOG_FORMAT=json``), with the request id, tenant id, build id and job id of the
work in progress, and secrets redacted (signed URL tokens, bearer tokens, key pairs).

The ids come from context variables: the HTTP middleware (``api/observe.py``) binds the request
id and, once a credential is known, the tenant; the worker binds the job and build around each
job (:func:`bound`). Every handler gets :class:`ContextFilter` and a formatter that redacts the
whole line it writes, so the redaction holds for the message, its extra fields and tracebacks
alike. Granian's own lines go through the same handler (:func:`granian_dictconfig`).
"""

from __future__ import annotations

import contextvars
import logging
import re
import secrets
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from pythonjsonlogger.json import JsonFormatter

# What a secret looks like in a line: (pattern, case-insensitive, replacement, and a piece of
# text every match holds, in lower case).
_SECRETS = [
    (r"(/_blob/)[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]+", False, r"\1[REDACTED]", ("/_blob/",)),
    (r"(/i/)[A-Za-z0-9_\-]{16,}", False, r"\1[REDACTED]", ("/i/",)),  # an install link's token
    (r"(bearer\s+)[^\s\"']+", True, r"\1[REDACTED]", ("bearer",)),
    (
        r"\b((?:ak|ci|mt|at|sa|uc)_[0-9a-f]{20}):[A-Za-z0-9_\-]+",
        False,
        r"\1:[REDACTED]",
        ("ak_", "ci_", "mt_", "at_", "sa_", "uc_"),
    ),
    (r"(X-Amz-Signature=|Signature=)[^&\s\"']+", True, r"\1[REDACTED]", ("signature=",)),
    (r"\bwhsec_[A-Za-z0-9+/=]+", False, "whsec_[REDACTED]", ("whsec_",)),
    (r"(appyard_session=)[^;\s\"']+", False, r"\1[REDACTED]", ("appyard_session=",)),
]
_PATTERNS = [(re.compile(p, re.IGNORECASE if i else 0), repl) for p, i, repl, _ in _SECRETS]
# Most lines (the access line of every status poll) hold no secret: a line without any of these
# pieces is let through after one lower-casing and a few substring searches, where the seven
# patterns cost about 25 us a line.
_CLUES = tuple(clue for *_, clues in _SECRETS for clue in clues)

# The ids a log line carries when they are known (None: not known here).
CONTEXT_FIELDS = ("request_id", "tenant_id", "build_id", "job_id")
_CONTEXT: dict[str, contextvars.ContextVar[str | None]] = {
    name: contextvars.ContextVar(f"appyard_{name}", default=None) for name in CONTEXT_FIELDS
}


_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")


def request_id(asked: str | None) -> str:
    """The client's ``X-Request-ID`` when it is sane (1-128 of ``A-Za-z0-9._:-``), else a new
    one."""
    return asked if asked and _REQUEST_ID.match(asked) else secrets.token_hex(16)


def redact(text: str) -> str:
    lower = text.lower()
    if not any(clue in lower for clue in _CLUES):
        return text
    for pattern, repl in _PATTERNS:
        text = pattern.sub(repl, text)
    return text


def bind(**ids: str | None) -> list[tuple[contextvars.ContextVar[str | None], Any]]:
    """Set some of the context's ids (``request_id=...``); returns what :func:`unbind` needs."""
    return [(_CONTEXT[name], _CONTEXT[name].set(value)) for name, value in ids.items()]


def unbind(tokens: list[tuple[contextvars.ContextVar[str | None], Any]]) -> None:
    for var, token in reversed(tokens):
        var.reset(token)


@contextmanager
def bound(**ids: str | None) -> Iterator[None]:
    """The ids hold for log lines written inside the block (this thread or task)."""
    tokens = bind(**ids)
    try:
        yield
    finally:
        unbind(tokens)


def context() -> dict[str, str]:
    """The ids known here."""
    return {name: value for name, var in _CONTEXT.items() if (value := var.get()) is not None}


class ContextFilter(logging.Filter):
    """Puts the context's ids on the record (a field the caller passed in ``extra`` wins)."""

    def filter(self, record: logging.LogRecord) -> bool:
        for name, var in _CONTEXT.items():
            if getattr(record, name, None) is None:
                setattr(record, name, var.get())
        return True


class TextFormatter(logging.Formatter):
    """``time level logger message``, then the context's ids the message does not already
    name; redacted last, over the whole line (traceback included)."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s %(message)s")
        self._second: tuple[int, str] = (-1, "")

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        """Python's text (local time, ``2026-12-06 10:46:52,123``), its date and time part
        written once a second rather than once a line."""
        second = int(record.created)
        if self._second[0] != second:
            self._second = (second, time.strftime(self.default_time_format, self.converter(second)))
        return f"{self._second[1]},{int(record.msecs):03d}"

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        message = record.message  # what super().format wrote
        extra = [
            f"{name}={value}"
            for name in CONTEXT_FIELDS
            if (value := getattr(record, name, None)) and f"{name}=" not in message
        ]
        if extra:
            head, newline, rest = line.partition("\n")
            line = f"{head} {' '.join(extra)}{newline}{rest}"
        return redact(line)


class JsonLineFormatter(JsonFormatter):
    """One JSON object per line: time, level, logger, message, the context's ids that are
    known, the fields passed in ``extra``, and ``exc_info`` for a traceback; redacted last."""

    def __init__(self) -> None:
        super().__init__(
            "%(asctime)s %(levelname)s %(name)s %(message)s",
            rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
        )

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        """ISO 8601 in UTC, to the millisecond: what log shippers parse without help."""
        return datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")

    def process_log_record(self, log_data: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in log_data.items() if v is not None}

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


def formatter(fmt: str) -> logging.Formatter:
    return JsonLineFormatter() if fmt == "json" else TextFormatter()


def handler(fmt: str = "text") -> logging.Handler:
    """A stderr handler with the filters and formatter every appyard handler has."""
    out = logging.StreamHandler(sys.stderr)
    out.setFormatter(formatter(fmt))
    out.addFilter(ContextFilter())
    return out


def setup_logging(level: str = "INFO", fmt: str = "text") -> None:
    """The process's logging: the root logger's one handler. A record also leaves out what
    no line of appyard shows (the caller's file and line, found by walking the stack; the
    thread's and process's names), as Python's logging HOWTO ("Optimization") describes: the
    access line of every request is written on the event loop."""
    logging._srcfile = None  # the HOWTO's own advice
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    root = logging.getLogger()
    root.handlers[:] = [handler(fmt)]
    root.setLevel(level.upper())


def granian_dictconfig() -> dict[str, Any]:
    """Granian's ``log_dictconfig``: its loggers keep no handler of their own and hand their
    lines to the root logger's, so they come out in appyard's format, redacted."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {},
        "handlers": {},
        "loggers": {
            "_granian": {"handlers": [], "propagate": True},
            "granian.access": {"handlers": [], "propagate": True},
        },
    }
