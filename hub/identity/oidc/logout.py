"""Logout: RP-initiated logout (OpenID Connect RP-Initiated Logout 1.0) and back-channel
logout (OpenID Connect Back-Channel Logout 1.0).

When a login session ends (hub.identity.signout: a logout here or on the account pages, a
password reset), every client the member signed in to during that session and that
registered a backchannel_logout_uri gets a signed logout token, POSTed by a Celery task
through the outbox: the notices go out only if the logout committed, and are retried when a
client is down.
"""
from __future__ import annotations

import hmac
import logging
import uuid
from dataclasses import dataclass

import requests
from sqlalchemy import select
from sqlalchemy.orm import Session

from hub.db import Database, utcnow
from hub.identity.keys import KeyStore
from hub.identity.oidc import clients, grants, issue, jwts
from hub.identity.oidc.authorize import with_query
from hub.notify import outbox
from hub.notify.outbox import OutboxMessage

log = logging.getLogger(__name__)

BACKCHANNEL_TOPIC = "oidc.backchannel_logout"
HTTP_TIMEOUT = 5.0  # seconds, connect and read: a slow client must not hold a worker
MAX_ATTEMPTS = 8
BACKOFF_BASE, BACKOFF_CAP = 5.0, 600.0


class LogoutRequestError(ValueError):
    """The logout request cannot be trusted: show an error page, never redirect."""


@dataclass(frozen=True)
class EndSession:
    redirect_to: str | None  # the registered post_logout_redirect_uri (with state), or None
    hinted_sid: str | None  # the sid of the id_token_hint, if any (its client's sector's)
    hinted_sector: str | None  # the sector of the hint's client, if any

    def names_session(self, secret_key: str, session_id: uuid.UUID) -> bool:
        """Whether the id_token_hint was issued in this login session: its sid is the one
        the hub derives for its client's sector (hub.identity.oidc.issue.session_sid)."""
        if not self.hinted_sid or self.hinted_sector is None:
            return False
        expected = issue.session_sid(secret_key, self.hinted_sector, session_id)
        return hmac.compare_digest(self.hinted_sid.encode(), expected.encode())


def end_session_request(session: Session, keys: KeyStore, issuer: str, params: dict) -> EndSession:
    """Check an RP-initiated logout request. post_logout_redirect_uri is honoured only when
    registered for the client that the id_token_hint (or client_id) names."""
    hint_claims = None
    if params.get("id_token_hint"):
        hint_claims = jwts.read_id_token(session, keys, params["id_token_hint"], issuer)
        if hint_claims is None:
            raise LogoutRequestError("id_token_hint is not an ID token of this provider")
    client_id = params.get("client_id")
    if hint_claims is not None:
        audience = hint_claims.get("aud")
        hinted = audience if isinstance(audience, str) else audience[0]  # one, a client's
        if client_id and client_id != hinted:
            raise LogoutRequestError("client_id is not the audience of id_token_hint")
        client_id = hinted
    client = clients.find(session, client_id) if client_id else None
    redirect_to = None
    wanted = params.get("post_logout_redirect_uri")
    if wanted:
        if client is None or wanted not in client.post_logout_redirect_uris:
            raise LogoutRequestError("post_logout_redirect_uri is not registered for this client")
        redirect_to = wanted
        if params.get("state"):
            redirect_to = with_query(wanted, {"state": params["state"]})
    # The hint's sid is its client's pairwise one (its sector's): names_session compares it
    # with the one derived from the browser's login session.
    sid = hint_claims.get("sid") if hint_claims else None
    if isinstance(sid, str) and sid and client is not None:
        return EndSession(redirect_to, sid, client.sector)
    return EndSession(redirect_to, None, None)


def notify_clients(session: Session, session_id: uuid.UUID) -> int:
    """Queue a back-channel logout notice to every client with a backchannel_logout_uri that
    the member signed in to during this login session; hub.identity.signout calls it in the
    transaction that ends the session."""
    queued = 0
    for client_id, subject in grants.session_clients(session, session_id):
        client = clients.find(session, client_id)
        if client is None or not client.backchannel_logout_uri:
            continue
        outbox.enqueue(session, BACKCHANNEL_TOPIC, f"{session_id}:{client_id}",
                       {"session_id": str(session_id), "client_id": client_id, "subject": subject})
        queued += 1
    return queued


def deliver(db: Database, keys: KeyStore, issuer: str, session_id: str, client_id: str,
            subject: str) -> str:
    """POST one logout token (the task's body; idempotent: a client may get it twice)."""
    key = f"{session_id}:{client_id}"
    with db.read() as session:
        client = clients.find(session, client_id)
    if client is None or not client.backchannel_logout_uri:
        db.write(lambda s: outbox.complete(s, BACKCHANNEL_TOPIC, key))
        return "dropped"
    # The key store holds the hub's secret key, which derives the client's pairwise sid
    # (as in its ID tokens): the task's payload stays what it was.
    token = issue.logout_token(keys, issuer=issuer, client_id=client_id, sector=client.sector,
                               subject=subject, session_id=uuid.UUID(session_id),
                               secret_key=keys.secret_key)
    try:
        response = requests.post(client.backchannel_logout_uri, data={"logout_token": token},
                                 timeout=HTTP_TIMEOUT, allow_redirects=False)
        delivered = response.status_code in (200, 204)
        outcome = f"HTTP {response.status_code}"
    except requests.RequestException as exc:
        delivered, outcome = False, type(exc).__name__
    if delivered:
        db.write(lambda s: outbox.complete(s, BACKCHANNEL_TOPIC, key))
        return "delivered"

    def retry_or_give_up(s: Session) -> str:
        attempts = s.scalar(select(OutboxMessage.publish_count).where(
            OutboxMessage.topic == BACKCHANNEL_TOPIC, OutboxMessage.key == key,
            OutboxMessage.done_at.is_(None))) or 0
        if attempts >= MAX_ATTEMPTS:
            outbox.complete(s, BACKCHANNEL_TOPIC, key)
            return "gave up"
        delay = outbox.backoff(attempts, BACKOFF_BASE, BACKOFF_CAP)
        outbox.reschedule(s, BACKCHANNEL_TOPIC, key, utcnow() + delay)
        return "retrying"

    result = db.write(retry_or_give_up)
    log.warning("back-channel logout to client %s failed (%s): %s", client_id, outcome, result)
    return result
