"""Grants (token families), authorization codes and refresh tokens.

A code is single use: it is claimed by a conditional UPDATE, so of two concurrent exchanges
only one wins. Presenting a used code again revokes its grant, hence every token issued from
it (RFC 6749 4.1.2). A refresh token is rotated on every use, when the new tokens are issued
(a request refused for its scope or client leaves it usable), by a conditional UPDATE too;
presenting a rotated one again means it leaked, and revokes the whole family (RFC 9700
4.14.2), as does the losing one of two concurrent uses. JWT access tokens carry their
grant's id (`gid`), so the API and introspection refuse them once their grant is revoked.
"""
from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from hub.db import utcnow
from hub.digest import sha256_hex  # what the tables keep of a code or token
from hub.identity.oidc.models import AuthorizationCode, Grant, RefreshToken

CODE_TTL = timedelta(seconds=60)


def create(session: Session, **fields) -> Grant:
    grant = Grant(**fields)
    session.add(grant)
    session.flush()
    return grant


def issue_code(session: Session, grant: Grant, *, redirect_uri: str, code_challenge: str | None,
               nonce: str | None) -> str:
    code = secrets.token_urlsafe(32)
    session.add(AuthorizationCode(
        code_hash=sha256_hex(code), grant_id=grant.id, redirect_uri=redirect_uri,
        code_challenge=code_challenge, nonce=nonce, expires_at=utcnow() + CODE_TTL,
    ))
    session.flush()
    return code


@dataclass(frozen=True)
class RedeemedCode:
    grant: Grant
    redirect_uri: str
    code_challenge: str | None
    nonce: str | None


def _use_once(session: Session, key_column, key: str, used_column, grant_id: uuid.UUID,
              now: datetime) -> bool:
    """Mark a single-use secret (a code, a refresh token) used, in one conditional UPDATE so
    two concurrent uses cannot both win. A second use means it leaked: revoke its grant, and
    with it every token issued from it (RFC 6749 4.1.2 for codes, RFC 9700 4.14 for
    refresh tokens)."""
    claimed = session.execute(
        update(key_column.class_).where(key_column == key, used_column.is_(None)).values({used_column: now})
    ).rowcount
    if not claimed:
        revoke(session, grant_id)
    return bool(claimed)


def redeem_code(session: Session, code: str, client_id: str) -> RedeemedCode | None:
    """The code's grant if the code is valid for this client, claimed so it cannot be used
    again; None otherwise. A second use revokes the grant (the caller must commit that even
    though the request fails)."""
    row = session.get(AuthorizationCode, sha256_hex(code))
    if row is None:
        return None
    grant = session.get(Grant, row.grant_id)
    if grant.client_id != client_id:
        return None
    now = utcnow()
    if not _use_once(session, AuthorizationCode.code_hash, row.code_hash, AuthorizationCode.used_at,
                     grant.id, now):
        return None
    if row.expires_at <= now or grant.revoked_at is not None:
        return None
    return RedeemedCode(grant, row.redirect_uri, row.code_challenge, row.nonce)


def store_refresh_token(session: Session, grant_id: uuid.UUID, token: str, ttl: int) -> None:
    session.add(RefreshToken(token_hash=sha256_hex(token), grant_id=grant_id,
                             expires_at=utcnow() + timedelta(seconds=ttl)))
    session.flush()


def usable_refresh_token(session: Session, token: str) -> Grant | None:
    """The live grant behind a refresh token presented at the token endpoint, or None if it
    is unknown, expired or revoked. Nothing is used up: the request may still be refused (for
    its scope, or another client presenting it), and the token must then stay usable;
    `rotate_refresh_token` uses it up when the new tokens are issued. But a token that was
    rotated already is presented again: it leaked, and this revokes the family (the caller
    must commit that although the request fails)."""
    row = session.get(RefreshToken, sha256_hex(token))
    if row is None:
        return None
    if row.rotated_at is not None:
        revoke(session, row.grant_id)
        return None
    grant = session.get(Grant, row.grant_id)
    if row.expires_at <= utcnow() or grant.revoked_at is not None:
        return None
    return grant


def rotate_refresh_token(session: Session, token: str, successor: str | None, ttl: int) -> bool:
    """Use up a refresh token as its new tokens are issued, storing its `successor` (if any)
    in the same transaction: whether that worked. The token is claimed by a conditional
    UPDATE, so of two requests that both passed `usable_refresh_token` only the first wins;
    the second is a reuse and revokes the family, the winner's new tokens with it (the caller
    must commit that although the request fails). False too if the token expired or its grant
    was revoked meanwhile (then nothing is stored)."""
    row = session.get(RefreshToken, sha256_hex(token))
    if row is None:
        return False
    now = utcnow()
    if not _use_once(session, RefreshToken.token_hash, row.token_hash, RefreshToken.rotated_at,
                     row.grant_id, now):
        return False
    grant = session.get(Grant, row.grant_id)
    if row.expires_at <= now or grant.revoked_at is not None:
        return False
    if successor:
        store_refresh_token(session, grant.id, successor, ttl)
    return True


def refresh_token_grant(session: Session, token: str) -> Grant | None:
    """The grant of a refresh token that can still be used (introspection, revocation)."""
    row = session.get(RefreshToken, sha256_hex(token))
    if row is None or row.rotated_at is not None or row.expires_at <= utcnow():
        return None
    grant = session.get(Grant, row.grant_id)
    return grant if grant.revoked_at is None else None


def live(session: Session, grant_id: uuid.UUID) -> Grant | None:
    """The grant if it is not revoked (checked on every use of a member's access token)."""
    return session.scalar(select(Grant).where(Grant.id == grant_id, Grant.revoked_at.is_(None)))


def revoke(session: Session, grant_id: uuid.UUID, at: datetime | None = None) -> None:
    session.execute(update(Grant).where(Grant.id == grant_id, Grant.revoked_at.is_(None))
                    .values(revoked_at=at or utcnow()))


def revoke_sector(session: Session, member_id: uuid.UUID, sector: str) -> int:
    """Revoke every grant a member gave a sector's clients (consent withdrawn)."""
    return session.execute(
        update(Grant)
        .where(Grant.member_id == member_id, Grant.sector == sector, Grant.revoked_at.is_(None))
        .values(revoked_at=utcnow())
    ).rowcount


def session_clients(session: Session, session_id: uuid.UUID) -> list[tuple[str, str]]:
    """(client_id, sub) of every client the member signed in to during a login session."""
    rows = session.execute(
        select(Grant.client_id, Grant.subject).where(Grant.session_id == session_id).distinct()
    )
    return [tuple(r) for r in rows]
