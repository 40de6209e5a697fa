"""Dependencies point one way (docs/architecture.md): checked on the import statements."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "workstream"

# Third-party libraries and the only modules allowed to import them.
LIBRARY_HOMES = {
    "pykka": ("actors/", "service.py"),
    "falcon": ("http/",),
    "waitress": ("http/server.py",),
    "prometheus_client": ("metrics.py",),
    "psycopg": ("store/postgres",),
    "psycopg_pool": ("store/postgres",),
}

# Which parts of workstream each layer may import.
LAYER_ALLOWS = {
    "jobs/": ("jobs", "errors", "units"),
    "store/": ("store", "jobs", "errors", "units"),
    "handlers/": ("handlers", "jobs", "errors", "units", "config"),
    "http/": ("http", "jobs", "errors", "units", "store.base"),
    "actors/": ("actors", "jobs", "errors", "units", "handlers", "store.base"),
}


def modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def imports_of(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def relative(path: Path) -> str:
    return path.relative_to(PACKAGE).as_posix()


@pytest.mark.parametrize("library", sorted(LIBRARY_HOMES))
def test_each_library_is_imported_only_where_it_belongs(library: str) -> None:
    homes = LIBRARY_HOMES[library]
    offenders = [
        relative(path)
        for path in modules()
        if any(name == library or name.startswith(library + ".") for name in imports_of(path))
        and not relative(path).startswith(homes)
    ]
    assert offenders == []


@pytest.mark.parametrize("layer", sorted(LAYER_ALLOWS))
def test_each_layer_imports_only_what_is_below_it(layer: str) -> None:
    allowed = LAYER_ALLOWS[layer]
    offenders = []
    for path in modules():
        if not relative(path).startswith(layer):
            continue
        for name in imports_of(path):
            if not name.startswith("workstream."):
                continue
            inner = name.removeprefix("workstream.")
            if not any(inner == part or inner.startswith(part + ".") for part in allowed):
                offenders.append(f"{relative(path)} imports {name}")
    assert offenders == []
