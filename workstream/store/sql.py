"""Named queries kept in `.sql` files (as procrastinate keeps its own), loaded once at import.

SQL reads best, diffs best and can be tried in `psql` or `sqlite3` as it stands when it is
not scattered through Python strings. A query file is a list of sections:

    -- name: claimable
    -- Comment lines (anywhere in a section) explain it; they are not sent.
    SELECT {columns} FROM jobs WHERE status = 'pending' ... ;

- A section runs from its `-- name: <name>` line to the next one; text before the first is
  the file's header (comments only). Names are lower-case identifiers, each used once.
- Full-line `--` comments are dropped, and so is one trailing `;` (write one after each
  statement; fragments such as a column list have none).
- `{other}` where `other` names a section of the same file is replaced by that section
  (fragments shared by several queries, such as the column list). Any other `{slot}` is
  left for the caller to fill with `str.format`, for the few parts that are only known at
  run time (the filters of a listing, a timeout that `SET` cannot take as a parameter).
- Parameters are the driver's (`%s` for psycopg, so a literal `%` is written `%%`; `?` for
  sqlite3): the loader does not touch them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from importlib import resources
from types import MappingProxyType
from typing import LiteralString, cast

_NAME = re.compile(r"^--\s*name:\s*(\S+)\s*$")
_IDENTIFIER = re.compile(r"[a-z][a-z0-9_]*")
_REFERENCE = re.compile(r"\{([a-z][a-z0-9_]*)\}")


def load_queries(package: str, filename: str = "queries.sql") -> Mapping[str, LiteralString]:
    """The named queries of `filename`, a data file of `package`."""
    text = (resources.files(package) / filename).read_text(encoding="utf-8")
    return parse_queries(text, source=f"{package}/{filename}")


def parse_queries(text: str, source: str = "<queries>") -> Mapping[str, LiteralString]:
    """Name -> statement for every section of a query file (see the module docstring)."""
    raw: dict[str, list[str]] = {}
    current: list[str] | None = None
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        found = _NAME.match(stripped)
        if found:
            name = found.group(1)
            if not _IDENTIFIER.fullmatch(name):
                raise ValueError(f"{source}:{number}: {name!r} is not a lower-case identifier")
            if name in raw:
                raise ValueError(f"{source}:{number}: {name!r} is defined twice")
            current = raw[name] = []
        elif stripped.startswith("--") or not stripped:
            continue
        elif current is None:
            raise ValueError(f"{source}:{number}: SQL before the first '-- name:' line")
        else:
            current.append(line.rstrip())
    bodies = {}
    for name, lines in raw.items():
        body = "\n".join(lines).strip()
        body = body.removesuffix(";").rstrip()
        if not body:
            raise ValueError(f"{source}: {name!r} is empty")
        bodies[name] = body
    expanded: dict[str, str] = {}
    for name in bodies:
        _expand(name, bodies, expanded, (), source)
    # Our own files, shipped with the code: as trusted as string literals in it.
    return MappingProxyType(cast(dict[str, LiteralString], expanded))


def _expand(
    name: str,
    bodies: dict[str, str],
    expanded: dict[str, str],
    using: tuple[str, ...],
    source: str,
) -> str:
    """The section `name` with the sections it refers to put in place (each once)."""
    if name in expanded:
        return expanded[name]
    if name in using:
        raise ValueError(f"{source}: {' -> '.join((*using, name))} refers to itself")

    def include(found: re.Match[str]) -> str:
        other = found.group(1)
        if other not in bodies:
            return found.group(0)  # a slot for the caller
        return _expand(other, bodies, expanded, (*using, name), source)

    expanded[name] = _REFERENCE.sub(include, bodies[name])
    return expanded[name]


def list_statements(sql: Mapping[str, str]) -> dict[tuple[bool, bool], str]:
    """`list_page` for each combination of filters, built once: (status given, type
    given) -> the statement. The seq filter (`list_after`) is always there."""

    def build(status: bool, job_type: bool) -> str:
        filters = [sql["list_after"]]
        if status:
            filters.append(sql["list_status"])
        if job_type:
            filters.append(sql["list_type"])
        return sql["list_page"].format(filters=" AND ".join(filters))

    return {(s, t): build(s, t) for s in (False, True) for t in (False, True)}
