"""Issue 6: partner webhook endpoints, events, deliveries and their attempts (Standard
Webhooks; hub/notify/webhook_models.py).

Revision ID: 0015_partner_webhooks
Revises: 0014_challenges_segments_offers
Create Date: 2026-11-24 09:00:00.000000
"""
from alembic import op
import sqlalchemy as sa

import hub.db

revision = '0015_partner_webhooks'
down_revision = '0014_challenges_segments_offers'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('webhook_endpoints',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('partner_id', sa.Uuid(), nullable=False),
    sa.Column('url', sa.String(length=2000), nullable=False),
    sa.Column('description', sa.String(length=200), nullable=True),
    sa.Column('event_types', hub.db.JSONDoc, nullable=False),
    sa.Column('secret_sealed', sa.Text(), nullable=False),
    sa.Column('previous_secret_sealed', sa.Text(), nullable=True),
    sa.Column('previous_secret_until', hub.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('created_by', sa.String(length=120), nullable=False),
    sa.Column('created_at', hub.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('disabled_at', hub.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('disabled_reason', sa.String(length=200), nullable=True),
    sa.ForeignKeyConstraint(['partner_id'], ['partners.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('ix_webhook_endpoints_partner', 'webhook_endpoints', ['partner_id', 'created_at'])
    op.create_table('webhook_events',
    sa.Column('id', sa.String(length=40), nullable=False),
    sa.Column('partner_id', sa.Uuid(), nullable=False),
    sa.Column('type', sa.String(length=64), nullable=False),
    sa.Column('data', hub.db.JSONDoc, nullable=False),
    sa.Column('created_at', hub.db.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['partner_id'], ['partners.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_table('webhook_deliveries',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('event_id', sa.String(length=40), nullable=False),
    sa.Column('endpoint_id', sa.Uuid(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('max_attempts', sa.Integer(), nullable=False),
    sa.Column('lease_until', hub.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('next_attempt_at', hub.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('last_status_code', sa.Integer(), nullable=True),
    sa.Column('last_error', sa.String(length=300), nullable=True),
    sa.Column('created_at', hub.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('finished_at', hub.db.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['endpoint_id'], ['webhook_endpoints.id'], ),
    sa.ForeignKeyConstraint(['event_id'], ['webhook_events.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('ix_webhook_deliveries_endpoint', 'webhook_deliveries', ['endpoint_id', 'created_at'])
    op.create_index('ix_webhook_deliveries_endpoint_status', 'webhook_deliveries', ['endpoint_id', 'status'])
    op.create_table('webhook_attempts',
    sa.Column('id', hub.db.BigId, autoincrement=True, nullable=False),
    sa.Column('delivery_id', sa.Uuid(), nullable=False),
    sa.Column('attempted_at', hub.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('status_code', sa.Integer(), nullable=True),
    sa.Column('duration_ms', sa.Integer(), nullable=False),
    sa.Column('error', sa.String(length=300), nullable=True),
    sa.ForeignKeyConstraint(['delivery_id'], ['webhook_deliveries.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('ix_webhook_attempts_delivery', 'webhook_attempts', ['delivery_id', 'id'])


def downgrade() -> None:
    op.drop_index('ix_webhook_attempts_delivery', table_name='webhook_attempts')
    op.drop_table('webhook_attempts')
    op.drop_index('ix_webhook_deliveries_endpoint_status', table_name='webhook_deliveries')
    op.drop_index('ix_webhook_deliveries_endpoint', table_name='webhook_deliveries')
    op.drop_table('webhook_deliveries')
    op.drop_table('webhook_events')
    op.drop_index('ix_webhook_endpoints_partner', table_name='webhook_endpoints')
    op.drop_table('webhook_endpoints')
