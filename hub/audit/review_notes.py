"""Review notes: why ops settled (or requeued) a redemption or a conversion that needed
review, readable by ops and nobody else.

The reason is free text that could name a member, so it is sealed at rest (hub.privacy.sealed)
and shown only on the ops console and to ops tokens (GET /conversions/{id}); never to
partners, members or webhooks, never in a log. The audit entry of the same resolution keeps
only the reason's SHA-256 (`reason_sha256`). A note is written in the transaction that
settles, so it exists if and only if the resolution committed. Erasing a member blanks the
reasons of the notes about their redemptions and conversions (`forget`); who acted, what and
when stay.

A note also keeps what the subject's `failure` said while it was in review (`in_review_for`):
settling or requeueing it replaces that text, and ops still need to know why it was there.
"""
from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import CheckConstraint, Index, String, Uuid, or_, select, update
from sqlalchemy.orm import Mapped, Session, mapped_column

from hub import pagination
from hub.audit import trail
from hub.db import Base, UTCDateTime, utcnow
from hub.errors import Invalid
from hub.exchange.models import Conversion
from hub.privacy.sealed import Sealed
from hub.rewards.models import Redemption

REDEMPTION, CONVERSION = "redemption", "conversion"
# A redemption's refund or mark_fulfilled; a conversion's applied or not_applied; either's
# requeue (noted only when given a reason).
ACTIONS = ("refund", "mark_fulfilled", "applied", "not_applied", "requeue")


class ReviewNote(Base):
    __tablename__ = "review_notes"
    __table_args__ = (
        Index("ix_review_notes_subject", "subject_kind", "subject_id", "created_at"),
        CheckConstraint(f"subject_kind IN ('{REDEMPTION}', '{CONVERSION}')", name="review_note_subject_kind"),
        CheckConstraint(f"action IN ({', '.join(repr(a) for a in ACTIONS)})", name="review_note_action"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    subject_kind: Mapped[str] = mapped_column(String(16))
    subject_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    action: Mapped[str] = mapped_column(String(16))  # one of ACTIONS
    actor: Mapped[str] = mapped_column(String(200))  # as the audit trail names them: "ops:<user>", "cli"
    # None once the member the subject belongs to is erased.
    reason: Mapped[str | None] = mapped_column(Sealed("review_notes.reason"))
    # The subject's `failure` when ops acted (it may quote a partner or provider); None once
    # the member is erased, or if it had none.
    in_review_for: Mapped[str | None] = mapped_column(Sealed("review_notes.in_review_for"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


# The longest reason kept: as the reconciliation API's `reason` (openapi). The console's
# forms say so too; the CLI and the services are held to it here.
REASON_MAX = 2000


def stripped(reason: str | None) -> str:
    """The reason, stripped ("" for none); refused past REASON_MAX characters (422
    `reason-too-long`), before anything is written."""
    reason = (reason or "").strip()
    if len(reason) > REASON_MAX:
        raise Invalid(f"say it in at most {REASON_MAX} characters", slug="reason-too-long", field="reason")
    return reason


def required(reason: str | None) -> str:
    """The reason, `stripped`; refused when there is none (422 `reason-required`)."""
    reason = stripped(reason)
    if not reason:
        raise Invalid("say why (what the partner or provider answered)", slug="reason-required", field="reason")
    return reason


def add(session: Session, kind: str, subject_id: uuid.UUID, action: str, *, reason: str, by: str,
        in_review_for: str | None) -> None:
    """Note why `by` did `action` to the subject (`reason` as `required` returns it), and what
    its `failure` said until then, in the caller's transaction."""
    session.add(ReviewNote(subject_kind=kind, subject_id=subject_id, action=action, actor=by, reason=reason,
                           in_review_for=in_review_for))
    session.flush()


def note_requeue(session: Session, kind: str, subject_id: uuid.UUID, *, reason: str | None, by: str,
                 in_review_for: str | None) -> dict:
    """Note a requeue if `reason` says why (a requeue needs none); what the requeue's audit
    entry keeps of that reason (trail.reason_digest), {} without one."""
    reason = stripped(reason)
    if not reason:
        return {}
    add(session, kind, subject_id, "requeue", reason=reason, by=by, in_review_for=in_review_for)
    return trail.reason_digest(reason)


@dataclass(frozen=True)
class Note:
    subject_kind: str
    subject_id: uuid.UUID
    action: str
    actor: str
    reason: str | None
    in_review_for: str | None
    created_at: datetime


_NOTE = (ReviewNote.subject_kind, ReviewNote.subject_id, ReviewNote.action, ReviewNote.actor, ReviewNote.reason,
         ReviewNote.in_review_for, ReviewNote.created_at)


def about(session: Session, kind: str, subject_id: uuid.UUID) -> list[Note]:
    """The notes about one redemption or conversion, oldest first."""
    q = (select(*_NOTE).where(ReviewNote.subject_kind == kind, ReviewNote.subject_id == subject_id)
         .order_by(ReviewNote.created_at, ReviewNote.id))
    return [Note(*row) for row in session.execute(q)]


def latest(session: Session, limit: int, cursor: str | None = None) -> tuple[list[Note], str | None]:
    """A page of notes about anything, newest first, and the cursor of the next page (None
    on the last)."""
    rows, next_cursor = pagination.newest_first(session, select(*_NOTE, ReviewNote.id), ReviewNote.created_at,
                                                ReviewNote.id, cursor, limit, lambda row: (row.created_at, row.id))
    return [Note(*row[:len(_NOTE)]) for row in rows], next_cursor


def forget(session: Session, member_id: uuid.UUID) -> None:
    """Blank the reasons of the notes about the member's redemptions and conversions, and what
    those said while in review (erasure)."""
    theirs = or_(
        (ReviewNote.subject_kind == REDEMPTION)
        & ReviewNote.subject_id.in_(select(Redemption.id).where(Redemption.member_id == member_id)),
        (ReviewNote.subject_kind == CONVERSION)
        & ReviewNote.subject_id.in_(select(Conversion.id).where(Conversion.member_id == member_id)))
    session.execute(update(ReviewNote).where(theirs).values(reason=None, in_review_for=None),
                    execution_options={"synchronize_session": False})
