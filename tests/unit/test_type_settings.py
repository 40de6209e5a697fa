"""PRIORITY_AGING and the `[types.<name>]` tables of the config file (issue 13)."""

from __future__ import annotations

from pathlib import Path

import pytest

from workstream.config import load_settings
from workstream.errors import ConfigError
from workstream.extensions import unclaimed_sections
from workstream.handlers import HandlerTable
from workstream.jobs.types import RateLimit
from workstream.system import type_limits


def settings_with(tmp_path: Path, text: str):
    path = tmp_path / "workstream.toml"
    path.write_text(text, encoding="utf-8")
    return load_settings(env={}, config_file=path)


def table() -> HandlerTable:
    handlers = HandlerTable()
    handlers.register("resize", max_concurrency=5, concurrency_key="tenant")(lambda p, j: None)
    handlers.register("echo")(lambda p, j: None)
    return handlers


def test_priority_aging_defaults_to_five_minutes_and_zero_disables() -> None:
    assert load_settings(env={}).priority_aging == 300.0
    assert load_settings(env={"PRIORITY_AGING": "0s"}).priority_aging == 0.0
    with pytest.raises(ConfigError, match="PRIORITY_AGING"):
        load_settings(env={"PRIORITY_AGING": "soon"})


def test_a_types_table_overrides_the_registration(tmp_path: Path) -> None:
    settings = settings_with(
        tmp_path,
        '[types.resize]\nmax_concurrency = 2\n[types.echo]\nrate_limit = "10/m"\n',
    )
    limits = type_limits(settings, table())
    assert (limits["resize"].max_concurrency, limits["resize"].concurrency_key) == (2, "tenant")
    assert limits["echo"].rate_limit == RateLimit(10, 60.0, "10/m")
    assert unclaimed_sections(settings, []) == []  # [types] is the core's, not an extension's


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[types.echo]\nmax_concurrency = 0\n", r"\[types.echo\] max_concurrency"),
        ('[types.echo]\nrate_limit = "fast"\n', r"\[types.echo\] rate_limit"),
        ('[types.echo]\nconcurrency_key = "tenant"\n', "concurrency_key needs max_concurrency"),
        ("[types.echo]\nmax_concurency = 3\n", "unknown setting 'max_concurency' in"),
        ("[types]\necho = 3\n", r"\[types\] holds tables only"),
    ],
)
def test_a_bad_types_table_stops_start_up_naming_it(tmp_path: Path, text: str, message: str):
    settings = settings_with(tmp_path, text)
    with pytest.raises(ConfigError, match=message):
        type_limits(settings, table())


def test_a_bad_registration_names_the_handler() -> None:
    with pytest.raises(ValueError, match="handler 'x': max_concurrency"):
        HandlerTable().register("x", max_concurrency=-1)
    with pytest.raises(ValueError, match="handler 'x': rate_limit"):
        HandlerTable().register("x", rate_limit="10/day")
