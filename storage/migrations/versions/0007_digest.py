"""digest: weekly digest deliveries and coordinator-entered denominators

Revision ID: 0007
Revises: 0002
"""

from alembic import op
import sqlalchemy as sa


revision = "0007"
down_revision = "0002"
branch_labels = ("digest",)
depends_on = None


def upgrade() -> None:
    op.create_table(
        "digest_deliveries",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("member_id", sa.Integer(), nullable=False),
        sa.Column("municipality_id", sa.Integer(), nullable=True),
        sa.Column("region", sa.String(length=200), nullable=True),
        sa.Column("week", sa.String(length=10), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["member_id"], ["members.id"], name=op.f("fk_digest_deliveries_member_id_members"),
                                ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["municipality_id"], ["municipalities.id"],
                                name=op.f("fk_digest_deliveries_municipality_id_municipalities")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_digest_deliveries")),
        sa.UniqueConstraint("member_id", "week", name=op.f("uq_digest_deliveries_member_id")),
    )
    op.create_table(
        "digest_targets",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("municipality_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=64), nullable=False),
        sa.Column("value", sa.Integer(), nullable=False),
        sa.Column("entered_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("entered_by", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(["entered_by"], ["members.id"], name=op.f("fk_digest_targets_entered_by_members"),
                                ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["municipality_id"], ["municipalities.id"],
                                name=op.f("fk_digest_targets_municipality_id_municipalities")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_digest_targets")),
    )
    with op.batch_alter_table("digest_targets", schema=None) as batch_op:
        batch_op.create_index("ix_digest_targets_municipality_kind", ["municipality_id", "kind", "entered_at"],
                              unique=False)


def downgrade() -> None:
    with op.batch_alter_table("digest_targets", schema=None) as batch_op:
        batch_op.drop_index("ix_digest_targets_municipality_kind")
    op.drop_table("digest_targets")
    op.drop_table("digest_deliveries")
