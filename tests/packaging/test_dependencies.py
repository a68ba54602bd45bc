"""The declared dependencies are exactly what ``src/`` imports: the runtime list holds every
library a module of appyard imports and nothing else; each scale-out extra holds the client
its backend module imports, and nothing outside that module imports it at load time."""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
import tomllib
from pathlib import Path

from tests.conftest import ROOT

SRC = ROOT / "src" / "appyard"
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
# The backend module each extra is for; its libraries may be imported there only.
EXTRA_MODULES = {
    "s3": "appyard.backends.storage.s3",
    "redis": "appyard.backends.queue.redis",
}
# Drivers loaded by name, never imported by appyard: extra -> distribution.
DRIVERS = {"postgres": "psycopg"}  # SQLAlchemy's postgresql+psycopg dialect


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_name(requirement: str) -> str:
    match = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", requirement)
    assert match, requirement
    return normalize(match.group(0))


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path, *, top_level_only: bool = False) -> set[str]:
    """Absolute imports in ``path``; ``top_level_only``: those run when the module loads
    (module body, not inside a function)."""
    tree = ast.parse(path.read_text(), str(path))
    nodes = (
        [n for n in tree.body if not isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)]
        if top_level_only
        else [tree]
    )
    found: set[str] = set()
    for root in nodes:
        for node in ast.walk(root):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and top_level_only:
                continue
            if isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.add(node.module)
    return found


def third_party(modules: set[str]) -> set[str]:
    tops = {m.split(".")[0] for m in modules}
    return {t for t in tops if t not in sys.stdlib_module_names and t != "appyard"}


def distributions(import_names: set[str]) -> set[str]:
    """The distributions that provide these top-level import names (installed metadata)."""
    owners = importlib.metadata.packages_distributions()
    found = set()
    for name in import_names:
        assert name in owners, f"{name} is imported by src/ but no installed distribution has it"
        found.update(normalize(d) for d in owners[name])
    return found


def src_files() -> list[Path]:
    return sorted(SRC.rglob("*.py"))


def test_runtime_dependencies_are_exactly_what_src_imports() -> None:
    optional = {
        extra: {requirement_name(r) for r in reqs}
        for extra, reqs in PROJECT["optional-dependencies"].items()
    }
    client_extras = {*EXTRA_MODULES, *DRIVERS}
    clients = set().union(*(optional[e] for e in client_extras))
    imported = distributions(third_party(set().union(*(imports(p) for p in src_files()))))
    declared = {requirement_name(r) for r in PROJECT["dependencies"]}

    assert declared == imported - clients, (
        f"declared but not imported: {sorted(declared - imported)}; "
        f"imported but not declared: {sorted(imported - clients - declared)}"
    )
    for extra, module in EXTRA_MODULES.items():
        path = SRC.parent / (module.replace(".", "/") + ".py")
        assert optional[extra] == distributions(third_party(imports(path))) - declared, extra
    for extra, driver in DRIVERS.items():
        assert optional[extra] == {driver}, extra
    assert optional["all"] == {"appyard"}
    assert PROJECT["optional-dependencies"]["all"] == [
        f"appyard[{','.join(sorted(client_extras, key=['postgres', 's3', 'redis'].index))}]"
    ]
    assert "appyard[all]" in PROJECT["optional-dependencies"]["dev"]


def test_the_scale_out_clients_are_imported_only_by_their_backends_and_only_when_used() -> None:
    runtime_tops = {
        t
        for t, dists in importlib.metadata.packages_distributions().items()
        if {normalize(d) for d in dists} & {requirement_name(r) for r in PROJECT["dependencies"]}
    }
    for extra, module in EXTRA_MODULES.items():
        path = SRC.parent / (module.replace(".", "/") + ".py")
        libraries = third_party(imports(path)) - runtime_tops
        assert libraries, extra
        for path in src_files():
            name = module_name(path)
            if name == module:
                continue
            loaded = imports(path, top_level_only=True)
            assert not third_party(loaded) & libraries, f"{name} imports {libraries} at load"
            assert module not in loaded, f"{name} imports {module} at load time"


def test_the_granian_pin_stays_below_its_next_major_version() -> None:
    (granian,) = [r for r in PROJECT["dependencies"] if requirement_name(r) == "granian"]
    installed = int(importlib.metadata.version("granian").split(".")[0])

    assert f"<{installed + 1}" in granian.replace(" ", "")
