"""Bringing a database's schema up to date: the versioned files of
`workstream/store/migrations/sqlite/`, each applied once, in order, in a transaction of its
own (the lock file already keeps other processes out)."""

from __future__ import annotations

import logging
import sqlite3

from workstream.store.schema import load_migrations, split_sql
from workstream.store.sqlite.queries import SQL

log = logging.getLogger(__package__)  # the package's logger: its name is in every log line


def migrate(conn: sqlite3.Connection) -> list[int]:
    """Apply the migrations this database has not seen; their versions."""
    conn.execute(SQL["create_schema_migrations"])
    done = {row[0] for row in conn.execute(SQL["applied_migrations"])}
    applied = []
    for version, name, sql in load_migrations("sqlite"):
        if version in done:
            continue
        conn.execute(SQL["begin_immediate"])
        try:
            for statement in split_sql(sql):
                conn.execute(statement)
            conn.execute(SQL["record_migration"], (version, name))
            conn.execute(SQL["commit"])
        except BaseException:
            conn.execute(SQL["rollback"])
            raise
        log.info("migration applied", extra={"event": "migration_applied", "version": name})
        applied.append(version)
    return applied
