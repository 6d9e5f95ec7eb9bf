"""conversation_version: a version per dialog state, checked when an update saves it

Revision ID: 0011
Revises: 0001
"""

from alembic import op
import sqlalchemy as sa


revision = "0011"
down_revision = "0001"
branch_labels = ("conversation_version",)
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("conversations") as batch:
        batch.add_column(sa.Column("version", sa.Integer(), server_default="0", nullable=False))


def downgrade() -> None:
    with op.batch_alter_table("conversations") as batch:
        batch.drop_column("version")
