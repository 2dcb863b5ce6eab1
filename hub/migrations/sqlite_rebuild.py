"""Rebuilding an SQLite table that other rows reference, for migrations."""
from alembic import op


class sqlite_rebuild:
    """SQLite changes a constraint by rebuilding the table (copy, DROP, RENAME). Dropping a
    table that other rows reference (point_transactions.transfer_id -> ledger_transfers,
    purchase_id -> point_transactions) fails while foreign keys are enforced, and
    PRAGMA foreign_keys is ignored inside a transaction. So, as SQLite documents
    (lang_altertable.html, "Making other kinds of table schema changes"): end the
    transaction, turn enforcement off, rebuild, check with PRAGMA foreign_key_check.
    Enforcement stays off on this connection only; the migration's engine is disposed
    afterwards (hub/migrations/env.py)."""

    def __init__(self, table: str, naming_convention: dict | None = None):
        self.table = table
        self.naming_convention = naming_convention

    def __enter__(self):
        conn = op.get_bind()
        if conn.exec_driver_sql("PRAGMA foreign_keys").scalar():
            conn.exec_driver_sql("COMMIT")  # what Alembic did so far is kept
            conn.exec_driver_sql("PRAGMA foreign_keys=OFF")
            conn.exec_driver_sql("BEGIN IMMEDIATE")  # Alembic's COMMIT ends it, version bump too
        self.batch = op.batch_alter_table(self.table, naming_convention=self.naming_convention)
        return self.batch.__enter__()

    def __exit__(self, *exc):
        self.batch.__exit__(*exc)
        if exc[0] is None:
            broken = op.get_bind().exec_driver_sql("PRAGMA foreign_key_check").fetchall()
            if broken:
                raise RuntimeError(f"foreign keys broken by the rebuild: {broken[:10]}")
        return False
