"""Issue 7 review (S8): one place for every sharing consent. The two switches of
member_sharing (issue 6: partners may target the member by their attributes / by which other
programs they hold) become the consent purposes `attributes` and `programs_held`, granted per
partner in sharing_consents: a member who had a switch on now shares that purpose with every
partner they hold a membership with, since the switch's time, with a proof row each (channel
`migration`). member_sharing goes.

Downgrade recreates member_sharing empty: the switches are lost (every member back to sharing
nothing through them); the consents stay in sharing_consents, where the older code ignores
these two purposes, so upgrading again finds them there.

Revision ID: 0021_fold_member_sharing
Revises: 0020_request_ids
Create Date: 2026-11-24 12:00:00.000000
"""
from alembic import op
import sqlalchemy as sa

import hub.db

revision = '0021_fold_member_sharing'
down_revision = '0020_request_ids'
branch_labels = None
depends_on = None

_sharing = sa.table("member_sharing", sa.column("member_id", sa.Uuid()), sa.column("attributes", sa.Boolean()),
                    sa.column("programs", sa.Boolean()), sa.column("updated_at", hub.db.UTCDateTime(timezone=True)))
_memberships = sa.table("memberships", sa.column("member_id", sa.Uuid()), sa.column("program_id", sa.Uuid()))
_programs = sa.table("programs", sa.column("id", sa.Uuid()), sa.column("partner_id", sa.Uuid()))
_consents = sa.table("sharing_consents", sa.column("member_id", sa.Uuid()), sa.column("partner_id", sa.Uuid()),
                     sa.column("purpose", sa.String()), sa.column("granted_at", hub.db.UTCDateTime(timezone=True)))
_events = sa.table("sharing_consent_events", sa.column("member_id", sa.Uuid()), sa.column("partner_id", sa.Uuid()),
                   sa.column("purpose", sa.String()), sa.column("action", sa.String()),
                   sa.column("channel", sa.String()),
                   sa.column("by", sa.String()), sa.column("client_id", sa.String()),
                   sa.column("at", hub.db.UTCDateTime(timezone=True)))


def _granted(switch, purpose: str):
    """(member, partner, purpose, since) for each partner of each member whose switch is on."""
    return (sa.select(_sharing.c.member_id, _programs.c.partner_id, sa.literal(purpose, sa.String()),
                      _sharing.c.updated_at)
            .join(_memberships, _memberships.c.member_id == _sharing.c.member_id)
            .join(_programs, _programs.c.id == _memberships.c.program_id)
            .where(switch == sa.true()).distinct())


def upgrade() -> None:
    op.create_index('ix_sharing_consents_partner_purpose', 'sharing_consents', ['partner_id', 'purpose'])
    for switch, purpose in ((_sharing.c.attributes, "attributes"), (_sharing.c.programs, "programs_held")):
        op.execute(_consents.insert().from_select(["member_id", "partner_id", "purpose", "granted_at"],
                                                  _granted(switch, purpose)))
        granted = _granted(switch, purpose).subquery()
        op.execute(_events.insert().from_select(
            ["member_id", "partner_id", "purpose", "action", "channel", "by", "client_id", "at"],
            sa.select(granted.c.member_id, granted.c.partner_id, sa.literal(purpose, sa.String()),
                      sa.literal("grant", sa.String()), sa.literal("migration", sa.String()),
                      sa.literal("migration:0021", sa.String()), sa.null(), granted.c.updated_at)))
    op.drop_table('member_sharing')


def downgrade() -> None:
    op.create_table('member_sharing',
    sa.Column('member_id', sa.Uuid(), nullable=False),
    sa.Column('attributes', sa.Boolean(), nullable=False),
    sa.Column('programs', sa.Boolean(), nullable=False),
    sa.Column('updated_at', hub.db.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['member_id'], ['members.id'], ),
    sa.PrimaryKeyConstraint('member_id')
    )
    op.drop_index('ix_sharing_consents_partner_purpose', table_name='sharing_consents')
