"""Issue 7: Security hardening (rate limits and the like).

Revision ID: 0019_security_hardening
Revises: 0018_export_erasure_retention
Create Date: 2026-11-24 10:00:00.000000
"""
from alembic import op
import sqlalchemy as sa

import hub.db

revision = '0019_security_hardening'
down_revision = '0018_export_erasure_retention'
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
