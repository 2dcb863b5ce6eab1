"""Issue 7: Member data export, erasure and retention.

Revision ID: 0018_export_erasure_retention
Revises: 0017_sharing_consents
Create Date: 2026-11-24 10:00:00.000000
"""
from alembic import op
import sqlalchemy as sa

import hub.db

revision = '0018_export_erasure_retention'
down_revision = '0017_sharing_consents'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('member_erasures',
    sa.Column('member_id', sa.Uuid(), nullable=False),
    sa.Column('caused_by', sa.String(length=120), nullable=False),
    sa.Column('forfeited', hub.db.JSONDoc, nullable=False),
    sa.Column('erased_at', hub.db.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['member_id'], ['members.id'], ),
    sa.PrimaryKeyConstraint('member_id')
    )


def downgrade() -> None:
    op.drop_table('member_erasures')
