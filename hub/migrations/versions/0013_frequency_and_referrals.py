"""Issue 6: stamp cards, streaks, welcome and referral bonuses, engagement events: progress
per membership and rule id, vouchers a completed stamp card issues, referral codes and
referrals, engagement events. New tables only (welcome bonuses are awards).

Revision ID: 0013_frequency_and_referrals
Revises: 0012_tiers_expiry
Create Date: 2026-11-24 09:00:00.000000
"""
from alembic import op
import sqlalchemy as sa

import hub.db

revision = '0013_frequency_and_referrals'
down_revision = '0012_tiers_expiry'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('stamp_progress',
    sa.Column('membership_id', sa.Uuid(), nullable=False),
    sa.Column('card_id', sa.String(length=64), nullable=False),
    sa.Column('stamps', sa.Integer(), nullable=False),
    sa.Column('completions', sa.Integer(), nullable=False),
    sa.Column('updated_at', hub.db.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['membership_id'], ['memberships.id'], ),
    sa.PrimaryKeyConstraint('membership_id', 'card_id')
    )
    op.create_table('streak_progress',
    sa.Column('membership_id', sa.Uuid(), nullable=False),
    sa.Column('streak_id', sa.String(length=64), nullable=False),
    sa.Column('last_period', sa.Integer(), nullable=False),
    sa.Column('run', sa.Integer(), nullable=False),
    sa.Column('updated_at', hub.db.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['membership_id'], ['memberships.id'], ),
    sa.PrimaryKeyConstraint('membership_id', 'streak_id')
    )
    op.create_table('reward_vouchers',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('program_id', sa.Uuid(), nullable=False),
    sa.Column('membership_id', sa.Uuid(), nullable=False),
    sa.Column('reward_id', sa.Uuid(), nullable=False),
    sa.Column('award_id', sa.Uuid(), nullable=False),
    sa.Column('code', sa.String(length=32), nullable=False),
    sa.Column('issued_at', hub.db.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['award_id'], ['point_awards.id'], ),
    sa.ForeignKeyConstraint(['membership_id'], ['memberships.id'], ),
    sa.ForeignKeyConstraint(['program_id'], ['programs.id'], ),
    sa.ForeignKeyConstraint(['reward_id'], ['rewards.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('award_id'),
    sa.UniqueConstraint('code')
    )
    op.create_index('ix_reward_vouchers_membership', 'reward_vouchers', ['membership_id', 'issued_at'])
    op.create_table('referral_codes',
    sa.Column('membership_id', sa.Uuid(), nullable=False),
    sa.Column('program_id', sa.Uuid(), nullable=False),
    sa.Column('code', sa.String(length=16), nullable=False),
    sa.Column('created_at', hub.db.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['membership_id'], ['memberships.id'], ),
    sa.ForeignKeyConstraint(['program_id'], ['programs.id'], ),
    sa.PrimaryKeyConstraint('membership_id'),
    sa.UniqueConstraint('program_id', 'code')
    )
    op.create_table('referrals',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('program_id', sa.Uuid(), nullable=False),
    sa.Column('referrer_membership_id', sa.Uuid(), nullable=False),
    sa.Column('referee_membership_id', sa.Uuid(), nullable=False),
    sa.Column('code', sa.String(length=16), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('reason', sa.String(length=300), nullable=True),
    sa.Column('purchase_id', sa.Uuid(), nullable=True),
    sa.Column('enrolled_at', hub.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('resolved_at', hub.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('paid_at', hub.db.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['program_id'], ['programs.id'], ),
    sa.ForeignKeyConstraint(['referee_membership_id'], ['memberships.id'], ),
    sa.ForeignKeyConstraint(['referrer_membership_id'], ['memberships.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('referee_membership_id')
    )
    op.create_index('ix_referrals_referrer', 'referrals', ['referrer_membership_id', 'state', 'paid_at'])
    op.create_table('engagement_events',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('program_id', sa.Uuid(), nullable=False),
    sa.Column('membership_id', sa.Uuid(), nullable=False),
    sa.Column('event_id', sa.String(length=100), nullable=False),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('occurred_at', hub.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('local_day', sa.String(length=10), nullable=False),
    sa.Column('points', sa.BigInteger(), nullable=False),
    sa.Column('capped', sa.Boolean(), nullable=False),
    sa.Column('reason', sa.String(length=300), nullable=False),
    sa.Column('award_id', sa.Uuid(), nullable=True),
    sa.Column('client_id', sa.String(length=64), nullable=False),
    sa.Column('created_at', hub.db.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['membership_id'], ['memberships.id'], ),
    sa.ForeignKeyConstraint(['program_id'], ['programs.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('program_id', 'event_id')
    )
    op.create_index('ix_engagement_events_member_kind', 'engagement_events', ['membership_id', 'kind', 'local_day'])


def downgrade() -> None:
    op.drop_index('ix_engagement_events_member_kind', table_name='engagement_events')
    op.drop_table('engagement_events')
    op.drop_index('ix_referrals_referrer', table_name='referrals')
    op.drop_table('referrals')
    op.drop_table('referral_codes')
    op.drop_index('ix_reward_vouchers_membership', table_name='reward_vouchers')
    op.drop_table('reward_vouchers')
    op.drop_table('streak_progress')
    op.drop_table('stamp_progress')
