"""inbox_reply: the reply an update produced, kept in its journal row until it is sent

Revision ID: 0012
Revises: 0001
"""

from alembic import op
import sqlalchemy as sa


revision = "0012"
down_revision = "0001"
branch_labels = ("inbox_reply",)
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("inbox") as batch:
        batch.add_column(sa.Column("reply", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("inbox") as batch:
        batch.drop_column("reply")
