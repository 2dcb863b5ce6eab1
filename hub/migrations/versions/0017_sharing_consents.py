"""Issue 7: Consent-gated sharing between partners, per purpose.

Revision ID: 0017_sharing_consents
Revises: 0016_encryption_at_rest
Create Date: 2026-11-24 10:00:00.000000
"""
from alembic import op
import sqlalchemy as sa

import hub.db

revision = '0017_sharing_consents'
down_revision = '0016_encryption_at_rest'
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
