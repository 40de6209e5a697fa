"""SQLite storage: the embedded default, one process per database file.

The same shape as the PostgreSQL package, smaller:

- `store.py`: `SqliteStore`, the lock file, the writer and the per-thread readers.
- `transaction.py`: `SqliteTransaction`, one group commit under `BEGIN IMMEDIATE`.
- `migrator.py`: applying `workstream/store/migrations/sqlite/`.
- `codec.py`: jobs to rows and back.
- `errors.py`: what a client may be told about a sqlite3 failure.

SQL lives in `queries.sql`, one `-- name: <name>` section per statement, read once at
import by `workstream.store.sql.load_queries` into `queries.SQL`; code refers to statements
by name. Parts known only at run time (a listing's optional filters, an IN-list's length, a
PRAGMA's value) are named fragments or `{slots}` put together in Python where they are used.
"""

from __future__ import annotations

from workstream.store.sqlite.queries import SQL
from workstream.store.sqlite.store import SqliteStore
from workstream.store.sqlite.transaction import SqliteTransaction

COLUMNS = SQL["columns"]  # a job's columns in row order (the benchmarks seed with it)

__all__ = ["COLUMNS", "SqliteStore", "SqliteTransaction"]
