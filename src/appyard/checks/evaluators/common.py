"""Controls every platform shares: they compare the build with the app it was uploaded to."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Protocol

from appyard.checks.registry import Context, Hit, evaluator
from appyard.inspect.facts import Identity


class HasIdentity(Protocol):
    @property
    def identity(self) -> Identity: ...


def version_key(platform: str, version: str) -> tuple[int, ...] | None:
    """A comparable form of a version code: Android decimal versionCode, or iOS
    CFBundleVersion (up to three dot-separated integers). None when it is not one."""
    text = version.strip()
    if platform == "android":
        return (int(text),) if text.isdigit() else None
    if not re.fullmatch(r"\d+(\.\d+){0,2}", text):
        return None
    parts = [int(p) for p in text.split(".")]
    return tuple(parts + [0] * (3 - len(parts)))


@evaluator("package_mismatch", object)
def package_mismatch(ctx: Context[HasIdentity]) -> Iterator[Hit]:
    expected = ctx.history.package if ctx.history else None
    actual = ctx.facts.identity.identifier
    if expected is not None and actual != expected:
        noun = "bundle id" if ctx.facts.identity.platform == "ios" else "package"
        yield Hit(
            f"The build's {noun} is {actual!r}, but it was uploaded to the app {expected!r}.",
            {"expected": expected, "actual": actual},
        )


@evaluator("version_code_not_incremented", object)
def version_code_not_incremented(ctx: Context[HasIdentity]) -> Iterator[Hit]:
    previous = ctx.history.version_code if ctx.history else None
    if previous is None:
        return
    identity = ctx.facts.identity
    noun = "CFBundleVersion" if identity.platform == "ios" else "versionCode"
    current = identity.version_code
    details = {"previous": previous, "current": current}
    if current is None:
        yield Hit(f"The build has no {noun}; the previous build had {previous}.", details)
        return
    new, old = version_key(identity.platform, current), version_key(identity.platform, previous)
    if new is None:
        yield Hit(f"The build's {noun} {current!r} is not a version number.", details)
    elif old is not None and new <= old:
        yield Hit(
            f"The build's {noun} {current} is not greater than the previous build's {previous}.",
            details,
        )
