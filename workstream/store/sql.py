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
from collections.abc import Callable, Mapping
from importlib import resources
from types import MappingProxyType
from typing import Any, LiteralString, cast

from workstream.jobs.listing import JobFilter

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


def listing_filters(
    query: JobFilter, sql: Mapping[str, str], text: Callable[[str], str] = str
) -> tuple[list[str], list[Any]]:
    """The `list_*` fragments (queries.sql) of `query`'s position and of the filters both SQL
    stores write alike (status, type, time range, idempotency key), with their parameters in
    order. `text` encodes a text parameter as the store keeps it. The id prefix and the
    error text are each store's own (their indexes differ)."""
    parts: list[str] = []
    params: list[Any] = []
    if query.after is not None:
        parts.append(sql["list_before" if query.newest_first else "list_after"])
        params += [float(query.after[0]), int(query.after[1])]
    if query.status is not None:
        parts.append(sql["list_status"])
        params.append(query.status.value)
    if query.job_type is not None:
        parts.append(sql["list_type"])
        params.append(text(query.job_type))
    if query.created_after is not None:
        parts.append(sql["list_created_after"])
        params.append(query.created_after)
    if query.created_before is not None:
        parts.append(sql["list_created_before"])
        params.append(query.created_before)
    if query.idempotency_key is not None:
        parts.append(sql["list_idempotency_key"])
        params.append(text(query.idempotency_key))
    return parts, params


def prefix_range(prefix: str) -> tuple[str, str]:
    """[low, high): the strings that start with `prefix`, in code point order."""
    return prefix, prefix[:-1] + chr(ord(prefix[-1]) + 1)


def like_pattern(text: str) -> str:
    """A LIKE pattern for `text` anywhere in the value (`\\` escapes `%`, `_` and itself)."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"
