"""Why a member got their points, for their history: a purchase's rating lines (stored with
the purchase by the earn path: the rule version and each rule's points), or a bonus's reason
(its award).

explain() reads a whole page of movements' purchases and awards in one query, so a history
page costs the same number of queries however many rows it shows.
"""
from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy import Integer, String, Uuid, literal, null, select, type_coerce, union_all
from sqlalchemy.orm import Session

from hub.db import JSONDoc
from hub.programs.models import PointTransaction
from hub.rules.awards import BONUS
from hub.rules.models import Award

BASE = "base"
EARN = "earn"


@dataclass(frozen=True)
class WhyLine:
    rule: str | None  # the rule's id in the document, "base", or None for a bonus
    kind: str
    # Exact, as the rating computed it: the lines of a purchase add up to its points, a
    # "rounding" line taking the fraction of a point that was rounded away.
    points: Decimal
    detail: str

    @property
    def places(self) -> int:
        """Decimal places that show the points exactly."""
        return max(0, -self.points.as_tuple().exponent)


@dataclass(frozen=True)
class Why:
    rule_version: int | None
    lines: tuple[WhyLine, ...]


@dataclass(frozen=True)
class Cause:
    """What the history knows of a movement: its ledger transfer's code, ref and points."""

    transfer_id: int
    code: str
    ref_type: str | None
    ref_id: str | None
    points: int


def _earned(cause: Cause) -> bool:
    return cause.code == EARN and cause.ref_type == "transaction"


def _bonus(cause: Cause) -> bool:
    return cause.code == BONUS and cause.ref_type == "award"


def explain(session: Session, causes: Iterable[Cause]) -> dict[int, Why]:
    """Transfer id -> why, for the movements that earned (purchases) or were a bonus."""
    causes = [c for c in causes if _earned(c) or _bonus(c)]
    purchase_ids = {uuid.UUID(c.ref_id) for c in causes if _earned(c)}
    award_ids = {uuid.UUID(c.ref_id) for c in causes if _bonus(c)}
    parts = []
    if purchase_ids:
        parts.append(_columns(PointTransaction.id, "purchase", PointTransaction.rule_version, PointTransaction.rating,
                              null(), null()).where(PointTransaction.id.in_(purchase_ids)))
    if award_ids:
        parts.append(_columns(Award.id, "award", null(), null(), Award.kind, Award.reason)
                     .where(Award.id.in_(award_ids)))
    if not parts:
        return {}
    found = {str(row[0]): row[1:] for row in session.execute(parts[0] if len(parts) == 1 else union_all(*parts))}
    out = {}
    for cause in causes:
        row = found.get(str(uuid.UUID(cause.ref_id)))
        if row is not None:
            out[cause.transfer_id] = _why(cause, *row)
    return out


def _columns(id_, source: str, rule_version, rating, kind, reason):
    """The one row shape of both sources (a UNION needs it), each column named and typed."""
    return select(
        type_coerce(id_, Uuid).label("id"), literal(source, String).label("source"),
        type_coerce(rule_version, Integer).label("rule_version"), type_coerce(rating, JSONDoc).label("rating"),
        type_coerce(kind, String).label("kind"), type_coerce(reason, String).label("reason"))


def _why(cause: Cause, source: str, rule_version, rating, kind, reason) -> Why:
    if source == "award":
        return Why(None, (WhyLine(None, kind, Decimal(cause.points), reason),))
    if not rating:
        return Why(rule_version, (WhyLine(BASE, BASE, Decimal(cause.points), "base rate"),))
    return Why(rule_version, tuple(
        WhyLine(None if line.get("rule") is None else str(line["rule"]), line.get("kind") or "rule", Decimal(line.get("points", "0")), line.get("detail") or "")
        for line in rating.get("lines", ())))
