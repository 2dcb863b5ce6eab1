"""Issue 7: Member data export, erasure and retention.

Revision ID: 0018_export_erasure_retention
Revises: 0017_sharing_consents
Create Date: 2026-11-24 10:00:00.000000
"""
from alembic import op
import sqlalchemy as sa

import hub.db

revision = '0018_export_erasure_retention'
down_revision = '0017_sharing_consents'
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
