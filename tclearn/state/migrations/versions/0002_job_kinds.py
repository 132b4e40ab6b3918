"""The member service's jobs get a kind (train, finetune) and a result (a fine-tuning job's record, JSON).

Rows made before are training jobs: `kind` defaults to 'train' on the server, `result` is empty.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

TABLE = "member_train_jobs"


def upgrade() -> None:
    with op.batch_alter_table(TABLE) as table:
        table.add_column(sa.Column("kind", sa.String(16), nullable=False, server_default="train"))
        table.add_column(sa.Column("result", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table(TABLE) as table:
        table.drop_column("result")
        table.drop_column("kind")
