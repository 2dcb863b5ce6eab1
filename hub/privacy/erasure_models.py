"""The record of an erased member (hub/privacy/erasure.py): the member id stays (a pseudonym
the ledger and settlement still name), this row says its person is gone."""
from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from hub.db import Base, JSONDoc, UTCDateTime, utcnow


class MemberErasure(Base):
    __tablename__ = "member_erasures"

    member_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("members.id"), primary_key=True)
    # Who asked: "member" (the account pages) or the ops actor (CLI, console).
    caused_by: Mapped[str] = mapped_column(String(120))
    # Points left in each program when the member left, forfeited to its breakage account:
    # {program code: points}. No personal data (the ledger has the same figures).
    forfeited: Mapped[dict] = mapped_column(JSONDoc)
    erased_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
