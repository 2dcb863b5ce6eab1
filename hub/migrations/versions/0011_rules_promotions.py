"""Issue 6: rating rules and promotions: the counters a rating takes points from (a rule's
per-member cap in a period; a promotion's budget, in stripes so earns rarely wait on each
other).

Revision ID: 0011_rules_promotions
Revises: 0010_loyalty_core
Create Date: 2026-11-24 09:00:00.000000
"""
from alembic import op
import sqlalchemy as sa

revision = '0011_rules_promotions'
down_revision = '0010_loyalty_core'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('rating_cap_counters',
    sa.Column('membership_id', sa.Uuid(), nullable=False),
    sa.Column('rule_id', sa.String(length=64), nullable=False),
    sa.Column('period', sa.String(length=16), nullable=False),
    sa.Column('used', sa.BigInteger(), nullable=False),
    sa.Column('cap', sa.BigInteger(), nullable=False),
    sa.Column('granted', sa.BigInteger(), nullable=False),
    sa.ForeignKeyConstraint(['membership_id'], ['memberships.id'], ),
    sa.PrimaryKeyConstraint('membership_id', 'rule_id', 'period')
    )
    op.create_table('promotion_budget_stripes',
    sa.Column('program_id', sa.Uuid(), nullable=False),
    sa.Column('promotion_id', sa.String(length=64), nullable=False),
    sa.Column('stripe', sa.SmallInteger(), nullable=False),
    sa.Column('remaining', sa.BigInteger(), nullable=False),
    sa.Column('granted', sa.BigInteger(), nullable=False),
    sa.ForeignKeyConstraint(['program_id'], ['programs.id'], ),
    sa.PrimaryKeyConstraint('program_id', 'promotion_id', 'stripe')
    )


def downgrade() -> None:
    op.drop_table('promotion_budget_stripes')
    op.drop_table('rating_cap_counters')
