"""The form parser is loaded at the first form, without the boto3 that its dependency
smart_open would load (7.7 MB a local-store server never uses), and boto3 still imports
afterwards for whoever needs it (the S3 store)."""

from __future__ import annotations

import subprocess
import sys

SCRIPT = """
import sys
from appyard.api import form_targets

parser = form_targets.StreamingFormDataParser(
    headers={"Content-Type": "multipart/form-data; boundary=xyz"}
)
value = form_targets.BoundedValue()
parser.register("name", value)
parser.data_received(
    b'--xyz\\r\\nContent-Disposition: form-data; name="name"\\r\\n\\r\\nshop\\r\\n--xyz--\\r\\n'
)
loaded = "boto3" in sys.modules or "botocore" in sys.modules
import boto3  # noqa: E402  not broken by the hiding

print(value.value.decode(), loaded, boto3.__name__)
"""


def test_the_form_parser_loads_without_boto3_and_boto3_still_imports() -> None:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=60, check=False
    )

    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["shop", "False", "boto3"]
