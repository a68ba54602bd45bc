"""The management spec's Python example ("Example: Upload, Poll, Download") runs unmodified
against a running appyard, apart from the base URL and the credential."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

from tests.conftest import FIXTURES, SHARED, need
from tests.e2e.conftest import Server

SPEC = SHARED / "specs" / "protection-management-api.txt"


def spec_example() -> str:
    """The example, exactly as the spec prints it."""
    need(SPEC.exists(), f"{SPEC} is absent")
    text = SPEC.read_text()
    start = text.index("import base64", text.index("Example: Upload, Poll, Download"))
    end = text.index("protected.raise_for_status()", start) + len("protected.raise_for_status()")
    return text[start:end] + "\n"


def test_spec_python_example_runs_unmodified(server: Server, tmp_path: Path) -> None:
    made = server.admin("create-key", "--tenant", "default", "--kind", "management", "--json")
    assert made.returncode == 0, made.stderr
    key_id, secret = json.loads(made.stdout)["key"].split(":", 1)
    tenants = server.admin("list-tenants", "--json")
    tenant_id = json.loads(tenants.stdout)[0]["id"]

    example = spec_example()
    # The only changes: the base URL, and the credential the example leaves to its reader.
    example, count = re.subn(
        r'^BASE = ".*"$', f'BASE = "{server.url}/frontend"', example, flags=re.MULTILINE
    )
    assert count == 1
    credentials = f"TOKEN_KEY = {key_id!r}\nTOKEN_SECRET = {secret!r}\nTENANT_ID = {tenant_id!r}\n"
    # ...and, after it, what the example leaves in `protected` is kept for the checks below.
    keep = '\nopen("protected.apk", "wb").write(protected.content)\n'
    work = tmp_path / "ci"
    work.mkdir()
    (work / "app-release.apk").write_bytes((FIXTURES / "fixture-release-v1v2v3.apk").read_bytes())
    (work / "example.py").write_text(credentials + example + keep)
    result = subprocess.run(
        [sys.executable, "example.py"],
        cwd=work,
        capture_output=True,
        text=True,
        timeout=300,
        env={k: v for k, v in os.environ.items() if not k.startswith("APPYARD_")},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    with zipfile.ZipFile(work / "protected.apk") as zf:
        assert zf.testzip() is None
        assert "AndroidManifest.xml" in zf.namelist()
        assert any(n.startswith("META-INF/") and n.endswith(".RSA") for n in zf.namelist())
