"""The store's SQL, read once from `queries.sql` beside this module (see store/sql.py)."""

from __future__ import annotations

from workstream.store.sql import load_queries

SQL = load_queries("workstream.store.sqlite")
