"""Issue 6: tiers (monthly qualification buckets, tier history, next review date) and expiry
(a breakage account per program, expiry notices sent), and rewards that require a tier.

Revision ID: 0012_tiers_expiry
Revises: 0011_rules_promotions
Create Date: 2026-11-24 09:00:00.000000
"""
from datetime import datetime, timezone

from alembic import op
import sqlalchemy as sa

import hub.db
from hub.migrations.sqlite_rebuild import sqlite_rebuild

revision = '0012_tiers_expiry'
down_revision = '0011_rules_promotions'
branch_labels = None
depends_on = None

_BIG_ID = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')


def upgrade() -> None:
    op.create_table('tier_buckets',
    sa.Column('membership_id', sa.Uuid(), nullable=False),
    sa.Column('month', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('points', sa.BigInteger(), nullable=False),
    sa.Column('spend_minor', sa.BigInteger(), nullable=False),
    sa.ForeignKeyConstraint(['membership_id'], ['memberships.id'], ),
    sa.PrimaryKeyConstraint('membership_id', 'month')
    )
    op.create_table('tier_changes',
    sa.Column('id', _BIG_ID, autoincrement=True, nullable=False),
    sa.Column('membership_id', sa.Uuid(), nullable=False),
    sa.Column('from_tier', sa.String(length=32), nullable=True),
    sa.Column('to_tier', sa.String(length=32), nullable=True),
    sa.Column('reason', sa.String(length=16), nullable=False),
    sa.Column('qualifying', sa.BigInteger(), nullable=True),
    sa.Column('at', hub.db.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['membership_id'], ['memberships.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('ix_tier_changes_membership', 'tier_changes', ['membership_id', 'id'])
    op.create_table('expiry_notices',
    sa.Column('account_id', _BIG_ID, autoincrement=False, nullable=False),
    sa.Column('expires_at', hub.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('points', sa.BigInteger(), nullable=False),
    sa.Column('sent_at', hub.db.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('account_id', 'expires_at')
    )
    op.add_column('memberships', sa.Column('tier_review_at', hub.db.UTCDateTime(timezone=True), nullable=True))
    op.create_index('ix_memberships_tier_review_at', 'memberships', ['tier_review_at'])
    op.add_column('rewards', sa.Column('min_tier', sa.String(length=32), nullable=True))
    op.add_column('programs', sa.Column('breakage_account_id', _BIG_ID, nullable=True))
    _breakage_accounts()
    with _alter('programs') as batch_op:
        batch_op.alter_column('breakage_account_id', nullable=False)
        batch_op.create_foreign_key('fk_programs_breakage_account', 'ledger_accounts', ['breakage_account_id'], ['id'])


def downgrade() -> None:
    with _alter('programs') as batch_op:
        batch_op.drop_constraint('fk_programs_breakage_account', type_='foreignkey')
        batch_op.drop_column('breakage_account_id')
    op.drop_column('rewards', 'min_tier')
    op.drop_index('ix_memberships_tier_review_at', table_name='memberships')
    op.drop_column('memberships', 'tier_review_at')
    op.drop_table('expiry_notices')
    op.drop_index('ix_tier_changes_membership', table_name='tier_changes')
    op.drop_table('tier_changes')
    op.drop_table('tier_buckets')


def _breakage_accounts() -> None:
    """Programs made before this revision: a breakage account each (a system account, as
    ledger.open_account opens them for create_program: no cached balance, no overdraft check)."""
    programs = sa.table('programs', sa.column('id', sa.Uuid()), sa.column('breakage_account_id', sa.BigInteger()))
    accounts = sa.table('ledger_accounts', sa.column('id', sa.BigInteger()), sa.column('ledger', sa.Uuid()),
                        sa.column('code', sa.String()), sa.column('cached', sa.Boolean()),
                        sa.column('no_overdraft', sa.Boolean()), sa.column('debits_pending', sa.BigInteger()),
                        sa.column('debits_posted', sa.BigInteger()), sa.column('credits_pending', sa.BigInteger()),
                        sa.column('credits_posted', sa.BigInteger()), sa.column('created_at', hub.db.UTCDateTime()))
    conn = op.get_bind()
    now = datetime.now(timezone.utc)
    for (program_id,) in conn.execute(sa.select(programs.c.id)).all():
        account_id = conn.execute(accounts.insert().returning(accounts.c.id).values(
            ledger=program_id, code='breakage', cached=False, no_overdraft=False, debits_pending=0,
            debits_posted=0, credits_pending=0, credits_posted=0, created_at=now)).scalar_one()
        conn.execute(programs.update().where(programs.c.id == program_id).values(breakage_account_id=account_id))


def _alter(table: str):
    """SQLite rebuilds the table, which other tables reference: see hub.migrations.sqlite_rebuild."""
    if op.get_bind().dialect.name == "sqlite":
        return sqlite_rebuild(table)
    return op.batch_alter_table(table)
