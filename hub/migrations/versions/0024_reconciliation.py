"""Issue 9, reconciliation: provider report imports, their lines and exceptions.

Revision ID: 0024_reconciliation
Revises: 0023_settlement
Create Date: 2026-11-24 09:00:00.000000
"""
from alembic import op
import sqlalchemy as sa

import hub.db

revision = '0024_reconciliation'
down_revision = '0023_settlement'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('reconciliation_runs',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('provider', sa.String(length=32), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('period_start', hub.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('period_end', hub.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('report_lines', sa.Integer(), nullable=False),
    sa.Column('matched', sa.Integer(), nullable=False),
    sa.Column('missing_in_hub', sa.Integer(), nullable=False),
    sa.Column('missing_at_provider', sa.Integer(), nullable=False),
    sa.Column('amount_mismatch', sa.Integer(), nullable=False),
    sa.Column('status_mismatch', sa.Integer(), nullable=False),
    sa.Column('created_by', sa.String(length=200), nullable=False),
    sa.Column('created_at', hub.db.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('provider', 'sha256')
    )
    op.create_index('ix_reconciliation_runs_created', 'reconciliation_runs', ['created_at', 'id'])
    op.create_table('reconciliation_lines',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('run_id', sa.Uuid(), nullable=False),
    sa.Column('outcome', sa.String(length=24), nullable=False),
    sa.Column('reference', sa.String(length=100), nullable=False),
    sa.Column('line_no', sa.Integer(), nullable=True),
    sa.Column('provider_order_id', sa.String(length=100), nullable=True),
    sa.Column('provider_amount_minor', sa.BigInteger(), nullable=True),
    sa.Column('provider_currency', sa.String(length=3), nullable=True),
    sa.Column('provider_status', sa.String(length=16), nullable=True),
    sa.Column('occurred_at', hub.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('redemption_id', sa.Uuid(), nullable=True),
    sa.Column('hub_amount_minor', sa.BigInteger(), nullable=True),
    sa.Column('hub_currency', sa.String(length=3), nullable=True),
    sa.Column('hub_state', sa.String(length=16), nullable=True),
    sa.ForeignKeyConstraint(['redemption_id'], ['redemptions.id'], ),
    sa.ForeignKeyConstraint(['run_id'], ['reconciliation_runs.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index(op.f('ix_reconciliation_lines_run_id'), 'reconciliation_lines', ['run_id'])
    op.create_index(op.f('ix_reconciliation_lines_redemption_id'), 'reconciliation_lines', ['redemption_id'])
    op.create_table('reconciliation_exceptions',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('run_id', sa.Uuid(), nullable=False),
    sa.Column('line_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('kind', sa.String(length=24), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('resolution', sa.String(length=24), nullable=True),
    sa.Column('reason', sa.Text(), nullable=True),
    sa.Column('resolved_by', sa.String(length=200), nullable=True),
    sa.Column('resolved_at', hub.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('created_at', hub.db.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['line_id'], ['reconciliation_lines.id'], ),
    sa.ForeignKeyConstraint(['run_id'], ['reconciliation_runs.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('line_id')
    )
    op.create_index(op.f('ix_reconciliation_exceptions_run_id'), 'reconciliation_exceptions', ['run_id'])
    op.create_index('ix_reconciliation_exceptions_status', 'reconciliation_exceptions',
                    ['status', 'created_at', 'id'])


def downgrade() -> None:
    op.drop_index('ix_reconciliation_exceptions_status', table_name='reconciliation_exceptions')
    op.drop_index(op.f('ix_reconciliation_exceptions_run_id'), table_name='reconciliation_exceptions')
    op.drop_table('reconciliation_exceptions')
    op.drop_index(op.f('ix_reconciliation_lines_redemption_id'), table_name='reconciliation_lines')
    op.drop_index(op.f('ix_reconciliation_lines_run_id'), table_name='reconciliation_lines')
    op.drop_table('reconciliation_lines')
    op.drop_index('ix_reconciliation_runs_created', table_name='reconciliation_runs')
    op.drop_table('reconciliation_runs')
