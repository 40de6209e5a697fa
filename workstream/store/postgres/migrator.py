"""Bringing a database's schema up to date: the versioned files of
`workstream/store/migrations/postgres/`, each applied once, in order, in a transaction of its
own, under an advisory lock so that nodes starting together do not race."""

from __future__ import annotations

import logging
from typing import LiteralString, cast

from workstream.store.postgres.connections import Connection, ms
from workstream.store.postgres.queries import SQL
from workstream.store.schema import load_migrations, split_sql

log = logging.getLogger(__package__)  # the package's logger: its name is in every log line

# A transaction-scoped advisory lock key (per database); admission has the next one.
MIGRATION_LOCK = 0x57530002


def migrate(conn: Connection, timeout: float) -> list[int]:
    """Apply the migrations this database has not seen; their versions. Each statement and
    each lock wait is bounded by `timeout` seconds."""
    applied = []
    for version, name, sql in load_migrations("postgres"):
        with conn.transaction():
            _preamble(conn, timeout)
            if conn.execute(SQL["migration_applied"], (version,)).fetchone():
                continue
            for statement in split_sql(sql):
                conn.execute(cast(LiteralString, statement))  # our own files: trusted SQL
            conn.execute(SQL["record_migration"], (version, name))
        log.info("migration applied", extra={"event": "migration_applied", "version": name})
        applied.append(version)
    return applied


def _preamble(conn: Connection, timeout: float) -> None:
    """Bounds, the lock, and the table that records what was applied."""
    bound = ms(timeout)
    conn.execute(SQL["migration_statement_timeout"].format(timeout=bound))
    conn.execute(SQL["migration_lock_timeout"].format(timeout=bound))
    conn.execute(SQL["advisory_lock"], (MIGRATION_LOCK,))
    conn.execute(SQL["create_schema_migrations"])
