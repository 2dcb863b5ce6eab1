"""no foreign keys that lock a hot row on every earn

Every earn inserts a transfer whose debit account is its program's issuance account, and a
point_transactions row of its program. With foreign keys, PostgreSQL checks each by locking
the referenced row FOR KEY SHARE: the program's issuance account and the program itself, one
row each locked by every concurrent earn of the program (design rule 8: no hot rows). Each
lock writes WAL, and a row locked by several transactions at once needs a new MultiXact for
every further locker; in bench/earn.py that was half of PostgreSQL's CPU per batched purchase.
The member's own account and membership are not shared, so their foreign keys stay.

What the dropped keys enforced is checked where the rows are written (ledger.service:
both accounts of a transfer exist and are on its ledger; earning: the program is read in the
same transaction) and proved for every stored row by `hub ledger verify`. Accounts and
programs are never deleted.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24
"""
from alembic import op

from hub.migrations.sqlite_rebuild import sqlite_rebuild

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None

# table -> {column: (referred table, PostgreSQL's name for the unnamed constraint of 0001)}
DROPPED = {
    "ledger_transfers": {
        "debit_account_id": ("ledger_accounts", "ledger_transfers_debit_account_id_fkey"),
        "credit_account_id": ("ledger_accounts", "ledger_transfers_credit_account_id_fkey"),
    },
    "point_transactions": {
        "program_id": ("programs", "point_transactions_program_id_fkey"),
    },
}
# SQLite keeps no constraint names: the batch rebuild names the reflected foreign keys so.
SQLITE_CONVENTION = {"fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s"}


def _sqlite_name(table: str, column: str, referred: str) -> str:
    return f"fk_{table}_{column}_{referred}"


def upgrade() -> None:
    postgresql = op.get_bind().dialect.name == "postgresql"
    for table, columns in DROPPED.items():
        if postgresql:
            for referred, name in columns.values():
                op.drop_constraint(name, table, type_="foreignkey")
            continue
        with sqlite_rebuild(table, SQLITE_CONVENTION) as batch_op:
            for column, (referred, _) in columns.items():
                batch_op.drop_constraint(_sqlite_name(table, column, referred), type_="foreignkey")


def downgrade() -> None:
    postgresql = op.get_bind().dialect.name == "postgresql"
    for table, columns in DROPPED.items():
        if postgresql:
            for column, (referred, name) in columns.items():
                op.create_foreign_key(name, table, referred, [column], ["id"])
            continue
        with sqlite_rebuild(table, SQLITE_CONVENTION) as batch_op:
            for column, (referred, _) in columns.items():
                batch_op.create_foreign_key(
                    _sqlite_name(table, column, referred), referred, [column], ["id"]
                )
