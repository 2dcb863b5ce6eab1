"""Issue 7: erasure follow-ups (review): stored replies linked to the members they name, closed
ledger accounts, member-transfer notes out of the immutable ledger.

Existing notes move from ledger_transfers.metadata to member_transfers.note, sealed with the
keys of the environment that runs the upgrade (as in 0016: HUB_SECRET_KEY, HUB_DATA_KEYS,
HUB_INDEX_KEY, which must be the hub's own); a database without notes needs none. The replies
stored before this revision are not linked: they expire with retention (7 days).

Revision ID: 0019_erasure_followups
Revises: 0018_export_erasure_retention
Create Date: 2026-11-24 10:00:00.000000
"""

from alembic import op
import sqlalchemy as sa

revision = '0019_erasure_followups'
down_revision = '0018_export_erasure_retention'
branch_labels = None
depends_on = None

_NOTE = 'member_transfers.note'  # the purpose of the Sealed column: its name
_NOTES = sa.text(
    "SELECT t.id, l.id, l.metadata FROM member_transfers AS t JOIN ledger_transfers AS l ON l.id = t.transfer_id"
    " WHERE l.metadata IS NOT NULL"
)


def upgrade() -> None:
    op.create_table('idempotency_key_members',
    sa.Column('key_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('member_id', sa.Uuid(), nullable=False),
    sa.ForeignKeyConstraint(['key_id'], ['idempotency_keys.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('key_id', 'member_id')
    )
    op.create_index(op.f('ix_idempotency_key_members_member_id'), 'idempotency_key_members', ['member_id'],
                    unique=False)
    with op.batch_alter_table('ledger_accounts') as batch_op:
        batch_op.add_column(sa.Column('closed', sa.Boolean(), server_default=sa.false(), nullable=False))
    with op.batch_alter_table('member_transfers') as batch_op:
        batch_op.add_column(sa.Column('note', sa.Text(), nullable=True))
    _move_notes()


def _move_notes() -> None:
    """member_transfers.note (sealed) from the ledger's metadata, which then holds none."""
    conn = op.get_bind()
    rows = conn.execute(_NOTES).all()
    if not rows:
        return
    import json

    from hub.privacy import keyring

    ring = keyring.for_migration(conn)
    for transfer_id, ledger_id, meta in rows:
        note = (json.loads(meta) if isinstance(meta, str) else meta).get('note')
        if note:
            conn.execute(sa.text("UPDATE member_transfers SET note = :n WHERE id = :i"),
                         {"n": ring.seal(_NOTE, note.encode()), "i": transfer_id})
        conn.execute(sa.text("UPDATE ledger_transfers SET metadata = NULL WHERE id = :i"), {"i": ledger_id})


def downgrade() -> None:
    # The notes stay where erasure can clear them: they are not copied back into the ledger.
    with op.batch_alter_table('member_transfers') as batch_op:
        batch_op.drop_column('note')
    with op.batch_alter_table('ledger_accounts') as batch_op:
        batch_op.drop_column('closed')
    op.drop_index(op.f('ix_idempotency_key_members_member_id'), table_name='idempotency_key_members')
    op.drop_table('idempotency_key_members')
