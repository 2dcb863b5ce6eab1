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
    pass


def downgrade() -> None:
    pass
