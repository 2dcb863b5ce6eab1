"""Redemptions: maybe_placed, the reward relay's sticky "the order may have been placed" flag.

Existing rows get false, except provider redemptions still open (pending or needs_review)
that made an attempt: the relay before this revision kept no such record, and such an order
may have had a place_order answer lost (UNKNOWN), so it must never be voided without a
person. A pending one whose place_order calls all got RETRY is flagged too (it then ends in
review rather than failed): the history cannot tell it apart. Settled ones (fulfilled,
failed) are never relayed again, so their flag says nothing and stays false.

As 0008: both dialects add and drop the column in place (ALTER TABLE; SQLite >= 3.35, which
the hub needs for RETURNING anyway): no copy of the table, so no sqlite_rebuild. SQLite's ADD
COLUMN takes a constant default only, hence '0' there (BOOLEAN has numeric affinity: stored
as 0); an expression default would make Alembic's batch mode copy the table.

Revision ID: 0009_redemption_maybe_placed
Revises: 0008_conversion_maybe_sent
Create Date: 2026-12-03 09:00:00.000000
"""
from alembic import op
import sqlalchemy as sa

revision = '0009_redemption_maybe_placed'
down_revision = '0008_conversion_maybe_sent'
branch_labels = None
depends_on = None


def upgrade() -> None:
    false = sa.false() if op.get_context().dialect.name == 'postgresql' else '0'
    op.add_column('redemptions', sa.Column('maybe_placed', sa.Boolean(), server_default=false, nullable=False))
    redemptions = sa.table('redemptions', sa.column('provider', sa.String()), sa.column('attempts', sa.Integer()),
                           sa.column('state', sa.String()), sa.column('maybe_placed', sa.Boolean()))
    op.execute(redemptions.update()
               .where(redemptions.c.provider.is_not(None), redemptions.c.attempts > 0,
                      redemptions.c.state.in_(('pending', 'needs_review')))
               .values(maybe_placed=True))


def downgrade() -> None:
    op.drop_column('redemptions', 'maybe_placed')
