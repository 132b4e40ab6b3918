"""Every table tclearn kept when migrations began (the shared replay store's seen nonces among them).

A database made before then by `create_all` holds some of these tables (only those of the modules its
process had imported) and no `alembic_version`: this revision creates only the tables that are missing, so
such a database is adopted as it is and ends at this revision like a new one.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def _tables() -> dict[str, tuple[list[sa.Column[Any]], list[str]]]:
    """Each table: its columns and its indexed columns (indexes named `ix_<table>_<column>`, as SQLAlchemy does)."""
    return {
        "event_cursors": (
            [
                sa.Column("name", sa.String(200), primary_key=True),
                sa.Column("chain_id", sa.BigInteger(), nullable=False),
                sa.Column("contract", sa.String(42), nullable=False),
                sa.Column("block", sa.Integer(), nullable=False),
                sa.Column("log_index", sa.Integer(), nullable=False),
            ],
            [],
        ),
        "followed_events": (
            [
                sa.Column("reader", sa.String(200), primary_key=True),
                sa.Column("block", sa.Integer(), primary_key=True),
                sa.Column("log_index", sa.Integer(), primary_key=True),
                sa.Column("name", sa.String(64), nullable=False),
                sa.Column("args", sa.Text(), nullable=False),
                sa.Column("tx_hash", sa.String(66), nullable=False),
            ],
            [],
        ),
        "vault_access_log": (
            [
                sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
                sa.Column("at", sa.Float(), nullable=False),
                sa.Column("account", sa.String(64), nullable=False),
                sa.Column("action", sa.String(16), nullable=False),
                sa.Column("sha256", sa.String(64), nullable=False),
                sa.Column("size", sa.BigInteger(), nullable=False),
            ],
            ["at", "account", "sha256"],
        ),
        "he_supervisor_log": (
            [
                sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
                sa.Column("at", sa.Float(), nullable=False),
                sa.Column("account", sa.String(64), nullable=False),
                sa.Column("action", sa.String(16), nullable=False),
                sa.Column("model", sa.String(64), nullable=False),
                sa.Column("context", sa.String(64), nullable=False),
                sa.Column("values", sa.Integer(), nullable=False),
            ],
            ["at", "account", "model"],
        ),
        "member_train_jobs": (
            [
                sa.Column("id", sa.String(32), primary_key=True),
                sa.Column("owner", sa.String(42), nullable=False),
                sa.Column("state", sa.String(16), nullable=False),
                sa.Column("phase", sa.String(16), nullable=False),
                sa.Column("progress", sa.Float(), nullable=False),
                sa.Column("created_at", sa.Float(), nullable=False),
                sa.Column("started_at", sa.Float(), nullable=True),
                sa.Column("finished_at", sa.Float(), nullable=True),
                sa.Column("model_id", sa.Integer(), nullable=True),
                sa.Column("model_hash", sa.String(64), nullable=True),
                sa.Column("error", sa.Text(), nullable=True),
                sa.Column("timings", sa.Text(), nullable=False),
            ],
            ["owner"],
        ),
        "node_candidates": (
            [
                sa.Column("node", sa.String(42), primary_key=True),
                sa.Column("model_id", sa.Integer(), primary_key=True),
                sa.Column("settled", sa.Boolean(), nullable=False),
            ],
            [],
        ),
        "node_votes": (
            [
                sa.Column("node", sa.String(42), primary_key=True),
                sa.Column("model_id", sa.Integer(), primary_key=True),
                sa.Column("approve", sa.Boolean(), nullable=False),
                sa.Column("tx_hash", sa.String(66), nullable=False),
                sa.Column("at", sa.DateTime(timezone=True), nullable=False),
            ],
            [],
        ),
        "signed_request_nonces": (
            [
                sa.Column("address", sa.String(42), primary_key=True),
                sa.Column("nonce", sa.String(64), primary_key=True),
                sa.Column("expires_at", sa.Float(), nullable=False),
            ],
            ["expires_at"],
        ),
    }


def upgrade() -> None:
    present = set(sa.inspect(op.get_bind()).get_table_names())
    for name, (columns, indexed) in _tables().items():
        if name in present:
            continue
        op.create_table(name, *columns)
        for column in indexed:
            op.create_index(f"ix_{name}_{column}", name, [column])


def downgrade() -> None:
    for name in reversed(list(_tables())):
        op.drop_table(name)
