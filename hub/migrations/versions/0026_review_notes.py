"""Review notes: ops' reasons for settling a redemption or conversion in review, sealed
(hub/audit/review_notes.py).

Conversions resolved before this revision hold the resolution in `failure`, which partners
read: "resolved by <by>: the partner's <leg> applied|not applied (<reason>); in review for:
<failure>". Each moves into a review note (who, the rest as the reason, what put it in review),
sealed with the keys of the environment that runs the upgrade (as in 0019: HUB_SECRET_KEY,
HUB_DATA_KEYS, HUB_INDEX_KEY, which must be the hub's own); its `failure` becomes what
hub.exchange.saga.resolve writes now. A database without such conversions needs no keys.

Revision ID: 0026_review_notes
Revises: 0025_ops_console
Create Date: 2026-11-24 16:00:00.000000
"""
import uuid

from alembic import op
import sqlalchemy as sa

import hub.db

revision = '0026_review_notes'
down_revision = '0025_ops_console'
branch_labels = None
depends_on = None

_LEGACY = "resolved by "
_IN_REVIEW_FOR = "; in review for: "
# hub.exchange.saga.NOT_APPLIED_AFTER_REVIEW, as of this revision.
_NOT_APPLIED_AFTER_REVIEW = "not applied at the partner, after review"
_conversions = sa.table('conversions', sa.column('id', sa.Uuid()), sa.column('state', sa.String()),
                        sa.column('failure', sa.Text()), sa.column('created_at', hub.db.UTCDateTime()),
                        sa.column('resolved_at', hub.db.UTCDateTime()))
_notes = sa.table('review_notes', sa.column('id', sa.Uuid()), sa.column('subject_kind', sa.String()),
                  sa.column('subject_id', sa.Uuid()), sa.column('action', sa.String()),
                  sa.column('actor', sa.String()), sa.column('reason', sa.Text()),
                  sa.column('in_review_for', sa.Text()), sa.column('created_at', hub.db.UTCDateTime()))


def upgrade() -> None:
    op.create_table('review_notes',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('subject_kind', sa.String(length=16), nullable=False),
    sa.Column('subject_id', sa.Uuid(), nullable=False),
    sa.Column('action', sa.String(length=16), nullable=False),
    sa.Column('actor', sa.String(length=200), nullable=False),
    sa.Column('reason', sa.Text(), nullable=True),
    sa.Column('in_review_for', sa.Text(), nullable=True),
    sa.Column('created_at', hub.db.UTCDateTime(timezone=True), nullable=False),
    sa.CheckConstraint("subject_kind IN ('redemption', 'conversion')", name='review_note_subject_kind'),
    sa.CheckConstraint("action IN ('refund', 'mark_fulfilled', 'applied', 'not_applied', 'requeue')",
                       name='review_note_action'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('review_notes', schema=None) as batch_op:
        batch_op.create_index('ix_review_notes_subject', ['subject_kind', 'subject_id', 'created_at'], unique=False)
    _move_resolutions()


def _move_resolutions() -> None:
    """Each resolved conversion's resolution text, from its `failure` to a sealed note."""
    conn = op.get_bind()
    c = _conversions.c
    rows = [row for row in conn.execute(sa.select(c.id, c.state, c.failure, c.resolved_at, c.created_at)
                                        .where(c.state.in_(('completed', 'failed')),
                                               c.failure.like(_LEGACY + '%')))
            if row.failure.startswith(_LEGACY)]  # LIKE's '_' matches any character
    if not rows:
        return
    from hub.privacy import keyring

    ring = keyring.for_migration(conn)

    def sealed(column: str, text: str) -> str | None:
        return ring.seal(f'review_notes.{column}', text.encode()) if text else None

    for row in rows:
        # "<by>: <said>[; in review for: <prior>]"; an actor never holds ": " (ops:<id>, cli).
        by, _, rest = row.failure[len(_LEGACY):].partition(': ')
        said, _, prior = rest.partition(_IN_REVIEW_FOR)
        completed = row.state == 'completed'
        conn.execute(sa.insert(_notes).values(
            id=uuid.uuid4(), subject_kind='conversion', subject_id=row.id,
            action='applied' if completed else 'not_applied', actor=by[:200],
            reason=sealed('reason', said), in_review_for=sealed('in_review_for', prior),
            created_at=row.resolved_at or row.created_at))
        conn.execute(sa.update(_conversions).where(c.id == row.id)
                     .values(failure=None if completed else _NOT_APPLIED_AFTER_REVIEW))


def downgrade() -> None:
    # The moved resolutions are not written back into `failure` (partners would read them): they
    # go with the table.
    with op.batch_alter_table('review_notes', schema=None) as batch_op:
        batch_op.drop_index('ix_review_notes_subject')
    op.drop_table('review_notes')
