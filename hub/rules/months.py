"""Calendar-month arithmetic in UTC, shared by tiers (windows, review dates) and expiry."""
from __future__ import annotations

import calendar
from datetime import datetime, timedelta, timezone


def index(when: datetime) -> int:
    """Months since year 0 of the UTC month containing `when` (a window is a range of them)."""
    utc = when.astimezone(timezone.utc)
    return utc.year * 12 + utc.month - 1


def start(month: int) -> datetime:
    """The first instant of month `month` (an `index`)."""
    return datetime(month // 12, month % 12 + 1, 1, tzinfo=timezone.utc)


def add(when: datetime, months: int) -> datetime:
    """`when` plus whole calendar months, the day clipped to the month's last (Jan 31 + 1 ->
    Feb 28 or 29), the time of day kept."""
    utc = when.astimezone(timezone.utc)
    month = utc.year * 12 + utc.month - 1 + months
    year, month0 = divmod(month, 12)
    day = min(utc.day, calendar.monthrange(year, month0 + 1)[1])
    return utc.replace(year=year, month=month0 + 1, day=day)


def next_on_schedule(anchor: datetime, every: int, after: datetime) -> datetime:
    """The first of anchor + k * every months (k >= 1) strictly after `after`."""
    anchor = anchor.astimezone(timezone.utc)
    k = max(1, (index(after) - index(anchor)) // every)
    while True:
        candidate = add(anchor, k * every)
        if candidate > after:
            # Clipping may make an earlier k land later (Jan 31 + 1 month); step back if so.
            while k > 1 and add(anchor, (k - 1) * every) > after:
                k -= 1
                candidate = add(anchor, k * every)
            return candidate
        k += 1


def before(when: datetime) -> datetime:
    """The instant just before `when` (a window that ends at a review date excludes it)."""
    return when - timedelta(microseconds=1)
