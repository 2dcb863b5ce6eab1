"""Mail to members, written to the outgoing_mail table in the caller's transaction (so no
mail goes out for work that did not commit). There is no mail server in development:
`hub accounts mail` prints the latest messages. Bodies hold live links, so they are sealed
(hub.crypto), as addresses are (a sealed column, found by its blind index); the log names
the recipient only in part and never the body.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from hub.crypto import seal, unseal
from hub.db import utcnow
from hub.identity.account_models import OutgoingMail
from hub.privacy import blind

log = logging.getLogger(__name__)
PURPOSE = "outgoing-mail"


@dataclass(frozen=True)
class Message:
    id: int
    to: str
    subject: str
    body: str
    created_at: datetime


def redact(address: str) -> str:
    """s***@example.com: enough to tell messages apart in a log, not to collect addresses."""
    local, _, domain = address.partition("@")
    return f"{local[:1]}***@{domain}"


def send(session: Session, *, to: str, subject: str, body: str) -> None:
    row = OutgoingMail(
        to_address=to, subject=subject, body_sealed=seal(PURPOSE, body.encode()), created_at=utcnow()
    )
    session.add(row)
    session.flush()
    log.info("mail %s queued to %s: %s", row.id, redact(to), subject)


def latest(session: Session, *, limit: int = 10, to: str | None = None) -> list[Message]:
    """The newest messages first (to one address if given)."""
    query = select(OutgoingMail).order_by(OutgoingMail.id.desc()).limit(limit)
    if to is not None:
        query = query.where(_to_any([to]))
    return [_message(row) for row in session.scalars(query)]


@dataclass(frozen=True)
class Sent:
    """What a member's data export tells of a message: never its body, which holds live
    links (verification, password reset, link codes) that would prove an address or open an
    account for whoever holds the archive."""

    id: int
    to: str
    subject: str
    created_at: datetime


def to_addresses(session: Session, addresses: list[str]) -> list[Sent]:
    """Every message to these addresses, oldest first, without bodies (a member's data export)."""
    return [Sent(row.id, row.to_address, row.subject, row.created_at)
            for row in session.scalars(select(OutgoingMail).where(_to_any(addresses)).order_by(OutgoingMail.id))]


def forget(session: Session, addresses: list[str]) -> int:
    """Delete every message to these addresses (a member's erasure): how many."""
    return session.execute(delete(OutgoingMail).where(_to_any(addresses))).rowcount


def _to_any(addresses: list[str]):
    return OutgoingMail.to_index.in_([blind.index("email", a) for a in addresses])


def _message(row: OutgoingMail) -> Message:
    return Message(row.id, row.to_address, row.subject, unseal(PURPOSE, row.body_sealed).decode(), row.created_at)
