"""The named-query loader both SQL stores read their `queries.sql` with
(workstream/store/sql.py), and the files they ship: every query loads, and every name in
a file is one its store uses."""

from __future__ import annotations

import re
from importlib import resources

import pytest

from workstream.store.sql import load_queries, parse_queries

STORE_PACKAGES = ("workstream.store.postgres", "workstream.store.sqlite")


def test_sections_are_named_and_their_comments_and_final_semicolon_dropped():
    queries = parse_queries(
        """
        -- The file's header: comments only.

        -- name: ping
        -- What it is for.
        SELECT 1;

        -- name: two_lines
        SELECT a
        -- a comment between lines
        FROM b
        """
    )
    assert dict(queries) == {"ping": "SELECT 1", "two_lines": "SELECT a\n        FROM b"}


def test_a_reference_to_another_section_is_replaced_and_other_braces_are_left():
    queries = parse_queries(
        """
        -- name: get
        SELECT {columns} FROM jobs WHERE {filters};
        -- name: columns
        {first}, b
        -- name: first
        a
        """
    )
    assert queries["get"] == "SELECT a, b FROM jobs WHERE {filters}"
    assert queries["columns"] == "a, b"


def test_the_result_cannot_be_changed():
    queries = parse_queries("-- name: ping\nSELECT 1")
    with pytest.raises(TypeError):
        queries["ping"] = "DROP TABLE jobs"  # type: ignore[index]


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        ("SELECT 1\n-- name: ping\nSELECT 1", "before the first"),
        ("-- name: ping\nSELECT 1\n-- name: ping\nSELECT 2", "defined twice"),
        ("-- name: Ping\nSELECT 1", "not a lower-case identifier"),
        ("-- name: ping\n-- nothing but a comment\n;", "empty"),
        ("-- name: a\n{b}\n-- name: b\n{a}", "a -> b -> a refers to itself"),
    ],
)
def test_a_malformed_file_is_refused_at_load(text, complaint):
    with pytest.raises(ValueError, match=complaint):
        parse_queries(text, source="bad.sql")


@pytest.mark.parametrize("package", STORE_PACKAGES)
def test_every_shipped_query_is_used_by_its_store(package):
    """No dead SQL: each name appears, quoted, in the package's code or is a fragment that
    another section includes."""
    queries = load_queries(package)
    folder = resources.files(package)
    code = "".join(
        entry.read_text(encoding="utf-8")
        for entry in folder.iterdir()
        if entry.name.endswith(".py")
    )
    code += resources.files("workstream.store").joinpath("sql.py").read_text(encoding="utf-8")
    raw = (folder / "queries.sql").read_text(encoding="utf-8")
    included = set(re.findall(r"\{([a-z_]+)\}", raw))
    unused = [name for name in queries if f'"{name}"' not in code and name not in included]
    assert unused == []
