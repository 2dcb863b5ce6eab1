"""Settlement periods: calendar months in UTC, named "YYYY-MM"."""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from hub.errors import Invalid

_NAME = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")
# Months outside these years cannot hold a transfer (and their ends would overflow datetime).
FIRST_YEAR, LAST_YEAR = 1970, 9998


@dataclass(frozen=True, order=True)
class Period:
    year: int
    month: int

    @classmethod
    def parse(cls, name: str) -> "Period":
        match = _NAME.match(name or "")
        if not match or not FIRST_YEAR <= int(match.group(1)) <= LAST_YEAR:
            raise Invalid(f"period {name!r} is not a month like 2026-11", slug="invalid-period")
        return cls(int(match.group(1)), int(match.group(2)))

    @classmethod
    def containing(cls, at: datetime) -> "Period":
        at = at.astimezone(timezone.utc)
        return cls(at.year, at.month)

    @property
    def name(self) -> str:
        return f"{self.year:04d}-{self.month:02d}"

    @property
    def starts_at(self) -> datetime:
        return datetime(self.year, self.month, 1, tzinfo=timezone.utc)

    @property
    def ends_at(self) -> datetime:
        return self.next().starts_at

    def next(self) -> "Period":
        return Period(self.year + self.month // 12, self.month % 12 + 1)

    def previous(self) -> "Period":
        return Period(self.year - (self.month == 1), (self.month - 2) % 12 + 1)

    def is_over(self, now: datetime, grace: timedelta) -> bool:
        """Over once its end plus the grace has passed: transactions begun before the end
        have committed by then (their transfers are in it, not late)."""
        return now >= self.ends_at + grace

    def __str__(self) -> str:
        return self.name
