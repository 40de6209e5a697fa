"""Versioned migrations, shared by the SQL stores: `migrations/<dialect>/NNNN_name.sql`."""

from __future__ import annotations

import re
from importlib import resources


def load_migrations(dialect: str) -> list[tuple[int, str, str]]:
    """(version, name, sql) for every `NNNN_name.sql` of a dialect, in order."""
    folder = resources.files("workstream.store") / "migrations" / dialect
    found = []
    for entry in folder.iterdir():
        if entry.name.endswith(".sql"):
            version = int(entry.name.split("_", 1)[0])
            found.append((version, entry.name, entry.read_text(encoding="utf-8")))
    return sorted(found)


def split_sql(sql: str) -> list[str]:
    """Statements of a migration file. No semicolons inside statements in our files, but
    for the body of a `CREATE TRIGGER ... BEGIN ...; END`, kept whole."""
    lines = [line for line in sql.splitlines() if not line.strip().startswith("--")]
    statements: list[str] = []
    current = ""
    for part in "\n".join(lines).split(";"):
        current = f"{current};{part}" if current else part.strip()
        if _TRIGGER.match(current) and not _END.search(current):
            continue  # inside a trigger's body
        if current.strip():
            statements.append(current.strip())
        current = ""
    if current.strip():
        statements.append(current.strip())
    return statements


_TRIGGER = re.compile(r"\s*CREATE\s+TRIGGER\b", re.IGNORECASE)
_END = re.compile(r"\bEND\s*$", re.IGNORECASE)
