"""Issue 7: Consent-gated sharing between partners, per purpose.

Revision ID: 0017_sharing_consents
Revises: 0016_encryption_at_rest
Create Date: 2026-11-24 10:00:00.000000
"""
from alembic import op
import sqlalchemy as sa

import hub.db

revision = '0017_sharing_consents'
down_revision = '0016_encryption_at_rest'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('sharing_consents',
    sa.Column('member_id', sa.Uuid(), nullable=False),
    sa.Column('partner_id', sa.Uuid(), nullable=False),
    sa.Column('purpose', sa.String(length=32), nullable=False),
    sa.Column('granted_at', hub.db.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['member_id'], ['members.id'], ),
    sa.ForeignKeyConstraint(['partner_id'], ['partners.id'], ),
    sa.PrimaryKeyConstraint('member_id', 'partner_id', 'purpose')
    )
    op.create_table('sharing_consent_events',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('member_id', sa.Uuid(), nullable=False),
    sa.Column('partner_id', sa.Uuid(), nullable=False),
    sa.Column('purpose', sa.String(length=32), nullable=False),
    sa.Column('action', sa.String(length=8), nullable=False),
    sa.Column('channel', sa.String(length=16), nullable=False),
    sa.Column('by', sa.String(length=120), nullable=False),
    sa.Column('client_id', sa.String(length=64), nullable=True),
    sa.Column('at', hub.db.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['member_id'], ['members.id'], ),
    sa.ForeignKeyConstraint(['partner_id'], ['partners.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('ix_sharing_consent_events_member_id', 'sharing_consent_events', ['member_id'])


def downgrade() -> None:
    op.drop_index('ix_sharing_consent_events_member_id', table_name='sharing_consent_events')
    op.drop_table('sharing_consent_events')
    op.drop_table('sharing_consents')
