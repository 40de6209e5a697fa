"""The extension API in isolation: loading modules, settings sections, routes, setup errors."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from workstream.actors.events import EventBus
from workstream.actors.ticker import Ticker
from workstream.config import Settings, load_settings
from workstream.errors import ConfigError
from workstream.extensions import (
    ExtensionContext,
    load_extensions,
    run_setup,
    unclaimed_sections,
)
from workstream.handlers.middleware import MiddlewareChain

SAMPLE = "tests.unit.sample_extension"


def context_for(name: str, settings: Settings) -> ExtensionContext:
    return ExtensionContext(
        name,
        server_settings=settings,
        jobs=None,  # type: ignore[arg-type]
        events=EventBus(),
        ticker=Ticker(),
        middleware=MiddlewareChain(),
        metrics=None,
        clock=time.time,
    )


def loaded_sample(settings: Settings) -> Any:
    [extension] = load_extensions([SAMPLE])
    run_setup(extension, context_for(extension.name, settings))
    return extension


def test_setup_gets_its_section_from_the_file_and_the_environment(tmp_path: Path) -> None:
    config = tmp_path / "ws.toml"
    config.write_text('[sample_extension]\nlimit = 7\nlabel = "from file"\n', encoding="utf-8")
    settings = load_settings(env={"SAMPLE_EXTENSION_LIMIT": "9"}, config_file=config)
    extension = loaded_sample(settings)
    try:
        assert extension.name == "sample_extension"
        assert extension.context.values == {"limit": 9, "label": "from file"}
        assert extension.context.routes[0][0] == "/ext/sample_extension/hello"
        assert unclaimed_sections(settings, [extension]) == []
    finally:
        for ref in extension.actors:
            ref.stop()


def test_defaults_apply_when_nothing_is_set() -> None:
    extension = loaded_sample(Settings())
    try:
        assert extension.context.values == {"limit": 5, "label": "x"}
        assert len(extension.actors) == 1 and extension.actors[0].is_alive()
    finally:
        for ref in extension.actors:
            ref.stop()


def test_a_bad_value_names_the_extensions_setting(tmp_path: Path) -> None:
    settings = load_settings(env={"SAMPLE_EXTENSION_LIMIT": "many"}, config_file=None)
    [extension] = load_extensions([SAMPLE])
    with pytest.raises(
        ConfigError, match=r"invalid SAMPLE_EXTENSION_LIMIT = 'many' \(environment\)"
    ):
        run_setup(extension, context_for(extension.name, settings))


def test_an_unknown_key_in_the_section_is_refused(tmp_path: Path) -> None:
    config = tmp_path / "ws.toml"
    config.write_text("[sample_extension]\nlimt = 7\n", encoding="utf-8")
    settings = load_settings(env={}, config_file=config)
    [extension] = load_extensions([SAMPLE])
    with pytest.raises(ConfigError, match=r"unknown setting 'limt' in \[sample_extension\]"):
        run_setup(extension, context_for(extension.name, settings))


def test_a_table_no_extension_reads_is_reported(tmp_path: Path) -> None:
    config = tmp_path / "ws.toml"
    config.write_text("[watchdgo]\nthreshold = 3\n", encoding="utf-8")
    settings = load_settings(env={}, config_file=config)
    assert unclaimed_sections(settings, []) == ["watchdgo"]


@pytest.mark.parametrize(
    ("module", "message"),
    [
        ("no_such_extension_xyz", "EXTENSIONS: cannot import module 'no_such_extension_xyz'"),
        ("tests.unit.test_layers", "has no setup(context) function"),
    ],
)
def test_a_module_that_cannot_be_an_extension_is_named(module: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_extensions([module])
    assert message in caught.value.message


def test_two_extensions_with_one_name_are_refused() -> None:
    with pytest.raises(ConfigError, match="share the name 'sample_extension'"):
        load_extensions([SAMPLE, SAMPLE])


def test_a_setup_that_raises_is_named() -> None:
    [extension] = load_extensions([SAMPLE])

    def broken(context: ExtensionContext) -> None:
        raise RuntimeError("no database for the audit")

    extension.setup = broken
    with pytest.raises(ConfigError) as caught:
        run_setup(extension, context_for(extension.name, Settings()))
    assert caught.value.message == (
        f"EXTENSIONS: {SAMPLE}.setup failed: RuntimeError: no database for the audit"
    )


def test_a_setup_must_return_actor_refs() -> None:
    [extension] = load_extensions([SAMPLE])
    extension.setup = lambda context: ["not an actor"]
    with pytest.raises(ConfigError, match="must return a list of actor refs"):
        run_setup(extension, context_for(extension.name, Settings()))


def test_routes_must_be_absolute_below_the_prefix() -> None:
    context = context_for("demo", Settings())
    assert context.add_route("/", object()) == "/ext/demo"
    assert context.add_route("/a/{id}", object()) == "/ext/demo/a/{id}"
    with pytest.raises(ValueError, match="must start with '/'"):
        context.add_route("relative", object())
