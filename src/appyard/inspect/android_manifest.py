"""What an Android manifest says, from the element tree of either format.

:func:`read_manifest` takes the root :class:`~appyard.inspect.axml.XmlElement` (from binary
XML in an APK or protocol-buffer XML in an AAB) and the module's
:class:`~appyard.inspect.android_resources.ResourceTable`, and returns a :class:`Manifest`.

Attributes in the ``android:`` namespace are found by resource id, as Android finds them; a
value that is a resource reference (``@bool/debuggable``, ``@string/app_name``) is resolved
through the table for the device ``aapt dump badging`` pretends to be (en-US, mdpi, SDK
10000; :data:`~appyard.inspect.android_resources.AAPT_CONFIG`). Where Android and ``aapt``
differ, the field docs below say which one is followed.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Literal

from appyard.inspect.android_resources import (
    AAPT_CONFIG,
    TYPE_STRING,
    MalformedResource,
    ResourceTable,
    ResValue,
)
from appyard.inspect.axml import XmlAttribute, XmlElement

# android.R.attr ids
A_LABEL = 0x01010001
A_ICON = 0x01010002
A_NAME = 0x01010003
A_PERMISSION = 0x01010006
A_READ_PERMISSION = 0x01010007
A_WRITE_PERMISSION = 0x01010008
A_ENABLED = 0x0101000E
A_DEBUGGABLE = 0x0101000F
A_EXPORTED = 0x01010010
A_SRC = 0x01010119
A_DRAWABLE = 0x01010199
A_TARGET_ACTIVITY = 0x01010202
A_MIN_SDK = 0x0101020C
A_VERSION_CODE = 0x0101021B
A_VERSION_NAME = 0x0101021C
A_TARGET_SDK = 0x01010270
A_MAX_SDK = 0x01010271
A_TEST_ONLY = 0x01010272
A_ALLOW_BACKUP = 0x01010280
A_EXTRACT_NATIVE_LIBS = 0x010104EA
A_USES_CLEARTEXT = 0x010104EC
A_NETWORK_SECURITY_CONFIG = 0x01010527
A_COMPILE_SDK = 0x01010572
A_COMPILE_SDK_CODENAME = 0x01010573
A_VERSION_CODE_MAJOR = 0x01010576

DIST_NS = "http://schemas.android.com/apk/distribution"

ACTION_MAIN = "android.intent.action.MAIN"
CATEGORY_LAUNCHER = "android.intent.category.LAUNCHER"

ComponentKind = Literal["activity", "activity-alias", "service", "receiver", "provider"]
_COMPONENT_TAGS: tuple[ComponentKind, ...] = (
    "activity",
    "activity-alias",
    "service",
    "receiver",
    "provider",
)
_PACKAGE_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*(\.[A-Za-z][A-Za-z0-9_]*)+$")
MAX_PACKAGE_NAME = 255
CUR_DEVELOPMENT = 10000

_WRITE_EXTERNAL = "android.permission.WRITE_EXTERNAL_STORAGE"
_READ_EXTERNAL = "android.permission.READ_EXTERNAL_STORAGE"
_READ_PHONE_STATE = "android.permission.READ_PHONE_STATE"
_READ_CONTACTS = "android.permission.READ_CONTACTS"
_WRITE_CONTACTS = "android.permission.WRITE_CONTACTS"
_READ_CALL_LOG = "android.permission.READ_CALL_LOG"
_WRITE_CALL_LOG = "android.permission.WRITE_CALL_LOG"


@dataclass(frozen=True)
class Component:
    """An exported activity, activity-alias, service, receiver or provider."""

    kind: ComponentKind
    name: str  # fully qualified
    exported_attribute: bool | None  # android:exported as written (resolved); None: absent
    has_intent_filter: bool  # what makes a component without android:exported exported
    enabled: bool  # android:enabled (a disabled component can be enabled at run time)
    permission: str | None  # android:permission a caller must hold
    read_permission: str | None = None  # providers only
    write_permission: str | None = None  # providers only
    target_activity: str | None = None  # activity-alias only


@dataclass(frozen=True)
class Manifest:
    """The manifest facts appyard records, with values resolved through resources."""

    package: str
    version_code: int | None  # android:versionCode (signed 32-bit, as declared)
    version_code_major: int | None  # android:versionCodeMajor
    version_name: str | None
    split: str | None  # the split / feature module name of a split APK or bundle module
    min_sdk: int | None  # as declared in <uses-sdk>; None when absent (Android assumes 1)
    target_sdk: int | None  # as declared; None when absent (Android assumes min_sdk)
    max_sdk: int | None
    sdk_codename: str | None  # a preview codename given for min/targetSdkVersion
    compile_sdk: int | None  # compileSdkVersion, else platformBuildVersionCode
    compile_sdk_codename: str | None  # compileSdkVersionCodename, else platformBuildVersionName
    debuggable: bool  # resolved through resources (aapt does the same)
    debuggable_reference: str | None  # "@bool/x" when android:debuggable is a reference
    test_only: bool
    allow_backup: bool | None  # as declared; None: absent (Android's default is true)
    uses_cleartext_traffic: bool | None  # as declared; None: absent (default by targetSdk)
    network_security_config: str | None  # the resolved resource (a path) or its reference
    extract_native_libs: bool | None  # as declared; None: absent (default true)
    permissions: tuple[str, ...]  # <uses-permission> and <uses-permission-sdk-23>, deduped
    permissions_sdk_23: tuple[str, ...]  # those requested by <uses-permission-sdk-23> only
    implied_permissions: tuple[str, ...]  # what aapt adds for old targetSdk / split perms
    launcher_activity: str | None
    exported_components: tuple[Component, ...]
    label: str | None  # aapt's "application: label" (default locale, else the first one)
    labels: Mapping[str, str]  # aapt's application-label-<locale>, every locale in the table
    icon_path: str | None  # the icon for an mdpi device (aapt's "application: icon")
    icon_paths: Mapping[int, str]  # aapt's application-icon-<density>
    warnings: tuple[str, ...] = field(default=())

    @property
    def effective_min_sdk(self) -> int:
        return self.min_sdk if self.min_sdk is not None else 1

    @property
    def effective_target_sdk(self) -> int:
        if self.sdk_codename is not None and self.target_sdk is None:
            return CUR_DEVELOPMENT
        return self.target_sdk if self.target_sdk is not None else self.effective_min_sdk

    @property
    def long_version_code(self) -> int | None:
        """Android's ``getLongVersionCode()``: versionCodeMajor << 32 | versionCode."""
        if self.version_code is None:
            return None
        return ((self.version_code_major or 0) << 32) | (self.version_code & 0xFFFFFFFF)


class _Reader:
    def __init__(self, table: ResourceTable | None) -> None:
        self.table = table
        self.warnings: list[str] = []

    def resolve(self, value: ResValue, locale: str | None = None) -> ResValue | None:
        if not value.is_reference:
            return value
        if self.table is None:
            return None
        config = AAPT_CONFIG if locale is None else AAPT_CONFIG.with_locale(locale)
        return self.table.resolve(value, config)

    def ref_name(self, value: ResValue) -> str:
        name = self.table.name(value.data) if self.table is not None else None
        return name or f"@0x{value.data:08x}"

    def string(self, attr: XmlAttribute | None, locale: str | None = None) -> str | None:
        """aapt's getResolvedAttribute: the string, following references."""
        if attr is None:
            return None
        if not attr.value.is_reference:
            return attr.text
        resolved = self.resolve(attr.value, locale)
        if resolved is None or resolved.type != TYPE_STRING:
            return None
        return resolved.string

    def boolean(self, attr: XmlAttribute | None, what: str) -> bool | None:
        if attr is None:
            return None
        resolved = self.resolve(attr.value)
        result = resolved.as_bool() if resolved is not None else None
        if result is None:
            self.warnings.append(f"{what} is not a boolean ({self._show(attr)}); ignored")
        return result

    def integer(self, attr: XmlAttribute | None, what: str) -> int | None:
        if attr is None:
            return None
        resolved = self.resolve(attr.value)
        if resolved is not None:
            number = resolved.as_int()
            if number is not None:
                return number
            text = resolved.coerce_to_string()
            if text is not None and re.fullmatch(r"\s*[+-]?(0[xX][0-9a-fA-F]+|\d+)\s*", text):
                return int(text.strip(), 0) if "x" in text.lower() else int(text.strip())
        self.warnings.append(f"{what} is not an integer ({self._show(attr)}); ignored")
        return None

    def _show(self, attr: XmlAttribute) -> str:
        if attr.value.is_reference:
            return self.ref_name(attr.value)
        return repr(attr.text)


def _class_name(package: str, name: str | None) -> str | None:
    """Android's buildClassName / aapt's getComponentName."""
    if not name:
        return None
    if name.startswith("."):
        return package + name
    if "." not in name:
        return f"{package}.{name}"
    return name


def _sdk(reader: _Reader, attr: XmlAttribute | None, what: str) -> tuple[int | None, str | None]:
    """(API level, codename) of a min/target/maxSdkVersion attribute."""
    if attr is None:
        return None, None
    resolved = reader.resolve(attr.value)
    if resolved is not None:
        number = resolved.as_int()
        if number is not None:
            return number, None
        text = resolved.coerce_to_string()
        if text is not None:
            text = text.strip()
            if text.isdigit():
                return int(text), None
            if text:
                return None, text
    reader.warnings.append(f"{what} cannot be read ({reader._show(attr)}); ignored")
    return None, None


def read_manifest(root: XmlElement, table: ResourceTable | None) -> Manifest:
    """Interpret a manifest tree; raise MalformedResource when Android would refuse it."""
    if root.name != "manifest":
        raise MalformedResource(f"its root element is <{root.name}>, not <manifest>")
    package_attr = root.attr_named("package")
    package = package_attr.raw_text if package_attr is not None else None
    if not package:
        raise MalformedResource("<manifest> has no package attribute")
    if len(package) > MAX_PACKAGE_NAME or not _PACKAGE_NAME.match(package):
        raise MalformedResource(f"its package name {package[:80]!r} is not a valid Android name")
    reader = _Reader(table)

    version_code = reader.integer(root.attr(A_VERSION_CODE), "android:versionCode")
    if version_code is not None and not -(2**31) <= version_code < 2**32:
        reader.warnings.append("android:versionCode is out of range; ignored")
        version_code = None
    elif version_code is not None and version_code >= 2**31:
        version_code -= 2**32
    version_code_major = reader.integer(root.attr(A_VERSION_CODE_MAJOR), "versionCodeMajor")
    if version_code_major is not None and not 0 <= version_code_major < 2**31:
        version_code_major = None
    version_name = reader.string(root.attr(A_VERSION_NAME))
    split_attr = root.attr_named("split")
    split = split_attr.raw_text if split_attr is not None else None

    compile_sdk = reader.integer(root.attr(A_COMPILE_SDK), "android:compileSdkVersion")
    if compile_sdk is None:
        compile_sdk = reader.integer(
            root.attr_named("platformBuildVersionCode"), "platformBuildVersionCode"
        )
    codename_attr = root.attr(A_COMPILE_SDK_CODENAME) or root.attr_named("platformBuildVersionName")
    compile_sdk_codename = codename_attr.text if codename_attr is not None else None

    min_sdk = target_sdk = max_sdk = None
    sdk_codename = None
    uses_sdk = next(root.find("uses-sdk"), None)
    if uses_sdk is not None:
        min_sdk, min_code = _sdk(reader, uses_sdk.attr(A_MIN_SDK), "android:minSdkVersion")
        target_sdk, target_code = _sdk(
            reader, uses_sdk.attr(A_TARGET_SDK), "android:targetSdkVersion"
        )
        max_sdk, _ = _sdk(reader, uses_sdk.attr(A_MAX_SDK), "android:maxSdkVersion")
        sdk_codename = target_code or min_code

    permissions: list[str] = []
    plain: set[str] = set()
    sdk_23: list[str] = []
    for child in root.children:
        if child.name in ("uses-permission", "uses-permission-sdk-23", "uses-permission-sdk-m"):
            name_attr = child.attr(A_NAME)
            name = name_attr.text if name_attr is not None else None
            if not name:
                continue
            if name not in permissions:
                permissions.append(name)
            if child.name == "uses-permission":
                plain.add(name)
            elif name not in sdk_23:
                sdk_23.append(name)

    application = next(root.find("application"), None)
    draft = Manifest(
        package=package,
        version_code=version_code,
        version_code_major=version_code_major,
        version_name=version_name,
        split=split,
        min_sdk=min_sdk,
        target_sdk=target_sdk,
        max_sdk=max_sdk,
        sdk_codename=sdk_codename,
        compile_sdk=compile_sdk,
        compile_sdk_codename=compile_sdk_codename,
        debuggable=False,
        debuggable_reference=None,
        test_only=False,
        allow_backup=None,
        uses_cleartext_traffic=None,
        network_security_config=None,
        extract_native_libs=None,
        permissions=tuple(permissions),
        permissions_sdk_23=tuple(p for p in sdk_23 if p not in plain),
        implied_permissions=(),
        launcher_activity=None,
        exported_components=(),
        label=None,
        labels={},
        icon_path=None,
        icon_paths={},
    )
    implied = _implied_permissions(plain, _aapt_target_sdk(draft))
    if application is not None:
        draft = _read_application(reader, application, draft)
    return replace(draft, implied_permissions=implied, warnings=tuple(reader.warnings))


def _aapt_target_sdk(m: Manifest) -> int:
    """The targetSdk aapt uses for implied permissions: max(min, target); previews count high."""
    if m.sdk_codename is not None:
        return CUR_DEVELOPMENT
    return max(m.min_sdk or 0, m.target_sdk or 0)


def _implied_permissions(has: set[str], target: int) -> tuple[str, ...]:
    """The permissions ``aapt dump badging`` prints as uses-implied-permission."""
    implied: list[str] = []
    if target < 4:
        if _WRITE_EXTERNAL not in has:
            implied.append(_WRITE_EXTERNAL)
        if _READ_PHONE_STATE not in has:
            implied.append(_READ_PHONE_STATE)
    if _READ_EXTERNAL not in has and (_WRITE_EXTERNAL in has or _WRITE_EXTERNAL in implied):
        implied.append(_READ_EXTERNAL)
    if target < 16:
        if _READ_CALL_LOG not in has and _READ_CONTACTS in has:
            implied.append(_READ_CALL_LOG)
        if _WRITE_CALL_LOG not in has and _WRITE_CONTACTS in has:
            implied.append(_WRITE_CALL_LOG)
    return tuple(implied)


def _read_application(reader: _Reader, app: XmlElement, m: Manifest) -> Manifest:
    debuggable_attr = app.attr(A_DEBUGGABLE)
    debuggable_reference = None
    if debuggable_attr is not None and debuggable_attr.value.is_reference:
        debuggable_reference = reader.ref_name(debuggable_attr.value)
    nsc_attr = app.attr(A_NETWORK_SECURITY_CONFIG)
    network_security_config = None
    if nsc_attr is not None:
        network_security_config = reader.string(nsc_attr) or (
            reader.ref_name(nsc_attr.value) if nsc_attr.value.is_reference else nsc_attr.text
        )

    label_attr = app.attr(A_LABEL)
    labels: dict[str, str] = {}
    label = None
    if label_attr is not None:
        locales = reader.table.locales() if reader.table is not None else []
        if "" not in locales:
            locales.insert(0, "")
        for locale in locales:
            text = reader.string(label_attr, locale)
            if not text:
                continue
            if locale:
                labels[locale] = text
                label = label or text
            else:
                label = text

    icon_attr = app.attr(A_ICON)
    icon_path = reader.string(icon_attr) or None
    icon_paths: dict[int, str] = {}
    if icon_attr is not None and reader.table is not None and icon_attr.value.is_reference:
        for density in reader.table.densities():
            resolved = reader.table.resolve(icon_attr.value, replace(AAPT_CONFIG, density=density))
            if resolved is not None and resolved.type == TYPE_STRING and resolved.string:
                icon_paths[density] = resolved.string

    components, launcher = _components(reader, app, m)
    return replace(
        m,
        debuggable=bool(reader.boolean(debuggable_attr, "android:debuggable")),
        debuggable_reference=debuggable_reference,
        test_only=bool(reader.boolean(app.attr(A_TEST_ONLY), "android:testOnly")),
        allow_backup=reader.boolean(app.attr(A_ALLOW_BACKUP), "android:allowBackup"),
        uses_cleartext_traffic=reader.boolean(
            app.attr(A_USES_CLEARTEXT), "android:usesCleartextTraffic"
        ),
        network_security_config=network_security_config,
        extract_native_libs=reader.boolean(
            app.attr(A_EXTRACT_NATIVE_LIBS), "android:extractNativeLibs"
        ),
        launcher_activity=launcher,
        exported_components=components,
        label=label,
        labels=labels,
        icon_path=icon_path,
        icon_paths=icon_paths,
    )


def _components(
    reader: _Reader, app: XmlElement, m: Manifest
) -> tuple[tuple[Component, ...], str | None]:
    exported: list[Component] = []
    launcher = None
    target = m.effective_target_sdk
    for child in app.children:
        if child.name not in _COMPONENT_TAGS:
            continue
        kind = _COMPONENT_TAGS[_COMPONENT_TAGS.index(child.name)]
        name_attr = child.attr(A_NAME)
        name = _class_name(m.package, name_attr.text if name_attr is not None else None)
        if name is None:
            reader.warnings.append(f"a <{kind}> has no android:name; ignored")
            continue
        filters = list(child.find("intent-filter"))
        enabled = reader.boolean(child.attr(A_ENABLED), "android:enabled")
        explicit = reader.boolean(child.attr(A_EXPORTED), "android:exported")
        if explicit is not None:
            is_exported = explicit
        elif kind == "provider":
            is_exported = target < 17
        else:
            is_exported = bool(filters)
            if filters and target >= 31:
                reader.warnings.append(
                    f"{name} has an intent filter but no android:exported; "
                    "Android 12+ refuses to install apps targeting API 31+ like this"
                )
        if (
            launcher is None
            and kind in ("activity", "activity-alias")
            and enabled is not False
            and any(_is_launcher_filter(f) for f in filters)
        ):
            launcher = name
        if not is_exported:
            continue
        target_activity = None
        if kind == "activity-alias":
            target_attr = child.attr(A_TARGET_ACTIVITY)
            target_activity = _class_name(
                m.package, target_attr.text if target_attr is not None else None
            )
        exported.append(
            Component(
                kind=kind,
                name=name,
                exported_attribute=explicit,
                has_intent_filter=bool(filters),
                enabled=enabled is not False,
                permission=reader.string(child.attr(A_PERMISSION)),
                read_permission=reader.string(child.attr(A_READ_PERMISSION))
                if kind == "provider"
                else None,
                write_permission=reader.string(child.attr(A_WRITE_PERMISSION))
                if kind == "provider"
                else None,
                target_activity=target_activity,
            )
        )
    return tuple(exported), launcher


def _is_launcher_filter(intent_filter: XmlElement) -> bool:
    actions = {_name(e) for e in intent_filter.find("action")}
    categories = {_name(e) for e in intent_filter.find("category")}
    return ACTION_MAIN in actions and CATEGORY_LAUNCHER in categories


def _name(element: XmlElement) -> str | None:
    attr = element.attr(A_NAME)
    return attr.text if attr is not None else None


@dataclass(frozen=True)
class ModuleDelivery:
    """The ``dist:module`` element of a bundle module's manifest."""

    type: str | None  # dist:type ("asset-pack"), None for feature modules
    delivery: str | None  # "install-time", "on-demand", "fast-follow" or None
    instant: bool | None
    fusing_include: bool | None


def read_module_delivery(root: XmlElement) -> ModuleDelivery | None:
    module = next((c for c in root.children if c.name == "module" and c.namespace == DIST_NS), None)
    if module is None:
        return None

    def dist_bool(element: XmlElement, name: str) -> bool | None:
        attr = element.attr_named(name, DIST_NS)
        if attr is None:
            return None
        return attr.value.as_bool()

    type_attr = module.attr_named("type", DIST_NS)
    delivery = None
    for child in module.children:
        if child.name == "delivery":
            for mode in child.children:
                if mode.name in ("install-time", "on-demand", "fast-follow"):
                    delivery = mode.name
                    break
    if delivery is None:
        on_demand = dist_bool(module, "onDemand")
        if on_demand is not None:
            delivery = "on-demand" if on_demand else "install-time"
    fusing = next((c for c in module.children if c.name == "fusing"), None)
    return ModuleDelivery(
        type=type_attr.raw_text if type_attr is not None else None,
        delivery=delivery,
        instant=dist_bool(module, "instant"),
        fusing_include=dist_bool(fusing, "include") if fusing is not None else None,
    )


# --- launcher icon ----------------------------------------------------------------------------

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
MAX_ICON_BYTES = 4 * 1024 * 1024
MAX_ICON_XML_BYTES = 1024 * 1024
MAX_ICON_CANDIDATES = 16  # icon files tried (a table may name files the zip lacks)
MAX_ICON_HOPS = 4  # drawable XML wrappers followed (<inset>, <bitmap>, adaptive foreground)
# The device the icon is chosen for: the en-US aapt device with the highest common density.
ICON_CONFIG = replace(AAPT_CONFIG, density=640)

IconSource = Literal["png", "adaptive-foreground", "legacy-png"]


@dataclass(frozen=True)
class Icon:
    """The launcher icon as a PNG file."""

    path: str  # the entry it was read from (relative to the module for bundles)
    density: int | None  # its configuration's density (160 for default, None for nodpi)
    width: int
    height: int
    source: IconSource  # "png"; or, for an adaptive icon, its foreground or a legacy PNG
    png: bytes = field(repr=False)


def png_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from a PNG's IHDR, or None when ``data`` is not a PNG."""
    if len(data) < 24 or not data.startswith(PNG_SIGNATURE) or data[12:16] != b"IHDR":
        return None
    width = int.from_bytes(data[16:20], "big")
    height = int.from_bytes(data[20:24], "big")
    if not 0 < width < 1 << 31 or not 0 < height < 1 << 31:
        return None
    return width, height


class IconFiles:
    """How :func:`choose_icon` reads a module's files (APK: binary XML; AAB: proto XML)."""

    def read(self, path: str, limit: int) -> bytes | None:
        raise NotImplementedError

    def parse_xml(self, data: bytes) -> XmlElement:
        raise NotImplementedError


def _files(table: ResourceTable, value: ResValue, requested: int = 0) -> list[tuple[int, str]]:
    """(density, path) of every file the reference can resolve to, following one hop."""
    out: list[tuple[int, str]] = []
    if not value.is_reference:
        if value.type == TYPE_STRING and value.string:
            out.append((0, value.string))
        return out
    for config, candidate in table.values(value.data):
        if candidate.is_reference:
            resolved = table.resolve(candidate, replace(ICON_CONFIG, density=config.density or 160))
            if resolved is None:
                continue
            candidate = resolved
        if candidate.type == TYPE_STRING and candidate.string:
            out.append((config.density, candidate.string))
    return out


def _density_rank(density: int) -> int:
    if density == 0xFFFF:  # nodpi: usable, but only when nothing else is
        return 1
    if density == 0xFFFE:
        return 0
    return density or 160


def _ordered_pngs(candidates: list[tuple[int, str]]) -> list[tuple[int, str]]:
    """PNG candidates, best first: highest density, plain PNGs before nine-patches."""
    pngs = {c for c in candidates if c[1].lower().endswith(".png")}
    return sorted(
        pngs,
        key=lambda c: (not c[1].lower().endswith(".9.png"), _density_rank(c[0]), c[1]),
        reverse=True,
    )


def choose_icon(
    root: XmlElement, table: ResourceTable | None, files: IconFiles
) -> tuple[Icon | None, list[str]]:
    """The application icon as PNG bytes, and warnings for what could not be used.

    Picks the highest-density PNG of ``android:icon``. When a high-density device would get an
    adaptive icon (``<adaptive-icon>`` XML, API 26+), its foreground drawable is used if it
    is (or wraps) a PNG; otherwise the best legacy PNG of the same resource.
    """
    warnings: list[str] = []
    app = next(root.find("application"), None)
    attr = app.attr(A_ICON) if app is not None else None
    if attr is None or table is None:
        return None, warnings
    candidates = _files(table, attr.value)
    chosen = table.resolve(attr.value, ICON_CONFIG) if attr.value.is_reference else attr.value
    chosen_path = chosen.string if chosen is not None and chosen.type == TYPE_STRING else None
    ordered: list[tuple[IconSource, int, str]] = []
    if chosen_path and chosen_path.lower().endswith(".xml"):
        foreground = _foreground_pngs(table, files, chosen_path, warnings)
        ordered += [("adaptive-foreground", d, p) for d, p in foreground]
        ordered += [("legacy-png", d, p) for d, p in _ordered_pngs(candidates)]
    else:
        ordered += [("png", d, p) for d, p in _ordered_pngs(candidates)]
    missing: list[str] = []
    for source, density, path in ordered[:MAX_ICON_CANDIDATES]:
        data = files.read(path, MAX_ICON_BYTES)
        size = png_size(data) if data is not None else None
        if data is None or size is None:
            missing.append(path)
            continue
        if missing:
            warnings.append(f"launcher icon files missing or unreadable: {', '.join(missing)}")
        return (
            Icon(
                path=path,
                density=None if density == 0xFFFF else (density or 160),
                width=size[0],
                height=size[1],
                source=source,
                png=data,
            ),
            warnings,
        )
    if missing:
        warnings.append(f"launcher icon files missing or unreadable: {', '.join(missing)}")
    others = sorted({p for _, p in candidates if not p.lower().endswith((".png", ".xml"))})
    if others:
        warnings.append(f"the launcher icon is not a PNG ({others[0]}); not extracted")
    return None, warnings


def _foreground_pngs(
    table: ResourceTable, files: IconFiles, xml_path: str, warnings: list[str]
) -> list[tuple[int, str]]:
    """Follow <adaptive-icon><foreground android:drawable> (and <inset>/<bitmap>) to PNGs."""
    path = xml_path
    for _ in range(MAX_ICON_HOPS):
        data = files.read(path, MAX_ICON_XML_BYTES)
        if data is None:
            warnings.append(f"the icon drawable {path} is missing or too large")
            return []
        try:
            element = files.parse_xml(data)
        except MalformedResource as exc:
            warnings.append(f"the icon drawable {path} cannot be read ({exc})")
            return []
        if element.name == "adaptive-icon":
            foreground = next(element.find("foreground"), None)
            if foreground is None:
                return []
            element = foreground
        attr = element.attr(A_DRAWABLE) or element.attr(A_SRC)
        if attr is None and element.children:  # an inline drawable
            inner = element.children[0]
            attr = inner.attr(A_DRAWABLE) or inner.attr(A_SRC)
        if attr is None:
            return []
        pngs = _ordered_pngs(_files(table, attr.value))
        if pngs:
            return pngs
        chosen = table.resolve(attr.value, ICON_CONFIG) if attr.value.is_reference else None
        if chosen is None or chosen.type != TYPE_STRING or not chosen.string:
            return []
        if not chosen.string.lower().endswith(".xml"):
            return []
        path = chosen.string
    return []
