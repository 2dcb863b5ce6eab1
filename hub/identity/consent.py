"""Consent: what a member agreed to share with a partner (a sector: all its brand clients).

Stored per member and sector as the scopes and the extra claims (from `claims` requests)
granted; asking again for the same or less skips the consent page. Withdrawing consent
revokes every grant of that sector, so its refresh tokens stop working at once and its JWT
access tokens are refused by the API and by introspection from then on.
"""
from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from hub.db import utcnow
from hub.errors import NotFound
from hub.identity.models import ApiClient
from hub.identity.oidc import claims as claim_sets
from hub.identity.oidc import clients as brand_clients
from hub.identity.oidc import grants
from hub.identity.oidc.models import Consent
from hub.programs.models import Partner


# Scopes that share nothing about the member: `openid` alone gives the brand only its own
# pairwise `sub` (hub/identity/oidc/subjects.py), a pseudonym no other partner can link. So a
# brand that asks only for it signs the member in with no consent page; any scope or claim
# that shares data (profile, email, phone, balances, ...) still needs the member's yes.
SHARES_NOTHING = frozenset({"openid"})


def missing(session: Session, member_id: uuid.UUID, sector: str, scopes, claims) -> bool:
    """Whether any of these scopes or claims was not granted to the sector yet."""
    if set(scopes) <= SHARES_NOTHING and not claims:
        return False
    row = session.get(Consent, (member_id, sector))
    if row is None:
        return True
    granted_scopes = set(row.scopes.split())
    granted_claims = claim_sets.for_scopes(granted_scopes) | set(row.claims)
    return not (set(scopes) <= granted_scopes and set(claims) <= granted_claims)


def grant(session: Session, member_id: uuid.UUID, sector: str, scopes, claims) -> None:
    """Record consent to these scopes and claims, added to what was granted before."""
    row = session.get(Consent, (member_id, sector))
    if row is None:
        row = Consent(member_id=member_id, sector=sector, scopes="", claims=[])
        session.add(row)
    row.scopes = " ".join(sorted(set(row.scopes.split()) | set(scopes)))
    row.claims = sorted((set(row.claims) | set(claims)) - claim_sets.for_scopes(row.scopes.split()))
    row.granted_at = utcnow()
    session.flush()


@dataclass(frozen=True)
class ConsentView:
    sector: str
    partner: str | None  # the partner's code, or None for a client of no partner
    client_id: str | None
    scopes: list[str]
    claims: list[str]  # every claim shared: those of the scopes, and those asked for one by one
    extra_claims: list[str]  # those asked for one by one (a `claims` request), beyond the scopes
    granted_at: datetime


def list_for(session: Session, member_id: uuid.UUID) -> list[ConsentView]:
    rows = session.scalars(select(Consent).where(Consent.member_id == member_id)
                           .order_by(Consent.granted_at)).all()
    views = []
    for row in rows:
        partner, client_id = _sector_owner(session, row.sector)
        views.append(ConsentView(row.sector, partner, client_id, row.scopes.split(),
                                 sorted(claim_sets.for_scopes(row.scopes.split()) | set(row.claims)),
                                 sorted(row.claims), row.granted_at))
    return views


def _sector_owner(session: Session, sector: str) -> tuple[str | None, str | None]:
    if sector.startswith("client:"):
        return None, sector.removeprefix("client:")
    return session.scalar(select(Partner.code).where(Partner.id == uuid.UUID(sector))), None


def sector_of(session: Session, client_or_partner: str) -> str:
    """The sector a client id (cli_...) or a partner code names."""
    client = session.scalar(select(ApiClient).where(ApiClient.client_id == client_or_partner))
    if client is not None:
        return brand_clients.sector(client.partner_id, client.client_id)
    partner_id = session.scalar(select(Partner.id).where(Partner.code == client_or_partner))
    if partner_id is None:
        raise NotFound(f"no client or partner {client_or_partner}", slug="consent-not-found")
    return str(partner_id)


def revoke(session: Session, member_id: uuid.UUID, client_or_partner: str) -> None:
    """Withdraw the member's consent to a partner (named by code, or by one of its clients)
    and revoke every grant its clients hold."""
    sector = sector_of(session, client_or_partner)
    deleted = session.execute(
        delete(Consent).where(Consent.member_id == member_id, Consent.sector == sector)
    ).rowcount
    if not deleted:
        raise NotFound("no consent given to that partner", slug="consent-not-found")
    grants.revoke_sector(session, member_id, sector)
