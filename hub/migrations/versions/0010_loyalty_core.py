"""Loyalty rules, the shared core (issue 6): versioned rule documents per program, awards
(bonus points granted once per cause), partners' segments and who is in them, a member's tier on their membership, and on each
purchase its channel, lines, and the rule version and rating that gave its points.

Every column added is nullable, so both dialects add them in place (ALTER TABLE ADD COLUMN).

Revision ID: 0010_loyalty_core
Revises: 0009_redemption_maybe_placed
Create Date: 2026-11-24 09:00:00.000000
"""
from alembic import op
import sqlalchemy as sa

import hub.db

revision = '0010_loyalty_core'
down_revision = '0009_redemption_maybe_placed'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('program_rule_versions',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('program_id', sa.Uuid(), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('effective_from', hub.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('document', hub.db.JSONDoc, nullable=False),
    sa.Column('created_by', sa.String(length=120), nullable=False),
    sa.Column('created_at', hub.db.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['program_id'], ['programs.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('program_id', 'version')
    )
    op.create_index('ix_program_rule_versions_effective', 'program_rule_versions', ['program_id', 'effective_from'])
    op.create_table('point_awards',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('program_id', sa.Uuid(), nullable=False),
    sa.Column('membership_id', sa.Uuid(), nullable=False),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('key', sa.String(length=200), nullable=False),
    sa.Column('points', sa.BigInteger(), nullable=False),
    sa.Column('reason', sa.String(length=300), nullable=False),
    sa.Column('transfer_id', hub.db.BigId, nullable=True),
    sa.Column('caused_by', sa.String(length=120), nullable=False),
    sa.Column('created_at', hub.db.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['membership_id'], ['memberships.id'], ),
    sa.ForeignKeyConstraint(['program_id'], ['programs.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('program_id', 'kind', 'key')
    )
    op.create_index('ix_point_awards_membership', 'point_awards', ['membership_id', 'created_at'])
    op.create_table('segments',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('partner_id', sa.Uuid(), nullable=False),
    sa.Column('code', sa.String(length=32), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('definition', hub.db.JSONDoc, nullable=False),
    sa.Column('refreshed_at', hub.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('created_at', hub.db.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['partner_id'], ['partners.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('partner_id', 'code')
    )
    op.create_table('segment_members',
    sa.Column('segment_id', sa.Uuid(), nullable=False),
    sa.Column('member_id', sa.Uuid(), nullable=False),
    sa.Column('since', hub.db.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['member_id'], ['members.id'], ),
    sa.ForeignKeyConstraint(['segment_id'], ['segments.id'], ),
    sa.PrimaryKeyConstraint('segment_id', 'member_id')
    )
    op.create_index('ix_segment_members_member_id', 'segment_members', ['member_id'])
    op.add_column('memberships', sa.Column('tier', sa.String(length=32), nullable=True))
    op.add_column('memberships', sa.Column('tier_since', hub.db.UTCDateTime(timezone=True), nullable=True))
    op.add_column('point_transactions', sa.Column('channel', sa.String(length=16), nullable=True))
    op.add_column('point_transactions', sa.Column('items', hub.db.JSONDoc, nullable=True))
    op.add_column('point_transactions', sa.Column('rule_version', sa.Integer(), nullable=True))
    op.add_column('point_transactions', sa.Column('rating', hub.db.JSONDoc, nullable=True))


def downgrade() -> None:
    for column in ('rating', 'rule_version', 'items', 'channel'):
        op.drop_column('point_transactions', column)
    op.drop_column('memberships', 'tier_since')
    op.drop_column('memberships', 'tier')
    op.drop_index('ix_segment_members_member_id', table_name='segment_members')
    op.drop_table('segment_members')
    op.drop_table('segments')
    op.drop_index('ix_point_awards_membership', table_name='point_awards')
    op.drop_table('point_awards')
    op.drop_index('ix_program_rule_versions_effective', table_name='program_rule_versions')
    op.drop_table('program_rule_versions')
