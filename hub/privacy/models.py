"""The data keys of envelope encryption (hub.privacy.keyring): each wrapped by a master key."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import String, Text
from sqlalchemy.orm import Mapped, mapped_column

from hub.db import Base, UTCDateTime, utcnow


class DataKey(Base):
    """A random AES-256 key, stored only wrapped (AES-GCM) by the master key `kek_id`, which
    lives in settings. The newest seals; the others still open what they sealed."""

    __tablename__ = "data_keys"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    kek_id: Mapped[str] = mapped_column(String(32))
    wrapped: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
