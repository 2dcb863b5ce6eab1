"""Review notes: ops' reasons for settling a redemption or conversion in review, sealed
(hub/exchange/review_notes.py).

Revision ID: 0026_review_notes
Revises: 0025_ops_console
Create Date: 2026-11-24 16:00:00.000000
"""
from alembic import op
import sqlalchemy as sa

import hub.db

revision = '0026_review_notes'
down_revision = '0025_ops_console'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('review_notes',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('subject_kind', sa.String(length=16), nullable=False),
    sa.Column('subject_id', sa.Uuid(), nullable=False),
    sa.Column('action', sa.String(length=16), nullable=False),
    sa.Column('actor', sa.String(length=200), nullable=False),
    sa.Column('reason', sa.Text(), nullable=True),
    sa.Column('created_at', hub.db.UTCDateTime(timezone=True), nullable=False),
    sa.CheckConstraint("subject_kind IN ('redemption', 'conversion')", name='review_note_subject_kind'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('review_notes', schema=None) as batch_op:
        batch_op.create_index('ix_review_notes_subject', ['subject_kind', 'subject_id', 'created_at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('review_notes', schema=None) as batch_op:
        batch_op.drop_index('ix_review_notes_subject')
    op.drop_table('review_notes')
