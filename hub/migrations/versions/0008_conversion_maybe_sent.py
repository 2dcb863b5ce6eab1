"""Conversions: remote_maybe_sent, the saga's sticky "the remote leg may have been sent" flag.

Existing rows get false, except conversions that may already have sent their remote leg
(attempts made, not failed): the saga before this revision kept no such record, and a pending
or needs_review conversion with attempts may have had an answer lost (UNKNOWN), so it must
never be compensated without a person. A pending one whose attempts all got RETRY is flagged
too (it then ends in review rather than failed): the history cannot tell it apart.

Both dialects add and drop the column in place (ALTER TABLE; SQLite >= 3.35, which the hub
needs for RETURNING anyway): no copy of the table, so no sqlite_rebuild. SQLite's ADD COLUMN
takes a constant default only, hence '0' there (BOOLEAN has numeric affinity: stored as 0);
an expression default would make Alembic's batch mode copy the table.

Revision ID: 0008_conversion_maybe_sent
Revises: 0007_conversions
Create Date: 2026-12-02 09:00:00.000000
"""
from alembic import op
import sqlalchemy as sa

revision = '0008_conversion_maybe_sent'
down_revision = '0007_conversions'
branch_labels = None
depends_on = None


def upgrade() -> None:
    false = sa.false() if op.get_context().dialect.name == 'postgresql' else '0'
    op.add_column('conversions', sa.Column('remote_maybe_sent', sa.Boolean(), server_default=false, nullable=False))
    conversions = sa.table('conversions', sa.column('hosted_side', sa.String()), sa.column('attempts', sa.Integer()),
                           sa.column('state', sa.String()), sa.column('remote_maybe_sent', sa.Boolean()))
    op.execute(conversions.update()
               .where(conversions.c.hosted_side.is_not(None), conversions.c.attempts > 0,
                      conversions.c.state != 'failed')
               .values(remote_maybe_sent=True))


def downgrade() -> None:
    op.drop_column('conversions', 'remote_maybe_sent')
