"""Pairwise subject identifiers (OIDC Core 8.1): each sector (a partner, with all its
clients) knows a member by its own `sub`, so two partners cannot join their data on it.

sub = base64url(HMAC-SHA256(key, sector | member_id)), the key derived from HUB_SECRET_KEY
by HKDF: stable for as long as the secret key is, and not reversible without it. The hub
keeps each (sector, sub) -> member it handed out, so that partner APIs accept the sub back.
"""
from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import uuid

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from sqlalchemy import select
from sqlalchemy.orm import Session

from hub.identity.oidc.models import PairwiseSubject


@functools.lru_cache(maxsize=8)
def _key(secret_key: str, label: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=label).derive(secret_key.encode())


def pairwise(secret_key: str, label: bytes, sector: str, value: uuid.UUID) -> str:
    """An identifier of `value` that only `sector` knows: an HMAC with a key derived (HKDF,
    `label`) from the hub's secret. Other sectors get unlinkable ones for the same value."""
    mac = hmac.new(_key(secret_key, label), f"{sector}|{value}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).rstrip(b"=").decode()


def derive(secret_key: str, sector: str, member_id: uuid.UUID) -> str:
    return pairwise(secret_key, b"hub:pairwise-subject", sector, member_id)


def subject_for(session: Session, secret_key: str, sector: str, member_id: uuid.UUID) -> str:
    """The member's sub in this sector, recorded on first use."""
    subject = derive(secret_key, sector, member_id)
    if session.get(PairwiseSubject, (sector, subject)) is None:
        session.add(PairwiseSubject(sector=sector, subject=subject, member_id=member_id))
        session.flush()
    return subject


def member_for(session: Session, sector: str, subject: str) -> uuid.UUID | None:
    """The member a sector's sub names, or None (never handed out to that sector)."""
    return session.scalar(
        select(PairwiseSubject.member_id).where(
            PairwiseSubject.sector == sector, PairwiseSubject.subject == subject)
    )
