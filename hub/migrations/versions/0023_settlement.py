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


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
