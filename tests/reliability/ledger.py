"""Reading the probe's ledger and the database, the two records the checker joins."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

# Ledger outcomes that mean the handler itself failed its attempt (a retry is expected).
FAILED_OUTCOMES = frozenset({"raised", "system_exit", "hang_returned"})


@dataclass(frozen=True)
class Entry:
    """One ledger line: `started` (end None) or how the attempt ended."""

    job_id: str
    attempt: int
    pid: int
    start: float
    end: float | None
    outcome: str


def read_ledger(path: Path) -> list[Entry]:
    if not path.exists():
        return []
    entries = []
    for line in path.read_text().splitlines():
        if line.strip():
            entries.append(Entry(**json.loads(line)))
    return entries


JOB_COLUMNS = (
    "id, type, payload, status, attempts, retry_base, max_retries, last_error, run_at, "
    "owner, lease_expires_at"
)


def sqlite_path(database_url: str) -> Path:
    """`sqlite:////abs/path` or `sqlite:///rel/path` -> the file."""
    if not database_url.startswith("sqlite:///"):
        raise ValueError(f"not a SQLite URL: {database_url!r}")
    return Path(database_url.removeprefix("sqlite:///"))


def read_jobs(database_url: str) -> list[dict[str, Any]]:
    """Every job row, straight from the database (the server may be down). SQLite is read
    with sqlite3; PostgreSQL with psycopg and the same columns, for the PostgreSQL
    scenarios to come."""
    scheme = urlparse(database_url).scheme
    if scheme == "sqlite":
        conn = sqlite3.connect(f"file:{sqlite_path(database_url)}?mode=ro", uri=True, timeout=30)
        try:
            cursor = conn.execute(f"SELECT {JOB_COLUMNS} FROM jobs")
            names = [column[0] for column in cursor.description]
            rows = [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
        finally:
            conn.close()
    elif scheme in ("postgresql", "postgres"):
        import psycopg  # only for the PostgreSQL scenarios

        with psycopg.connect(database_url) as conn:
            cursor = conn.execute(f"SELECT {JOB_COLUMNS} FROM jobs")
            names = [column.name for column in cursor.description]
            rows = [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
    else:
        raise ValueError(f"unsupported DATABASE_URL scheme {scheme!r}")
    for row in rows:
        payload = row["payload"]
        row["payload"] = json.loads(payload) if isinstance(payload, str) else payload
        for key in ("run_at", "lease_expires_at"):
            value = row[key]
            if value is not None and not isinstance(value, int | float):
                row[key] = value.timestamp()  # PostgreSQL timestamps
    return rows


def integrity_check(database_url: str) -> str:
    conn = sqlite3.connect(sqlite_path(database_url), timeout=30)
    try:
        return conn.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        conn.close()
