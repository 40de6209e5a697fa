"""PostgreSQL storage: several WorkStream nodes share one database (SPEC section 6).

One noun per module:

- `store.py`: `PostgresStore`, the node's connections (a writer, a read pool, a listener)
  and what each is for.
- `transaction.py`: `PostgresTransaction`, one group commit in as few round trips as it
  can take (pipelining, held rows, admission).
- `connections.py`: how a connection is made, and the bounds on every wait.
- `listener.py`: LISTEN/NOTIFY wake-ups from other nodes.
- `migrator.py`: applying `workstream/store/migrations/postgres/`.
- `codec.py`: jobs to rows and back (NUL in text columns).
- `errors.py`: which psycopg failures are outages, and what a client may be told.

SQL lives in `queries.sql`, one `-- name: <name>` section per statement (as procrastinate's
`sql/queries.sql`), read once at import by `workstream.store.sql.load_queries` into
`queries.SQL`; code refers to statements by name. Parts known only at run time (a listing's
optional filters, the NOTIFY token, a migration's timeout) are named fragments or `{slots}`
put together in Python where they are used. psycopg and psycopg_pool are imported in this
package only.
"""

from __future__ import annotations

from workstream.store.postgres.errors import describe_url
from workstream.store.postgres.store import PostgresStore
from workstream.store.postgres.transaction import ADMISSION_LOCK, PostgresTransaction

__all__ = ["ADMISSION_LOCK", "PostgresStore", "PostgresTransaction", "describe_url"]
