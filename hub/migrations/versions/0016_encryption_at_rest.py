"""Issue 7: Encryption at rest: envelope keys, sealed contact details and blind indexes.

Existing rows are converted in place: emails, names, identifiers and mail addresses are
sealed and indexed, stored idempotent responses sealed, and the values sealed before (Fernet under a key derived from
HUB_SECRET_KEY: TOTP secrets, mail bodies, redemption recipients and deliveries, signing
keys, webhook secrets) are sealed again under a data key. The keys come from the settings
of the environment that runs the upgrade (HUB_SECRET_KEY, HUB_DATA_KEYS, HUB_INDEX_KEY),
which must be the hub's own; an empty database needs none.

Revision ID: 0016_encryption_at_rest
Revises: 0015_partner_webhooks
Create Date: 2026-11-24 10:00:00.000000
"""
import base64

from alembic import op
import sqlalchemy as sa
from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

import hub.db
from hub.migrations.sqlite_rebuild import sqlite_rebuild

revision = '0016_encryption_at_rest'
down_revision = '0015_partner_webhooks'
branch_labels = None
depends_on = None

# Kept in clear before: (table, primary key, column, purpose, its blind index column, the
# index's kind: None for the row's own). The purpose of a `Sealed` column is its name.
_PLAIN = [
    ('member_accounts', 'id', 'email', 'member_accounts.email', 'email_index', 'email'),
    ('member_accounts', 'id', 'given_name', 'member_accounts.given_name', None, None),
    ('member_accounts', 'id', 'family_name', 'member_accounts.family_name', None, None),
    ('membership_identifiers', 'id', 'value', 'membership_identifiers.value', 'value_index', None),
    ('outgoing_mail', 'id', 'to_address', 'outgoing_mail.to_address', 'to_index', 'email'),
    ('idempotency_keys', 'id', 'body', 'idempotency-response', None, None),
]
# Sealed before this revision with hub.crypto's Fernet scheme: (table, key, column, purpose).
_LEGACY = [
    ('member_accounts', 'id', 'totp_secret_sealed', 'totp-secret'),
    ('outgoing_mail', 'id', 'body_sealed', 'outgoing-mail'),
    ('redemptions', 'id', 'recipient_sealed', 'redemption-delivery'),
    ('redemptions', 'id', 'delivery_sealed', 'redemption-delivery'),
    ('signing_keys', 'kid', 'private_jwk_sealed', 'signing-key'),
    ('webhook_endpoints', 'id', 'secret_sealed', 'webhook-secret'),
    ('webhook_endpoints', 'id', 'previous_secret_sealed', 'webhook-secret'),
]
_SQLITE_NAMES = {"uq": "uq_%(table_name)s_%(column_0_N_name)s"}


def _alter(table: str):
    """SQLite rebuilds the table (others reference it: see sqlite_rebuild); naming its unique
    constraints as reflected lets the old one be dropped by name."""
    if op.get_bind().dialect.name == "sqlite":
        return sqlite_rebuild(table, _SQLITE_NAMES)
    return op.batch_alter_table(table)


def _unique_name(table: str, columns: str, pg_default: str) -> str:
    return f"uq_{table}_{columns}" if op.get_bind().dialect.name == "sqlite" else pg_default


def upgrade() -> None:
    op.create_table(
        'data_keys',
        sa.Column('id', sa.String(length=32), nullable=False),
        sa.Column('kek_id', sa.String(length=32), nullable=False),
        sa.Column('wrapped', sa.Text(), nullable=False),
        sa.Column('created_at', hub.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('id'),
    )
    for table, column in (('member_accounts', 'email_index'), ('membership_identifiers', 'value_index'),
                          ('outgoing_mail', 'to_index')):
        with op.batch_alter_table(table) as batch_op:
            batch_op.add_column(sa.Column(column, sa.String(length=64), nullable=True))
    _convert_rows()

    with _alter('member_accounts') as batch_op:
        batch_op.drop_constraint(_unique_name('member_accounts', 'email', 'member_accounts_email_key'), type_='unique')
        batch_op.alter_column('email', type_=sa.Text(), existing_nullable=False)
        batch_op.alter_column('given_name', type_=sa.Text(), existing_nullable=True)
        batch_op.alter_column('family_name', type_=sa.Text(), existing_nullable=True)
        batch_op.alter_column('email_index', nullable=False)
        batch_op.create_unique_constraint('uq_member_accounts_email_index', ['email_index'])
    with _alter('membership_identifiers') as batch_op:
        batch_op.drop_constraint(_unique_name('membership_identifiers', 'program_id_kind_value',
                                              'membership_identifiers_program_id_kind_value_key'), type_='unique')
        batch_op.alter_column('value', type_=sa.Text(), existing_nullable=False)
        batch_op.alter_column('value_index', nullable=False)
        batch_op.create_unique_constraint('uq_membership_identifiers_value_index', ['program_id', 'kind', 'value_index'])
    with op.batch_alter_table('outgoing_mail') as batch_op:
        batch_op.drop_index('ix_outgoing_mail_to_address')
        batch_op.alter_column('to_address', type_=sa.Text(), existing_nullable=False)
        batch_op.alter_column('to_index', nullable=False)
        batch_op.create_index('ix_outgoing_mail_to_index', ['to_index'], unique=False)


def _convert_rows() -> None:
    """Seal and index what was kept in clear; seal again what hub.crypto sealed before."""
    conn = op.get_bind()
    counts = [conn.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar()
              for table in {t for t, *_ in _PLAIN + _LEGACY}]
    if not any(counts):
        return  # a new database: no keys needed here (the hub makes its data key at start-up)
    from hub.privacy import blind, keyring
    from hub.settings import Settings

    settings = Settings.from_env()  # the legacy values' key derives from the secret key
    ring = keyring.for_migration(conn)
    keyring.use(ring)
    for table, key, column, purpose, index_column, kind in _PLAIN:
        kind_column = ', kind' if kind is None and index_column else ''
        rows = conn.execute(sa.text(f"SELECT {key}, {column}{kind_column} FROM {table} "
                                    f"WHERE {column} IS NOT NULL")).all()
        for row in rows:
            values = {"v": ring.seal(purpose, row[1].encode()), "k": row[0]}
            assignments = f"{column} = :v"
            if index_column:
                values["i"] = blind.index(kind or row[2], row[1])
                assignments += f", {index_column} = :i"
            conn.execute(sa.text(f"UPDATE {table} SET {assignments} WHERE {key} = :k"), values)
    for table, key, column, purpose in _LEGACY:
        old = Fernet(base64.urlsafe_b64encode(HKDF(
            algorithm=hashes.SHA256(), length=32, salt=None, info=f"hub:{purpose}".encode()
        ).derive(settings.secret_key.encode())))
        for pk, token in conn.execute(sa.text(f"SELECT {key}, {column} FROM {table} WHERE {column} IS NOT NULL")):
            try:
                plain = old.decrypt(token.encode())
            except InvalidToken:
                raise RuntimeError(f"{table}.{column} was sealed with another HUB_SECRET_KEY: run the upgrade "
                                   f"with the hub's own settings") from None
            conn.execute(sa.text(f"UPDATE {table} SET {column} = :v WHERE {key} = :k"),
                         {"v": ring.seal(purpose, plain), "k": pk})


def downgrade() -> None:
    # Sealed values stay sealed: the revision before cannot read them, so going back is
    # only for an empty database (tests of the migration chain).
    with op.batch_alter_table('outgoing_mail') as batch_op:
        batch_op.drop_index('ix_outgoing_mail_to_index')
        batch_op.alter_column('to_address', type_=sa.String(length=254), existing_nullable=False)
        batch_op.create_index('ix_outgoing_mail_to_address', ['to_address'], unique=False)
        batch_op.drop_column('to_index')
    with _alter('membership_identifiers') as batch_op:
        batch_op.drop_constraint('uq_membership_identifiers_value_index', type_='unique')
        batch_op.alter_column('value', type_=sa.String(length=254), existing_nullable=False)
        batch_op.create_unique_constraint(_unique_name('membership_identifiers', 'program_id_kind_value',
                                                       'membership_identifiers_program_id_kind_value_key'),
                                          ['program_id', 'kind', 'value'])
        batch_op.drop_column('value_index')
    with _alter('member_accounts') as batch_op:
        batch_op.drop_constraint('uq_member_accounts_email_index', type_='unique')
        batch_op.alter_column('email', type_=sa.String(length=254), existing_nullable=False)
        batch_op.alter_column('given_name', type_=sa.String(length=100), existing_nullable=True)
        batch_op.alter_column('family_name', type_=sa.String(length=100), existing_nullable=True)
        batch_op.create_unique_constraint(_unique_name('member_accounts', 'email', 'member_accounts_email_key'),
                                          ['email'])
        batch_op.drop_column('email_index')
    op.drop_table('data_keys')
