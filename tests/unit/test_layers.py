"""Dependencies point one way (docs/architecture.md): checked on the import statements of
every module in the package. Each module belongs to exactly one layer; a new module that
no layer claims fails `test_every_module_is_in_exactly_one_layer` until it is placed."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "workstream"

# Layers, bottom to top: where their modules are (path prefixes inside the package), and
# which parts of workstream they may import (module-name prefixes). No exceptions.
DOMAIN = ("errors", "units", "jobs")
OBSERVABILITY = ("metrics", "logs", "start_rate")
LAYERS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "domain": (("errors.py", "units.py", "jobs/"), DOMAIN),
    "config": (("converters.py", "config.py"), (*DOMAIN, "converters", "config")),
    "handlers": (("handlers/",), (*DOMAIN, "handlers")),
    # Worker processes: the child program and the parent's handle on it (no actors).
    "processes": (("proc/",), (*DOMAIN, "handlers", "logs", "proc")),
    "store": (("store/",), (*DOMAIN, "store")),
    "observability": (("metrics.py", "logs.py", "start_rate.py"), DOMAIN),
    "actors": (("actors/",), (*DOMAIN, "handlers", "store.base", "proc", "actors")),
    "http": (("http/",), (*DOMAIN, "http")),
    "client": (("client/", "client.py"), (*DOMAIN, "client")),
    # The built-in scheduler: an extension, on the extension API (and the handlers'
    # declared schedules).
    "scheduling": (
        ("scheduling/",),
        (*DOMAIN, "converters", "config", "handlers", "extensions", "scheduling"),
    ),
    # The composition root and the extension API it hands to extensions.
    "root": (
        ("system.py", "extensions.py"),
        (
            *DOMAIN,
            "converters",
            "config",
            "handlers",
            "store",
            "proc",
            "actors",
            "http",
            *OBSERVABILITY,
            "extensions",
            "scheduling",
        ),
    ),
    "entry points": (("cli.py", "__main__.py", "__init__.py"), ("",)),
}

# Third-party libraries and the only places allowed to import them.
LIBRARY_HOMES = {
    "pykka": ("actors/", "extensions.py", "scheduling/"),
    "cronsim": ("scheduling/",),
    "falcon": ("http/",),
    "waitress": ("http/server",),
    "prometheus_client": ("metrics.py",),
    "psycopg": ("store/postgres",),
    "psycopg_pool": ("store/postgres",),
    "jinja2": ("http/console/",),
    "markupsafe": ("http/console/",),
}

# Modules that define an actor: none of them imports another (messages live apart).
ACTOR_MODULES = ("actors/registry.py", "actors/dispatcher.py", "actors/worker.py")
ACTOR_MODULES += ("actors/sweeper.py", "actors/process_worker.py")


def modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def relative(path: Path) -> str:
    return path.relative_to(PACKAGE).as_posix()


def imports_of(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def layer_of(path: Path) -> list[str]:
    name = relative(path)
    return [
        layer
        for layer, (places, _) in LAYERS.items()
        if any(
            name == place or (place.endswith("/") and name.startswith(place)) for place in places
        )
    ]


def test_every_module_is_in_exactly_one_layer() -> None:
    misplaced = {relative(path): layer_of(path) for path in modules() if len(layer_of(path)) != 1}
    assert misplaced == {}


def test_no_relative_imports() -> None:
    """Relative imports would slip past the checks below."""
    offenders = []
    for path in modules():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        if any(isinstance(n, ast.ImportFrom) and n.level > 0 for n in ast.walk(tree)):
            offenders.append(relative(path))
    assert offenders == []


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


@pytest.mark.parametrize("layer", sorted(LAYERS))
def test_each_layer_imports_only_what_is_below_it(layer: str) -> None:
    allowed = LAYERS[layer][1]
    offenders = []
    for path in modules():
        if layer_of(path) != [layer]:
            continue
        for name in imports_of(path):
            if name != "workstream" and not name.startswith("workstream."):
                continue
            inner = name.removeprefix("workstream").removeprefix(".")
            if not any(
                part == "" or inner == part or inner.startswith(part + ".") for part in allowed
            ):
                offenders.append(f"{relative(path)} imports {name}")
    assert offenders == []


def test_no_actor_module_imports_another_actors_module() -> None:
    dotted = {m: "workstream." + m.removesuffix(".py").replace("/", ".") for m in ACTOR_MODULES}
    offenders = []
    for module in ACTOR_MODULES:
        others = {name for other, name in dotted.items() if other != module}
        for name in imports_of(PACKAGE / module):
            if name in others:
                offenders.append(f"{module} imports {name}")
    assert offenders == []
