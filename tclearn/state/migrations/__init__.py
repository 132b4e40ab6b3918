"""Alembic migrations of every tclearn table, run by `tclearn.state.migrate` (no alembic.ini needed)."""
