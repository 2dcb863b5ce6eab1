"""Tables of the OpenID Connect provider.

Codes and refresh tokens are stored only as SHA-256 hashes (they are 256 random bits, so a
slow hash adds nothing): a copy of the database cannot be replayed at the token endpoint.
"""
from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import Boolean, ForeignKey, Index, String, UniqueConstraint, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from hub.db import Base, JSONDoc, UTCDateTime, utcnow


class OidcClient(Base):
    """The OpenID Connect registration of an ApiClient (a brand's web site or app)."""

    __tablename__ = "oidc_clients"

    client_id: Mapped[str] = mapped_column(ForeignKey("api_clients.client_id"), primary_key=True)
    redirect_uris: Mapped[list] = mapped_column(JSONDoc)
    post_logout_redirect_uris: Mapped[list] = mapped_column(JSONDoc)
    backchannel_logout_uri: Mapped[str | None] = mapped_column(String(500), default=None)
    # A public client (a single-page or mobile app) has no secret and must use PKCE.
    public: Mapped[bool] = mapped_column(Boolean, default=False)


class Grant(Base):
    """One authorization: what a member granted a client in one login session. Its codes,
    refresh tokens and JWT access tokens (claim `gid`) form a family that is revoked as one
    (code reuse, refresh-token reuse, RFC 7009 revocation, consent withdrawn)."""

    __tablename__ = "oidc_grants"
    __table_args__ = (
        Index("ix_oidc_grants_session", "session_id"),
        Index("ix_oidc_grants_member_sector", "member_id", "sector"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    client_id: Mapped[str] = mapped_column(String(64))
    sector: Mapped[str] = mapped_column(String(64))
    member_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    account_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    session_id: Mapped[uuid.UUID] = mapped_column(Uuid)  # the login session: `sid`
    subject: Mapped[str] = mapped_column(String(64))  # the pairwise `sub` for this sector
    scope: Mapped[str] = mapped_column(String(500))
    # The `claims` request parameter (OIDC Core 5.5), as granted: {"id_token": {...}, "userinfo": {...}}
    claims: Mapped[dict] = mapped_column(JSONDoc)
    auth_time: Mapped[datetime] = mapped_column(UTCDateTime)
    amr: Mapped[str] = mapped_column(String(50))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)


class AuthorizationCode(Base):
    __tablename__ = "oidc_codes"

    code_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    grant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("oidc_grants.id"), index=True)
    redirect_uri: Mapped[str] = mapped_column(String(500))
    code_challenge: Mapped[str | None] = mapped_column(String(128), default=None)
    nonce: Mapped[str | None] = mapped_column(String(255), default=None)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)


class RefreshToken(Base):
    __tablename__ = "oidc_refresh_tokens"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    grant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("oidc_grants.id"), index=True)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # Set when it was exchanged for a new one: presenting it again means it leaked.
    rotated_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class PairwiseSubject(Base):
    """The pairwise `sub` a sector (partner) knows a member by, kept so that the partner API
    can take it back (the HMAC that derives it cannot be reversed)."""

    __tablename__ = "oidc_pairwise_subjects"
    __table_args__ = (UniqueConstraint("sector", "member_id"),)

    sector: Mapped[str] = mapped_column(String(64), primary_key=True)
    subject: Mapped[str] = mapped_column(String(64), primary_key=True)
    member_id: Mapped[uuid.UUID] = mapped_column(Uuid)


class Consent(Base):
    """What a member agreed to share with a sector (a partner and all its clients)."""

    __tablename__ = "oidc_consents"

    member_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    sector: Mapped[str] = mapped_column(String(64), primary_key=True)
    scopes: Mapped[str] = mapped_column(String(500))
    claims: Mapped[list] = mapped_column(JSONDoc)  # extra claims named by `claims` requests
    granted_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
