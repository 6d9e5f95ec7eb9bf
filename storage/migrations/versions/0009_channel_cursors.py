"""channel_cursors: how far an intake has read a channel (VK's long-poll ts)

Revision ID: 0009
Revises: 0002
"""

from alembic import op
import sqlalchemy as sa


revision = "0009"
down_revision = "0002"
branch_labels = ("channel_cursors",)
depends_on = None


def upgrade() -> None:
    op.create_table(
        "channel_cursors",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("position", sa.String(length=64), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_channel_cursors")),
    )


def downgrade() -> None:
    op.drop_table("channel_cursors")
