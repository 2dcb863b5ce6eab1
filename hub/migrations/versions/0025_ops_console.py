"""Issue 9, the ops console: ops users with roles and their sessions (hub/web/ops).

Revision ID: 0025_ops_console
Revises: 0024_reconciliation
Create Date: 2026-11-24 09:00:00.000000
"""
from alembic import op
import sqlalchemy as sa

import hub.db

revision = '0025_ops_console'
down_revision = '0024_reconciliation'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('ops_users',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('email', sa.Text(), nullable=False),
    sa.Column('email_index', sa.String(length=64), nullable=False),
    sa.Column('password_hash', sa.String(length=200), nullable=False),
    sa.Column('password_changed_at', hub.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('totp_secret_sealed', sa.Text(), nullable=False),
    sa.Column('totp_last_step', sa.BigInteger(), nullable=True),
    sa.Column('role', sa.String(length=16), nullable=False),
    sa.Column('partner_id', sa.Uuid(), nullable=True),
    sa.Column('created_at', hub.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('disabled_at', hub.db.UTCDateTime(timezone=True), nullable=True),
    sa.CheckConstraint("(role = 'partner_admin') = (partner_id IS NOT NULL)", name='partner_of_partner_admin'),
    sa.ForeignKeyConstraint(['partner_id'], ['partners.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('email_index', name='uq_ops_users_email_index')
    )
    with op.batch_alter_table('ops_users', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_ops_users_partner_id'), ['partner_id'], unique=False)

    op.create_table('ops_sessions',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('user_id', sa.Uuid(), nullable=False),
    sa.Column('token_hash', sa.String(length=64), nullable=False),
    sa.Column('created_at', hub.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('last_seen_at', hub.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('expires_at', hub.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('ended_at', hub.db.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['user_id'], ['ops_users.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('token_hash')
    )
    with op.batch_alter_table('ops_sessions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_ops_sessions_user_id'), ['user_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('ops_sessions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_ops_sessions_user_id'))
    op.drop_table('ops_sessions')
    with op.batch_alter_table('ops_users', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_ops_users_partner_id'))
    op.drop_table('ops_users')
