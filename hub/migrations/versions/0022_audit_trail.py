"""Issue 9: the audit trail (hub/audit): hash-chained entries and the head of the chain.

The entries are append-only in the database too: triggers refuse UPDATE and DELETE (and, on
PostgreSQL, TRUNCATE), so no code path and no slip of an operator's hand can change one. Whoever
owns the tables can drop the triggers; `hub audit verify` (and its --expect anchor) sees that.

Revision ID: 0022_audit_trail
Revises: 0021_fold_member_sharing
Create Date: 2026-11-24 09:00:00.000000
"""
from alembic import op
import sqlalchemy as sa

import hub.db

revision = '0022_audit_trail'
down_revision = '0021_fold_member_sharing'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'audit_entries',
        sa.Column('seq', sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column('at', hub.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column('actor', sa.String(length=200), nullable=False),
        sa.Column('action', sa.String(length=64), nullable=False),
        sa.Column('target', sa.String(length=200), nullable=False),
        sa.Column('before', hub.db.JSONDoc, nullable=True),
        sa.Column('after', hub.db.JSONDoc, nullable=True),
        sa.Column('prev_hash', sa.String(length=64), nullable=False),
        sa.Column('hash', sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint('seq', name=op.f('pk_audit_entries')),
    )
    op.create_index(op.f('ix_audit_entries_action'), 'audit_entries', ['action'], unique=False)
    op.create_table(
        'audit_head',
        sa.Column('id', sa.Integer(), autoincrement=False, nullable=False),
        sa.Column('seq', sa.BigInteger(), nullable=False),
        sa.Column('hash', sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_audit_head')),
    )
    op.bulk_insert(sa.table('audit_head', sa.column('id', sa.Integer()), sa.column('seq', sa.BigInteger()),
                            sa.column('hash', sa.String())),
                   [{'id': 1, 'seq': 0, 'hash': '0' * 64}])
    for statement in _APPEND_ONLY[op.get_bind().dialect.name]:
        op.execute(statement)


_REFUSED = "audit_entries is append-only"
_APPEND_ONLY = {
    "postgresql": [
        "CREATE FUNCTION audit_entries_append_only() RETURNS trigger LANGUAGE plpgsql AS "
        f"$$ BEGIN RAISE EXCEPTION '{_REFUSED}'; END $$",
        "CREATE TRIGGER audit_entries_append_only BEFORE UPDATE OR DELETE ON audit_entries "
        "FOR EACH ROW EXECUTE FUNCTION audit_entries_append_only()",
        "CREATE TRIGGER audit_entries_no_truncate BEFORE TRUNCATE ON audit_entries "
        "FOR EACH STATEMENT EXECUTE FUNCTION audit_entries_append_only()",
    ],
    "sqlite": [
        f"CREATE TRIGGER audit_entries_no_update BEFORE UPDATE ON audit_entries BEGIN SELECT RAISE(ABORT, '{_REFUSED}'); END",
        f"CREATE TRIGGER audit_entries_no_delete BEFORE DELETE ON audit_entries BEGIN SELECT RAISE(ABORT, '{_REFUSED}'); END",
    ],
}
_DROP = {
    "postgresql": ["DROP TRIGGER audit_entries_no_truncate ON audit_entries",
                   "DROP TRIGGER audit_entries_append_only ON audit_entries",
                   "DROP FUNCTION audit_entries_append_only()"],
    "sqlite": ["DROP TRIGGER audit_entries_no_update", "DROP TRIGGER audit_entries_no_delete"],
}


def downgrade() -> None:
    for statement in _DROP[op.get_bind().dialect.name]:
        op.execute(statement)
    op.drop_table('audit_head')
    op.drop_index(op.f('ix_audit_entries_action'), table_name='audit_entries')
    op.drop_table('audit_entries')
