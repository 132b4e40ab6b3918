"""Alembic's entry point: runs the revisions on the connection `tclearn.state.migrate` hands over.

The caller opens the transaction (and takes the lock that keeps two processes from migrating at once), so
Alembic only runs the revisions inside it. Offline (SQL script) mode is not offered.
"""

from __future__ import annotations

from alembic import context

connection = context.config.attributes.get("connection")
if connection is None or context.is_offline_mode():
    raise RuntimeError("tclearn migrations run through tclearn.state.migrate.upgrade (or `tclearn db upgrade`)")

context.configure(connection=connection)
with context.begin_transaction():
    context.run_migrations()
