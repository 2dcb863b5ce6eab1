"""Issue 9, settlement: program prices, periods, statements and their lines (hub/settlement).

Revision ID: 0023_settlement
Revises: 0022_audit_trail
Create Date: 2026-11-24 09:00:00.000000
"""
from alembic import op
import sqlalchemy as sa

import hub.db

revision = '0023_settlement'
down_revision = '0022_audit_trail'
branch_labels = None
depends_on = None


_BIG_ID = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')


def upgrade() -> None:
    op.create_table(
        'program_prices',
        sa.Column('id', _BIG_ID, autoincrement=True, nullable=False),
        sa.Column('program_id', sa.Uuid(), nullable=False),
        sa.Column('effective_from', hub.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column('currency', sa.String(length=3), nullable=False),
        sa.Column('per_point_minor', hub.db.FixedDecimal(), nullable=False),
        sa.Column('issuance_fee_bps', sa.Integer(), nullable=False),
        sa.Column('created_by', sa.String(length=120), nullable=False),
        sa.Column('created_at', hub.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['program_id'], ['programs.id'], name=op.f('fk_program_prices_program_id_programs')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_program_prices')),
        sa.UniqueConstraint('program_id', 'effective_from', name=op.f('uq_program_prices_program_id')),
    )
    op.create_table(
        'settlement_periods',
        sa.Column('period', sa.String(length=7), nullable=False),
        sa.Column('starts_at', hub.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column('ends_at', hub.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column('through_id', sa.BigInteger(), nullable=False),
        sa.Column('closed_by', sa.String(length=120), nullable=False),
        sa.Column('closed_at', hub.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('period', name=op.f('pk_settlement_periods')),
    )
    op.create_table(
        'settlement_statements',
        sa.Column('id', sa.Uuid(), nullable=False),
        sa.Column('period', sa.String(length=7), nullable=False),
        sa.Column('party_kind', sa.String(length=16), nullable=False),
        sa.Column('party', sa.String(length=64), nullable=False),
        sa.Column('partner_id', sa.Uuid(), nullable=True),
        sa.Column('currency', sa.String(length=3), nullable=False),
        sa.Column('net_due_minor', sa.BigInteger(), nullable=False),
        sa.Column('digest', sa.String(length=64), nullable=False),
        sa.Column('created_at', hub.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['partner_id'], ['partners.id'], name=op.f('fk_settlement_statements_partner_id_partners')),
        sa.ForeignKeyConstraint(['period'], ['settlement_periods.period'], name=op.f('fk_settlement_statements_period_settlement_periods')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_settlement_statements')),
        sa.UniqueConstraint('period', 'party_kind', 'party', 'currency', name=op.f('uq_settlement_statements_period')),
    )
    op.create_index(op.f('ix_settlement_statements_partner_id'), 'settlement_statements', ['partner_id'], unique=False)
    op.create_index(op.f('ix_settlement_statements_period'), 'settlement_statements', ['period'], unique=False)
    op.create_table(
        'settlement_lines',
        sa.Column('id', _BIG_ID, autoincrement=True, nullable=False),
        sa.Column('statement_id', sa.Uuid(), nullable=False),
        sa.Column('position', sa.Integer(), nullable=False),
        sa.Column('category', sa.String(length=32), nullable=False),
        sa.Column('program_id', sa.Uuid(), nullable=True),
        sa.Column('points', sa.BigInteger(), nullable=True),
        sa.Column('count', sa.BigInteger(), nullable=False),
        sa.Column('amount_minor', sa.BigInteger(), nullable=False),
        sa.Column('detail', hub.db.JSONDoc, nullable=True),
        sa.ForeignKeyConstraint(['program_id'], ['programs.id'], name=op.f('fk_settlement_lines_program_id_programs')),
        sa.ForeignKeyConstraint(['statement_id'], ['settlement_statements.id'], name=op.f('fk_settlement_lines_statement_id_settlement_statements')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_settlement_lines')),
    )
    op.create_index(op.f('ix_settlement_lines_statement_id'), 'settlement_lines', ['statement_id'], unique=False)
    # A period's rows are found by creation time (hub.settlement.statements); one more index
    # entry per transfer on the earn path.
    op.create_index('ix_ledger_transfers_created_at', 'ledger_transfers', ['created_at'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_ledger_transfers_created_at', table_name='ledger_transfers')
    op.drop_index(op.f('ix_settlement_lines_statement_id'), table_name='settlement_lines')
    op.drop_table('settlement_lines')
    op.drop_index(op.f('ix_settlement_statements_period'), table_name='settlement_statements')
    op.drop_index(op.f('ix_settlement_statements_partner_id'), table_name='settlement_statements')
    op.drop_table('settlement_statements')
    op.drop_table('settlement_periods')
    op.drop_table('program_prices')
