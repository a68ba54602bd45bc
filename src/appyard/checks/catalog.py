"""controls.yaml -> ControlSpec, read once and checked strictly (a typo fails at import)."""

from __future__ import annotations

from functools import cache
from importlib import resources
from typing import Any, cast

import yaml

from appyard.checks.model import (
    KINDS,
    PLATFORMS,
    VERSIONS,
    ControlSpec,
    Kind,
    Platform,
    References,
    Severity,
)

_KEYS = {
    "id",
    "kind",
    "platforms",
    "kinds",
    "severity",
    "defaults",
    "title",
    "description",
    "references",
    "needs_history",
}
_REQUIRED = _KEYS - {"needs_history"}


class CatalogError(ValueError):
    """controls.yaml is malformed (a bug in appyard, not in a build)."""


def _severity(value: object, where: str) -> Severity | None:
    if value in ("off", None, False):
        return None
    try:
        return Severity(str(value))
    except ValueError:
        raise CatalogError(
            f"{where}: severity {value!r} is not blocking|warning|info|off"
        ) from None


def _strings(value: object, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise CatalogError(f"{where}: expected a list of strings")
    return tuple(value)


def _spec(raw: object, index: int) -> ControlSpec:
    if not isinstance(raw, dict):
        raise CatalogError(f"control #{index}: expected a mapping")
    cid = raw.get("id")
    where = f"control {cid or index!r}"
    if set(raw) - _KEYS or _REQUIRED - set(raw):
        raise CatalogError(
            f"{where}: unknown keys {sorted(set(raw) - _KEYS)}, "
            f"missing keys {sorted(_REQUIRED - set(raw))}"
        )
    if not isinstance(cid, str) or not cid.replace("_", "").isalnum() or not cid.islower():
        raise CatalogError(f"{where}: ids are lower_snake_case strings")
    if raw["kind"] != "detection":
        raise CatalogError(f"{where}: kind must be 'detection'")
    platforms = _strings(raw["platforms"], f"{where}.platforms")
    kinds = _strings(raw["kinds"], f"{where}.kinds")
    if not platforms or any(p not in PLATFORMS for p in platforms):
        raise CatalogError(f"{where}: platforms must be among {PLATFORMS}")
    if not kinds or any(k not in KINDS for k in kinds):
        raise CatalogError(f"{where}: kinds must be among {KINDS}")
    severity = _severity(raw["severity"], f"{where}.severity")
    if severity is None:
        raise CatalogError(f"{where}: the default severity cannot be off")
    defaults_raw = raw["defaults"]
    if not isinstance(defaults_raw, dict) or set(defaults_raw) != set(VERSIONS):
        raise CatalogError(f"{where}: defaults must name exactly {VERSIONS}")
    defaults = {v: _severity(defaults_raw[v], f"{where}.defaults.{v}") for v in VERSIONS}
    refs = raw["references"]
    if not isinstance(refs, dict) or set(refs) - {"cwe", "masvs"}:
        raise CatalogError(f"{where}: references holds cwe and masvs lists")
    cwe = _strings(refs.get("cwe", []), f"{where}.references.cwe")
    masvs = _strings(refs.get("masvs", []), f"{where}.references.masvs")
    if any(not c.startswith("CWE-") for c in cwe) or any(not m.startswith("MASVS-") for m in masvs):
        raise CatalogError(f"{where}: references look like CWE-123 and MASVS-AREA-1")
    for text_key in ("title", "description"):
        if not isinstance(raw[text_key], str) or not raw[text_key].strip():
            raise CatalogError(f"{where}: {text_key} must be a non-empty string")
    return ControlSpec(
        id=cid,
        kind="detection",
        platforms=cast(tuple[Platform, ...], platforms),
        kinds=cast(tuple[Kind, ...], kinds),
        severity=severity,
        defaults=defaults,
        title=raw["title"].strip(),
        description=" ".join(raw["description"].split()),
        references=References(cwe=cwe, masvs=masvs),
        needs_history=bool(raw.get("needs_history", False)),
    )


def parse_catalog(text: str) -> tuple[ControlSpec, ...]:
    data: Any = yaml.safe_load(text)
    if not isinstance(data, dict) or not isinstance(data.get("controls"), list):
        raise CatalogError("controls.yaml must hold a `controls:` list")
    specs = tuple(_spec(raw, i) for i, raw in enumerate(data["controls"]))
    ids = [s.id for s in specs]
    if len(set(ids)) != len(ids):
        raise CatalogError(f"duplicate control ids in controls.yaml: {sorted(ids)}")
    return specs


@cache
def load_catalog() -> tuple[ControlSpec, ...]:
    text = resources.files("appyard.checks").joinpath("controls.yaml").read_text("utf-8")
    return parse_catalog(text)
