"""outbox_owner: which bot process holds a claimed outbox row

Revision ID: 0008
Revises: 0002
"""

from alembic import op
import sqlalchemy as sa


revision = "0008"
down_revision = "0002"
branch_labels = ("outbox_owner",)
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.add_column(sa.Column("claimed_by", sa.String(length=40), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.drop_column("claimed_by")
