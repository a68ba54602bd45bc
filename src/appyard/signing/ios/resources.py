"""``_CodeSignature/CodeResources``: the hashes of every file of a bundle, written and checked.

It is an XML plist with four keys, as codesign writes it for an iOS app (the rules below are
byte for byte those of ``very-capable-app.ipa``, signed by Apple's codesign):

* ``files``: path -> SHA-1 (data), or ``{hash, optional}``, chosen by ``rules`` (version 1);
* ``files2``: path -> ``{hash, hash2}`` (SHA-1 and SHA-256), ``{symlink}``, chosen by
  ``rules2``: ``Info.plist`` and ``PkgInfo`` are omitted (the CodeDirectory hashes Info.plist
  itself), ``.lproj`` folders are optional, ``.DS_Store`` files are omitted;
* ``rules``, ``rules2``: the rules, regular expressions with a weight; a path takes the
  heaviest rule that matches (on a tie, an ``omit`` rule wins).

Paths are relative to the bundle. The bundle's own ``_CodeSignature/`` folder and main
executable are never listed; files of nested bundles (frameworks, extensions) are listed like
any other file, their ``_CodeSignature/CodeResources`` included, which is why inner bundles
are signed first.
"""

from __future__ import annotations

import plistlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

RULES: dict[str, Any] = {
    "^": True,
    "^.*\\.lproj/": {"optional": True, "weight": 1000.0},
    "^.*\\.lproj/locversion.plist$": {"omit": True, "weight": 1100.0},
    "^Base\\.lproj/": {"weight": 1010.0},
    "^version.plist$": True,
}
RULES2: dict[str, Any] = {
    ".*\\.dSYM($|/)": {"weight": 11.0},
    "^": {"weight": 20.0},
    "^(.*/)?\\.DS_Store$": {"omit": True, "weight": 2000.0},
    "^(Frameworks|SharedFrameworks|PlugIns|Plug-ins|XPCServices|Helpers|MacOS|"
    "Library/(Automator|Spotlight|LoginItems))/": {"nested": True, "weight": 10.0},
    "^.*": True,
    "^.*\\.lproj/": {"optional": True, "weight": 1000.0},
    "^.*\\.lproj/locversion.plist$": {"omit": True, "weight": 1100.0},
    "^Base\\.lproj/": {"weight": 1010.0},
    "^Info\\.plist$": {"omit": True, "weight": 20.0},
    "^PkgInfo$": {"omit": True, "weight": 20.0},
    "^[^/]+$": {"nested": True, "weight": 10.0},
    "^embedded\\.provisionprofile$": {"weight": 20.0},
    "^version\\.plist$": {"weight": 20.0},
}


@dataclass(frozen=True)
class ResourceFile:
    """A file of the bundle: its path relative to the bundle and its hashes (or link)."""

    path: str
    sha1: bytes
    sha256: bytes
    symlink: str | None = None


@dataclass(frozen=True)
class Rule:
    pattern: re.Pattern[str]
    weight: float
    omit: bool
    optional: bool
    nested: bool


@lru_cache(maxsize=64)
def _compile(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


def compile_rules(rules: Mapping[str, Any]) -> list[Rule]:
    out: list[Rule] = []
    for pattern, value in rules.items():
        if value is False:
            continue
        spec = value if isinstance(value, dict) else {}
        weight = spec.get("weight", 1.0)
        try:
            compiled = _compile(str(pattern))
        except re.error:
            continue
        out.append(
            Rule(
                pattern=compiled,
                weight=float(weight) if isinstance(weight, int | float) else 1.0,
                omit=spec.get("omit") is True,
                optional=spec.get("optional") is True,
                nested=spec.get("nested") is True,
            )
        )
    return out


def match(rules: list[Rule], path: str) -> Rule | None:
    best: Rule | None = None
    for rule in rules:
        if not rule.pattern.search(path):
            continue
        if (
            best is None
            or rule.weight > best.weight
            or (rule.weight == best.weight and rule.omit and not best.omit)
        ):
            best = rule
    return best


def build_code_resources(files: Iterable[ResourceFile]) -> bytes:
    """The CodeResources plist (XML, keys sorted) for ``files`` (the caller leaves out the
    bundle's own ``_CodeSignature/`` and main executable)."""
    rules1, rules2 = compile_rules(RULES), compile_rules(RULES2)
    files1: dict[str, Any] = {}
    files2: dict[str, Any] = {}
    for f in sorted(files, key=lambda f: f.path):
        r2 = match(rules2, f.path)
        if r2 is not None and not r2.omit:
            if f.symlink is not None:
                entry2: dict[str, Any] = {"symlink": f.symlink}
            else:
                entry2 = {"hash": f.sha1, "hash2": f.sha256}
            if r2.optional:
                entry2["optional"] = True
            files2[f.path] = entry2
        r1 = match(rules1, f.path)
        if r1 is not None and not r1.omit and f.symlink is None:
            files1[f.path] = {"hash": f.sha1, "optional": True} if r1.optional else f.sha1
    document = {"files": files1, "files2": files2, "rules": RULES, "rules2": RULES2}
    return plistlib.dumps(document, fmt=plistlib.FMT_XML, sort_keys=True)


def check_code_resources(document: Mapping[str, Any], files: Iterable[ResourceFile]) -> list[str]:
    """What differs between a CodeResources plist and the bundle's ``files``: changed,
    added and missing files, each by name (``files2`` and ``rules2``, as iOS checks them;
    ``files`` and ``rules`` when the plist has no version 2)."""
    listed = document.get("files2")
    raw_rules = document.get("rules2")
    v2 = isinstance(listed, dict) and isinstance(raw_rules, dict)
    if not v2:
        listed, raw_rules = document.get("files"), document.get("rules")
    if not isinstance(listed, dict) or not isinstance(raw_rules, dict):
        return ["CodeResources has no files and rules"]
    rules = compile_rules(raw_rules)
    problems: list[str] = []
    present: set[str] = set()
    for f in files:
        rule = match(rules, f.path)
        if rule is None or rule.omit:
            continue
        present.add(f.path)
        entry = listed.get(f.path)
        if entry is None:
            problems.append(f"added file: {f.path}")
            continue
        if isinstance(entry, bytes):
            entry = {"hash": entry}
        if not isinstance(entry, dict):
            problems.append(f"unreadable CodeResources entry: {f.path}")
            continue
        if f.symlink is not None or "symlink" in entry:
            if entry.get("symlink") != f.symlink:
                problems.append(f"changed symlink: {f.path}")
            continue
        if "hash2" in entry:
            ok = entry["hash2"] == f.sha256
        elif "hash" in entry:
            ok = entry["hash"] == f.sha1
        else:
            problems.append(f"nested code entry not checked: {f.path}")
            continue
        if not ok:
            problems.append(f"changed file: {f.path}")
    for path, entry in listed.items():
        if path in present:
            continue
        optional = isinstance(entry, dict) and entry.get("optional") is True
        if not optional:
            problems.append(f"missing file: {path}")
    return problems
