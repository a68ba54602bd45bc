"""What every inspected artifact can say about itself, whatever its kind.

The per-kind fact classes (``ApkFacts`` in apk.py, ``AabFacts`` in aab.py, ``IpaFacts`` in
ipa.py) each carry an :class:`Identity`, which is all the upload pipeline needs to record a
build; the rest of their fields feed the controls in ``appyard.checks``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Platform = Literal["android", "ios"]
Kind = Literal["apk", "aab", "ipa"]


@dataclass(frozen=True)
class Identity:
    platform: Platform
    kind: Kind
    identifier: str  # Android package name or iOS bundle id
    version_code: str | None  # android:versionCode (decimal) or CFBundleVersion
    version_name: str | None  # android:versionName or CFBundleShortVersionString
