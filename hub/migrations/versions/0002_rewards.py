"""rewards, redemptions and the outbox

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""
from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

import hub.db
from hub.migrations.sqlite_rebuild import sqlite_rebuild

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('outbox',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('topic', sa.String(length=64), nullable=False),
    sa.Column('key', sa.String(length=100), nullable=False),
    sa.Column('payload', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('available_at', hub.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('published_at', hub.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('publish_count', sa.Integer(), nullable=False),
    sa.Column('done_at', hub.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('created_at', hub.db.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.create_index('ix_outbox_due', ['done_at', 'available_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_outbox_key'), ['key'], unique=False)

    op.create_table('provider_events',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('provider', sa.String(length=32), nullable=False),
    sa.Column('event_id', sa.String(length=200), nullable=False),
    sa.Column('received_at', hub.db.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('provider', 'event_id')
    )
    op.create_table('rewards',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('code', sa.String(length=64), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('description', sa.Text(), nullable=False),
    sa.Column('partner_id', sa.Uuid(), nullable=True),
    sa.Column('program_id', sa.Uuid(), nullable=True),
    sa.Column('price_points', sa.BigInteger(), nullable=True),
    sa.Column('price_units', hub.db.FixedDecimal(length=40), nullable=True),
    sa.Column('provider', sa.String(length=32), nullable=True),
    sa.Column('product', sa.String(length=100), nullable=True),
    sa.Column('currency', sa.String(length=3), nullable=True),
    sa.Column('denominations', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=True),
    sa.Column('min_minor', sa.BigInteger(), nullable=True),
    sa.Column('max_minor', sa.BigInteger(), nullable=True),
    sa.Column('tier', sa.String(length=32), nullable=True),
    sa.Column('stock', sa.BigInteger(), nullable=True),
    sa.Column('per_member_limit', sa.Integer(), nullable=True),
    sa.Column('available_from', hub.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('available_until', hub.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('synced_at', hub.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('created_at', hub.db.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['partner_id'], ['partners.id'], ),
    sa.ForeignKeyConstraint(['program_id'], ['programs.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('code'),
    sa.UniqueConstraint('provider', 'product')
    )
    with op.batch_alter_table('rewards', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_rewards_partner_id'), ['partner_id'], unique=False)

    op.create_table('redemptions',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('reward_id', sa.Uuid(), nullable=False),
    sa.Column('member_id', sa.Uuid(), nullable=False),
    sa.Column('program_id', sa.Uuid(), nullable=False),
    sa.Column('points', sa.BigInteger(), nullable=False),
    sa.Column('amount_minor', sa.BigInteger(), nullable=True),
    sa.Column('currency', sa.String(length=3), nullable=True),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('transfer_id', sa.BigInteger(), nullable=False),
    sa.Column('provider', sa.String(length=32), nullable=True),
    sa.Column('provider_order_id', sa.String(length=100), nullable=True),
    sa.Column('recipient_sealed', sa.Text(), nullable=True),
    sa.Column('delivery_sealed', sa.Text(), nullable=True),
    sa.Column('receipt', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=True),
    sa.Column('failure', sa.String(length=500), nullable=True),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('lease_until', hub.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('relay_deadline', hub.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('caused_by', sa.String(length=100), nullable=False),
    sa.Column('created_at', hub.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('resolved_at', hub.db.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['member_id'], ['members.id'], ),
    sa.ForeignKeyConstraint(['program_id'], ['programs.id'], ),
    sa.ForeignKeyConstraint(['reward_id'], ['rewards.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('redemptions', schema=None) as batch_op:
        batch_op.create_index('ix_redemptions_member_reward', ['member_id', 'reward_id'], unique=False)
        batch_op.create_index('ix_redemptions_program', ['program_id', 'created_at'], unique=False)

    # Every program gets a redemption account (a system account: no cached balance).
    with op.batch_alter_table('programs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('redemption_account_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True))
    conn = op.get_bind()
    accounts = sa.table(
        'ledger_accounts', sa.column('id'), sa.column('ledger', sa.Uuid()), sa.column('code'),
        sa.column('cached'), sa.column('no_overdraft'), sa.column('debits_pending'), sa.column('debits_posted'),
        sa.column('credits_pending'), sa.column('credits_posted'), sa.column('created_at', hub.db.UTCDateTime()),
    )
    programs = sa.table('programs', sa.column('id', sa.Uuid()), sa.column('redemption_account_id'))
    for (program_id,) in conn.execute(sa.select(programs.c.id)).all():
        account_id = conn.execute(
            accounts.insert().values(
                ledger=program_id, code='redemption', cached=False, no_overdraft=False, debits_pending=0,
                debits_posted=0, credits_pending=0, credits_posted=0, created_at=hub.db.utcnow(),
            ).returning(accounts.c.id)
        ).scalar_one()
        conn.execute(programs.update().where(programs.c.id == program_id).values(redemption_account_id=account_id))
    with _alter('programs') as batch_op:
        batch_op.alter_column('redemption_account_id', nullable=False)
        batch_op.create_foreign_key('fk_programs_redemption_account', 'ledger_accounts', ['redemption_account_id'], ['id'])


def downgrade() -> None:
    with _alter('programs') as batch_op:
        batch_op.drop_constraint('fk_programs_redemption_account', type_='foreignkey')
        batch_op.drop_column('redemption_account_id')

    with op.batch_alter_table('redemptions', schema=None) as batch_op:
        batch_op.drop_index('ix_redemptions_program')
        batch_op.drop_index('ix_redemptions_member_reward')

    op.drop_table('redemptions')
    with op.batch_alter_table('rewards', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_rewards_partner_id'))

    op.drop_table('rewards')
    op.drop_table('provider_events')
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_outbox_key'))
        batch_op.drop_index('ix_outbox_due')

    op.drop_table('outbox')


def _alter(table: str):
    """SQLite rebuilds the table, which other tables reference: see sqlite_rebuild."""
    if op.get_bind().dialect.name == "sqlite":
        return sqlite_rebuild(table)
    return op.batch_alter_table(table)
