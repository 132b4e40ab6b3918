"""A node's vote may be a signed one, posted to the vault's ballot box: `node_votes.tx_hash` may be empty (the vote
went in another node's `decide`) and `signature_hash` names the signed vote.

Rows made before are direct votes: their `tx_hash` stays, `signature_hash` is empty.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

TABLE = "node_votes"


def upgrade() -> None:
    with op.batch_alter_table(TABLE) as table:
        table.alter_column("tx_hash", existing_type=sa.String(66), nullable=True)
        table.add_column(sa.Column("signature_hash", sa.String(66), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table(TABLE) as table:
        table.drop_column("signature_hash")
        table.alter_column("tx_hash", existing_type=sa.String(66), nullable=False)
