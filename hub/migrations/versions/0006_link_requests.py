"""Account linking: link requests and their one-time codes (hub/identity/linking.py).

Revision ID: 0006_link_requests
Revises: 0005_oidc
Create Date: 2026-11-26 09:00:00.000000
"""
from alembic import op
import sqlalchemy as sa

import hub.db

revision = '0006_link_requests'
down_revision = '0005_oidc'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('link_requests',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('account_id', sa.Uuid(), nullable=False),
    sa.Column('program_id', sa.Uuid(), nullable=False),
    sa.Column('membership_id', sa.Uuid(), nullable=True),
    sa.Column('from_member_id', sa.Uuid(), nullable=True),
    sa.Column('code_hash', sa.String(length=64), nullable=True),
    sa.Column('attempts', sa.BigInteger(), nullable=False),
    sa.Column('expires_at', hub.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('used_at', hub.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('created_at', hub.db.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['account_id'], ['member_accounts.id'], ),
    sa.ForeignKeyConstraint(['membership_id'], ['memberships.id'], ),
    sa.ForeignKeyConstraint(['program_id'], ['programs.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('link_requests', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_link_requests_account_id'), ['account_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('link_requests', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_link_requests_account_id'))
    op.drop_table('link_requests')
