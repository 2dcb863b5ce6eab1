"""Issue 6: challenges and badges, and what members share for personalised offers (their
attributes and whether partners may use them). Segments' tables came with 0010.

Revision ID: 0014_challenges_segments_offers
Revises: 0013_frequency_and_referrals
Create Date: 2026-11-24 09:00:00.000000
"""
from alembic import op
import sqlalchemy as sa

import hub.db

revision = '0014_challenges_segments_offers'
down_revision = '0013_frequency_and_referrals'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('challenges',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('code', sa.String(length=32), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('description', sa.Text(), nullable=False),
    sa.Column('starts_at', hub.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('ends_at', hub.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('goal', hub.db.JSONDoc, nullable=False),
    sa.Column('badge_code', sa.String(length=32), nullable=False),
    sa.Column('badge_name', sa.String(length=200), nullable=False),
    sa.Column('bonus_program_id', sa.Uuid(), nullable=False),
    sa.Column('bonus_points', sa.BigInteger(), nullable=False),
    sa.Column('created_by', sa.String(length=120), nullable=False),
    sa.Column('created_at', hub.db.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['bonus_program_id'], ['programs.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('code')
    )
    op.create_index('ix_challenges_ends_at', 'challenges', ['ends_at'])
    op.create_table('challenge_entrants',
    sa.Column('challenge_id', sa.Uuid(), nullable=False),
    sa.Column('member_id', sa.Uuid(), nullable=False),
    sa.Column('entered_at', hub.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('checked_at', hub.db.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['challenge_id'], ['challenges.id'], ),
    sa.ForeignKeyConstraint(['member_id'], ['members.id'], ),
    sa.PrimaryKeyConstraint('challenge_id', 'member_id')
    )
    op.create_index('ix_challenge_entrants_member_id', 'challenge_entrants', ['member_id'])
    op.create_table('member_badges',
    sa.Column('member_id', sa.Uuid(), nullable=False),
    sa.Column('challenge_id', sa.Uuid(), nullable=False),
    sa.Column('badge_code', sa.String(length=32), nullable=False),
    sa.Column('badge_name', sa.String(length=200), nullable=False),
    sa.Column('award_id', sa.Uuid(), nullable=True),
    sa.Column('bonus_points', sa.BigInteger(), nullable=False),
    sa.Column('note', sa.String(length=300), nullable=True),
    sa.Column('awarded_at', hub.db.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['challenge_id'], ['challenges.id'], ),
    sa.ForeignKeyConstraint(['member_id'], ['members.id'], ),
    sa.PrimaryKeyConstraint('member_id', 'challenge_id')
    )
    op.create_table('member_attributes',
    sa.Column('member_id', sa.Uuid(), nullable=False),
    sa.Column('name', sa.String(length=32), nullable=False),
    sa.Column('value', sa.String(length=100), nullable=False),
    sa.ForeignKeyConstraint(['member_id'], ['members.id'], ),
    sa.PrimaryKeyConstraint('member_id', 'name', 'value')
    )
    op.create_index('ix_member_attributes_value', 'member_attributes', ['name', 'value'])
    op.create_table('member_sharing',
    sa.Column('member_id', sa.Uuid(), nullable=False),
    sa.Column('attributes', sa.Boolean(), nullable=False),
    sa.Column('programs', sa.Boolean(), nullable=False),
    sa.Column('updated_at', hub.db.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['member_id'], ['members.id'], ),
    sa.PrimaryKeyConstraint('member_id')
    )


def downgrade() -> None:
    op.drop_table('member_sharing')
    op.drop_index('ix_member_attributes_value', table_name='member_attributes')
    op.drop_table('member_attributes')
    op.drop_table('member_badges')
    op.drop_index('ix_challenge_entrants_member_id', table_name='challenge_entrants')
    op.drop_table('challenge_entrants')
    op.drop_index('ix_challenges_ends_at', table_name='challenges')
    op.drop_table('challenges')
