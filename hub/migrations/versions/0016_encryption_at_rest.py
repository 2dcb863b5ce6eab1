"""Issue 7: Encryption at rest: envelope keys, sealed contact details and blind indexes.

Revision ID: 0016_encryption_at_rest
Revises: 0015_partner_webhooks
Create Date: 2026-11-24 10:00:00.000000
"""
from alembic import op
import sqlalchemy as sa

import hub.db

revision = '0016_encryption_at_rest'
down_revision = '0015_partner_webhooks'
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
