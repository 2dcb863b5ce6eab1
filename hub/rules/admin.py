"""Managing a program's rule documents: publish a version, read the versions, check a
document without saving it. The API (hub/api/rules.py), the `hub rules` command and the
demo seed call these; publishing and the version in force are hub.rules.versions'.

A partner manages its own programs' rules (another partner's program is a 404, as if it did
not exist); ops (a token with no partner) any program's.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from hub import pagination
from hub.actor import Actor
from hub.audit import trail
from hub.db import utcnow
from hub.errors import NotFound
from hub.programs.models import Program
from hub.programs.service import partner_program, refuse_hosted
from hub.rules import document as rule_document, versions
from hub.rules.models import RuleVersion


@dataclass(frozen=True)
class VersionView:
    program: str
    version: int
    effective_from: datetime
    document: dict
    created_by: str
    created_at: datetime


def program_for(session: Session, actor: Actor, code: str) -> Program:
    """The program `code` as the caller may manage it: any for ops, its own for a partner."""
    if actor.partner_id is not None:
        return partner_program(session, actor, code)
    program = session.scalar(select(Program).where(Program.code == code))
    if program is None:
        raise NotFound(f"no program {code}", slug="program-not-found")
    return program


def _view(code: str, row: RuleVersion) -> VersionView:
    return VersionView(code, row.version, row.effective_from, row.document, row.created_by, row.created_at)


def publish(session: Session, actor: Actor, code: str, document: dict,
            effective_from: datetime | None = None, created_by: str | None = None) -> VersionView:
    """A new version of the program's rules (checked whole: a bad one saves nothing)."""
    program = program_for(session, actor, code)
    refuse_hosted(program)  # its purchases never reach the hub: rules would rate nothing
    published = versions.publish(session, program.id, document, created_by=created_by or actor.ref,
                                 effective_from=effective_from)
    trail.record(session, actor=created_by or trail.who(actor), action="rules.publish", target=f"program:{code}",
                 after={"version": published.version, "effective_from": published.effective_from.isoformat()})
    return _view(code, session.scalar(select(RuleVersion).where(
        RuleVersion.program_id == program.id, RuleVersion.version == published.version)))


def publish_if_changed(session: Session, actor: Actor, code: str, document: dict,
                       created_by: str) -> VersionView | None:
    """Publish `document` unless it is already the program's newest version (a config file
    published again, e.g. by a re-run of the demo seed): None then."""
    program = program_for(session, actor, code)
    newest = session.scalar(select(RuleVersion.document).where(
        RuleVersion.program_id == program.id).order_by(RuleVersion.version.desc()).limit(1))
    if newest == document:
        return None
    return publish(session, actor, code, document, created_by=created_by)


def current(session: Session, actor: Actor, code: str) -> tuple[VersionView | None, list[VersionView]]:
    """The version in force now (None: base rate only) and those scheduled after it."""
    program = program_for(session, actor, code)
    now = utcnow()
    # Versions take effect in the order published: the one in force is the newest started.
    started = (select(func.max(RuleVersion.version))
               .where(RuleVersion.program_id == program.id, RuleVersion.effective_from <= now)
               .scalar_subquery())
    rows = session.scalars(
        select(RuleVersion)
        .where(RuleVersion.program_id == program.id,
               or_(RuleVersion.version == started, RuleVersion.effective_from > now))
        .order_by(RuleVersion.version)
    ).all()
    views = [_view(code, r) for r in rows]
    if views and views[0].effective_from <= now:
        return views[0], views[1:]
    return None, views


def list_versions(session: Session, actor: Actor, code: str, cursor: str | None,
                  limit: int) -> tuple[list[VersionView], str | None]:
    """Every version, newest first, a page at a time."""
    program = program_for(session, actor, code)
    before = pagination.id_cursor(cursor)
    q = (select(RuleVersion).where(RuleVersion.program_id == program.id)
         .order_by(RuleVersion.version.desc()).limit(limit + 1))
    if before is not None:
        q = q.where(RuleVersion.version < before)
    rows = session.scalars(q).all()
    page = [_view(code, r) for r in rows[:limit]]
    return page, pagination.encode(page[-1].version) if len(rows) > limit else None


def get_version(session: Session, actor: Actor, code: str, version: int) -> VersionView:
    program = program_for(session, actor, code)
    row = session.scalar(select(RuleVersion).where(
        RuleVersion.program_id == program.id, RuleVersion.version == version))
    if row is None:
        raise NotFound(f"{code} has no rules version {version}", slug="rules-version-not-found")
    return _view(code, row)


def in_force_at(session: Session, actor: Actor, code: str, at: datetime) -> VersionView:
    """The version in force at `at` (for `hub rules show`)."""
    program = program_for(session, actor, code)
    row = session.scalar(select(RuleVersion).where(
        RuleVersion.program_id == program.id, RuleVersion.effective_from <= at,
    ).order_by(RuleVersion.version.desc()).limit(1))
    if row is None:
        raise NotFound(f"{code} has no rules in force at {at.isoformat()}: base rate only",
                       slug="rules-version-not-found")
    return _view(code, row)


def check(session: Session, actor: Actor, code: str | None, document) -> list[rule_document.Finding]:
    """What is wrong with `document` as the next version of program `code`'s rules (None:
    as a document alone). Nothing: it can be published."""
    previous = []
    if code is not None:
        previous = [v.document for v in versions.history(session, program_for(session, actor, code).id)]
    return rule_document.findings(document, previous)
