"""Versioned migrations, shared by the SQL stores: `migrations/<dialect>/NNNN_name.sql`."""

from __future__ import annotations

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
    """Statements of a migration file (no semicolons inside statements in our files)."""
    lines = [line for line in sql.splitlines() if not line.strip().startswith("--")]
    return [part.strip() for part in "\n".join(lines).split(";") if part.strip()]
