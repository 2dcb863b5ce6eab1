"""A program's rule versions: publishing one, and finding the one in force at a moment.

Versions are immutable and take effect in the order they are published, never in the past:
a purchase is rated by the version in force at its occurred_at, and publishing cannot change
what an earlier purchase earned. Each process caches a program's versions and reloads them
when the program's newest version number is not the one it holds; the earn path reads that
number in the query it makes anyway, so it never rates by a stale cache.
"""
from __future__ import annotations

import bisect
import threading
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from hub.db import utcnow
from hub.errors import Invalid
from hub.rules import document as rule_document
from hub.rules.models import RuleVersion

# A version may say it starts "now" by the caller's clock, which may run a little behind.
CLOCK_SKEW = timedelta(minutes=1)


@dataclass(frozen=True)
class RuleSet:
    program_id: uuid.UUID
    version: int
    effective_from: datetime
    document: dict

    def section(self, name: str):
        """A section of the document, or None when the program does not use it."""
        return self.document.get(name)


_PUBLISHED = "hub.rules published"
_lock = threading.Lock()
# program id -> (newest version number, its versions ordered by effective_from)
_cache: dict[uuid.UUID, tuple[int, list[RuleSet]]] = {}


def latest_version(session: Session, program_id: uuid.UUID) -> int | None:
    return session.scalar(select(func.max(RuleVersion.version)).where(RuleVersion.program_id == program_id))


def _versions(session: Session, program_id: uuid.UUID, latest: int) -> list[RuleSet]:
    with _lock:
        cached = _cache.get(program_id)
    if cached is not None and cached[0] == latest:
        return cached[1]
    rows = session.scalars(
        select(RuleVersion).where(RuleVersion.program_id == program_id).order_by(RuleVersion.version)
    ).all()
    versions = [RuleSet(r.program_id, r.version, r.effective_from, r.document) for r in rows]
    # A session that published holds a version that may yet be rolled back (and its number
    # reused): what it reads is not cached.
    if versions and _PUBLISHED not in session.info:
        with _lock:
            _cache[program_id] = (versions[-1].version, versions)
    return versions


def in_force(session: Session, program_id: uuid.UUID, at: datetime, latest: int | None = -1) -> RuleSet | None:
    """The version in force at `at`, or None (the program has no rules then: base rate only).
    `latest`: the program's newest version number (None: it has none) when the caller has
    already read it; left out, it is read here (one indexed query)."""
    if latest == -1:
        latest = latest_version(session, program_id)
    if latest is None:
        return None
    versions = _versions(session, program_id, latest)
    index = bisect.bisect_right([v.effective_from for v in versions], at)
    return versions[index - 1] if index else None


def history(session: Session, program_id: uuid.UUID) -> list[RuleSet]:
    """Every version, oldest first."""
    latest = latest_version(session, program_id)
    return list(_versions(session, program_id, latest)) if latest is not None else []


def publish(session: Session, program_id: uuid.UUID, document: dict, *, created_by: str,
            effective_from: datetime | None = None) -> RuleSet:
    """A new version of the program's rules, in force from `effective_from` (default now)."""
    previous = history(session, program_id)
    rule_document.check(document, [v.document for v in previous])
    now = utcnow()
    effective_from = effective_from or now
    if effective_from < now - CLOCK_SKEW:
        raise Invalid("rules cannot take effect in the past", slug="rules-backdated")
    if previous and effective_from < previous[-1].effective_from:
        raise Invalid(
            f"version {previous[-1].version} takes effect at {previous[-1].effective_from.isoformat()};"
            " a new version cannot take effect before it",
            slug="rules-out-of-order",
        )
    # Two publishes at once: the second violates (program_id, version) and is retried.
    version = (previous[-1].version if previous else 0) + 1
    row = RuleVersion(program_id=program_id, version=version, effective_from=effective_from,
                      document=document, created_by=created_by, created_at=now)
    session.add(row)
    session.flush()
    session.info[_PUBLISHED] = True
    return RuleSet(program_id, version, effective_from, document)
