"""Issue 8: observability. The outbox keeps the id of the request that wrote each message, so
that the task it becomes (and that task's provider or webhook call) logs the same id.

Revision ID: 0020_request_ids
Revises: 0019_erasure_followups
Create Date: 2026-11-24 11:00:00.000000
"""
from alembic import op
import sqlalchemy as sa

revision = '0020_request_ids'
down_revision = '0019_erasure_followups'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("outbox") as batch:
        batch.add_column(sa.Column("request_id", sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("outbox") as batch:
        batch.drop_column("request_id")
