"""The OpenID provider: brand clients, grants, codes and refresh tokens (hashed), pairwise
subjects and consents.

Revision ID: 0005_oidc
Revises: 0004_member_accounts
Create Date: 2026-11-24 02:55:13.041890
"""
from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

import hub.db

revision = '0005_oidc'
down_revision = '0004_member_accounts'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('oidc_consents',
    sa.Column('member_id', sa.Uuid(), nullable=False),
    sa.Column('sector', sa.String(length=64), nullable=False),
    sa.Column('scopes', sa.String(length=500), nullable=False),
    sa.Column('claims', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('granted_at', hub.db.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('member_id', 'sector')
    )
    op.create_table('oidc_grants',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('client_id', sa.String(length=64), nullable=False),
    sa.Column('sector', sa.String(length=64), nullable=False),
    sa.Column('member_id', sa.Uuid(), nullable=False),
    sa.Column('account_id', sa.Uuid(), nullable=False),
    sa.Column('session_id', sa.Uuid(), nullable=False),
    sa.Column('subject', sa.String(length=64), nullable=False),
    sa.Column('scope', sa.String(length=500), nullable=False),
    sa.Column('claims', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('auth_time', hub.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('amr', sa.String(length=50), nullable=False),
    sa.Column('created_at', hub.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('revoked_at', hub.db.UTCDateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('oidc_grants', schema=None) as batch_op:
        batch_op.create_index('ix_oidc_grants_member_sector', ['member_id', 'sector'], unique=False)
        batch_op.create_index('ix_oidc_grants_session', ['session_id'], unique=False)

    op.create_table('oidc_pairwise_subjects',
    sa.Column('sector', sa.String(length=64), nullable=False),
    sa.Column('subject', sa.String(length=64), nullable=False),
    sa.Column('member_id', sa.Uuid(), nullable=False),
    sa.PrimaryKeyConstraint('sector', 'subject'),
    sa.UniqueConstraint('sector', 'member_id')
    )
    op.create_table('oidc_codes',
    sa.Column('code_hash', sa.String(length=64), nullable=False),
    sa.Column('grant_id', sa.Uuid(), nullable=False),
    sa.Column('redirect_uri', sa.String(length=500), nullable=False),
    sa.Column('code_challenge', sa.String(length=128), nullable=True),
    sa.Column('nonce', sa.String(length=255), nullable=True),
    sa.Column('expires_at', hub.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('used_at', hub.db.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['grant_id'], ['oidc_grants.id'], ),
    sa.PrimaryKeyConstraint('code_hash')
    )
    with op.batch_alter_table('oidc_codes', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_oidc_codes_grant_id'), ['grant_id'], unique=False)

    op.create_table('oidc_refresh_tokens',
    sa.Column('token_hash', sa.String(length=64), nullable=False),
    sa.Column('grant_id', sa.Uuid(), nullable=False),
    sa.Column('expires_at', hub.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('rotated_at', hub.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('created_at', hub.db.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['grant_id'], ['oidc_grants.id'], ),
    sa.PrimaryKeyConstraint('token_hash')
    )
    with op.batch_alter_table('oidc_refresh_tokens', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_oidc_refresh_tokens_grant_id'), ['grant_id'], unique=False)

    op.create_table('oidc_clients',
    sa.Column('client_id', sa.String(length=64), nullable=False),
    sa.Column('redirect_uris', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('post_logout_redirect_uris', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('backchannel_logout_uri', sa.String(length=500), nullable=True),
    sa.Column('public', sa.Boolean(), nullable=False),
    sa.ForeignKeyConstraint(['client_id'], ['api_clients.client_id'], ),
    sa.PrimaryKeyConstraint('client_id')
    )


def downgrade() -> None:
    op.drop_table('oidc_clients')
    with op.batch_alter_table('oidc_refresh_tokens', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_oidc_refresh_tokens_grant_id'))

    op.drop_table('oidc_refresh_tokens')
    with op.batch_alter_table('oidc_codes', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_oidc_codes_grant_id'))

    op.drop_table('oidc_codes')
    op.drop_table('oidc_pairwise_subjects')
    with op.batch_alter_table('oidc_grants', schema=None) as batch_op:
        batch_op.drop_index('ix_oidc_grants_session')
        batch_op.drop_index('ix_oidc_grants_member_sector')

    op.drop_table('oidc_grants')
    op.drop_table('oidc_consents')
