"""linking: one-time codes that link a second channel's account to a member

Revision ID: 0006
Revises: 0002
Create Date: 2026-11-26
"""

from alembic import op
import sqlalchemy as sa


revision = '0006'
down_revision = '0002'
branch_labels = ('linking',)
depends_on = None


def upgrade() -> None:
    op.create_table('link_codes',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('code_hash', sa.String(length=64), nullable=False),
    sa.Column('member_id', sa.Integer(), nullable=False),
    sa.Column('issued_by', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('used_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('used_by', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['issued_by'], ['accounts.id'], name=op.f('fk_link_codes_issued_by_accounts'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['member_id'], ['members.id'], name=op.f('fk_link_codes_member_id_members'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['used_by'], ['accounts.id'], name=op.f('fk_link_codes_used_by_accounts'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_link_codes')),
    sa.UniqueConstraint('code_hash', name=op.f('uq_link_codes_code_hash'))
    )
    with op.batch_alter_table('link_codes', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_link_codes_expires_at'), ['expires_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_link_codes_issued_by'), ['issued_by'], unique=False)
        batch_op.create_index(batch_op.f('ix_link_codes_member_id'), ['member_id'], unique=False)

    op.create_table('link_attempts',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('transport', sa.String(length=16), nullable=False),
    sa.Column('external_id', sa.String(length=64), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_link_attempts'))
    )
    with op.batch_alter_table('link_attempts', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_link_attempts_at'), ['at'], unique=False)
        batch_op.create_index(batch_op.f('ix_link_attempts_external_id'), ['external_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('link_attempts', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_link_attempts_external_id'))
        batch_op.drop_index(batch_op.f('ix_link_attempts_at'))

    op.drop_table('link_attempts')
    with op.batch_alter_table('link_codes', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_link_codes_member_id'))
        batch_op.drop_index(batch_op.f('ix_link_codes_issued_by'))
        batch_op.drop_index(batch_op.f('ix_link_codes_expires_at'))

    op.drop_table('link_codes')
