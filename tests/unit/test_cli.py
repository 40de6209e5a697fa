"""The `workstream` command in this process: help, and what it prints."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pytest

from workstream import cli


def subcommands() -> list[str]:
    parser = cli.build_parser()
    [commands] = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return sorted(commands.choices)


def test_the_command_list_is_what_the_help_tests_cover() -> None:
    assert subcommands() == [
        "cancel",
        "jobs",
        "migrate",
        "pause",
        "resume",
        "retry",
        "schedules",
        "serve",
        "submit",
        "types",
    ]


@pytest.mark.parametrize("flag", ["--help", "-h"])
@pytest.mark.parametrize("command", [[], *([name] for name in subcommands())])
def test_every_help_prints_usage_and_exits_0(
    command: list[str], flag: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main([*command, flag])
    assert exited.value.code == 0
    out, err = capsys.readouterr()
    assert out.startswith("usage: workstream"), err
    assert err == ""


def test_serve_help_shows_a_percent_sign_as_written(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli.main(["serve", "--help"])
    out = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    assert "+-10%" in out and "RETRY_BACKOFF" in out


def test_the_working_directory_is_searched_after_the_installed_packages(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", ["/somewhere/site-packages"])
    cli._import_from_working_directory()
    cli._import_from_working_directory()  # once only
    assert sys.path == ["/somewhere/site-packages", str(tmp_path)]


def test_a_working_directory_already_on_the_path_is_left_where_it_is(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", ["", "/somewhere/site-packages"])  # python -m, -c
    cli._import_from_working_directory()
    assert sys.path == ["", "/somewhere/site-packages"]
