"""``appyard`` as the tests run it: the CLI in this process, with everything it writes on stdout
and stderr copied into ``$APPYARD_TEST_TRANSCRIPTS`` (one file per run, its arguments on the
first line), for ``tests/test_secrets_in_output.py`` to read. Without the variable it is
``python -m appyard.cli``. The process is the CLI's own (a test's kill -9 reaches appyard)."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any, TextIO

if sys.path and Path(sys.path[0]).resolve() == Path(__file__).parent.resolve():
    sys.path.pop(0)  # tests/ holds packages (packaging, deploy) that must not shadow real ones


class Tee:
    """A text stream that also writes to ``copy``; everything else is the stream's."""

    def __init__(self, stream: TextIO, copy: TextIO) -> None:
        self._stream, self._copy = stream, copy

    def write(self, text: str) -> int:
        written = self._stream.write(text)
        try:
            self._copy.write(text)
            self._copy.flush()
        except ValueError:  # the copy was closed at exit
            pass
        return written

    def flush(self) -> None:
        self._stream.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def main() -> None:
    folder = os.environ.get("APPYARD_TEST_TRANSCRIPTS")
    if folder and Path(folder).is_dir():
        path = Path(folder) / f"cli-{time.time_ns()}-{os.getpid()}.txt"
        copy = open(path, "w", encoding="utf-8", errors="replace", buffering=1)
        copy.write(json.dumps(sys.argv[1:]) + "\n")
        sys.stdout = Tee(sys.stdout, copy)  # type: ignore[assignment]
        sys.stderr = Tee(sys.stderr, copy)  # type: ignore[assignment]
    from appyard.cli.main import main as appyard

    sys.argv[0] = "appyard"
    appyard()


if __name__ == "__main__":
    main()
