"""Calendar periods in a program's time zone (streaks, daily caps, referral caps).

A program's day starts at midnight where it trades: its rules' earning.timezone (an IANA
name), else UTC. Periods are numbered (days, weeks from Monday, months since 1970-01) so
"the next period" is plain arithmetic.
"""
from __future__ import annotations

import functools
from datetime import date, datetime, timezone
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from hub.rules.versions import RuleSet

_EPOCH = date(1970, 1, 1)
_EPOCH_MONDAY = date(1969, 12, 29)


@functools.cache
def _zone(name: str):
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return timezone.utc  # the earning section's schema checks the name; never fail a purchase here


def zone(rules: RuleSet | None):
    name = ((rules.section("earning") if rules else None) or {}).get("timezone")
    return _zone(name) if name else timezone.utc


def local_day(at: datetime, rules: RuleSet | None) -> date:
    return at.astimezone(zone(rules)).date()


def index(at: datetime, period: str, rules: RuleSet | None) -> int:
    """The number of the day, week or month containing `at`."""
    day = local_day(at, rules)
    if period == "day":
        return (day - _EPOCH).days
    if period == "week":
        return (day - _EPOCH_MONDAY).days // 7
    if period == "month":
        return (day.year - 1970) * 12 + day.month - 1
    raise ValueError(period)


def start(at: datetime, period: str, rules: RuleSet | None) -> datetime:
    """When the month or year containing `at` began, in UTC (referral caps)."""
    day = local_day(at, rules)
    first = day.replace(day=1) if period == "month" else day.replace(month=1, day=1)
    return datetime(first.year, first.month, first.day, tzinfo=zone(rules)).astimezone(timezone.utc)
