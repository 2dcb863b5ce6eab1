"""Domain objects -> JSON-ready dicts, as the spec's response schemas describe them."""
from __future__ import annotations

from datetime import datetime, timezone

from hub import money
from hub.actor import Actor
from hub.exchange.transfers import Policy, TransferView, policy_of
from hub.programs.earning import TxnView
from hub.programs.models import Partner, Program
from hub.programs.service import BalanceView, MemberView, Movement
from hub.rules.admin import VersionView
from hub.rules.surprises import SurpriseView
from hub.rules.why import Why


def ts(value: datetime) -> str:
    """Every time the API writes is UTC, whatever zone the partner sent."""
    return value.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def partner(p: Partner) -> dict:
    return {"id": str(p.id), "code": p.code, "name": p.name, "created_at": ts(p.created_at)}


def program(p: Program, partner_code: str) -> dict:
    return {
        "id": str(p.id),
        "partner": partner_code,
        "code": p.code,
        "name": p.name,
        "point_value": format(p.point_value, "f"),
        "earn_rule": {"currency": p.earn_currency, "points_per_unit": format(p.earn_rate, "f")},
        "hosted_by": p.hosted_by,
        "transfer_policy": transfer_policy(policy_of(p)),
        "created_at": ts(p.created_at),
    }


def transfer_policy(p: Policy) -> dict:
    return {"program": p.program, "open": p.open, "max_points": p.max_points, "daily_limit": p.daily_limit}


def member_transfer(t: TransferView, caller: Actor) -> dict:
    # A member's token is held by a brand: it gets which way the points went, never the hub's
    # member ids (a partner knows its members by its own identifiers and pairwise subs).
    mine = caller.member_id is not None
    return {
        "id": str(t.id),
        "program": t.program,
        "from_member_id": None if mine else str(t.from_member_id),
        "to_member_id": None if mine else str(t.to_member_id),
        "direction": ("sent" if t.from_member_id == caller.member_id else "received") if mine else None,
        "points": t.points,
        "note": t.note,
        "created_at": ts(t.created_at),
    }


def member(m: MemberView) -> dict:
    body = {
        "id": str(m.id),
        "memberships": [
            {
                "program": v.program.code,
                "identifiers": v.identifiers,
                "created_at": ts(v.membership.created_at),
            }
            for v in m.memberships
        ],
    }
    if m.profile is not None:  # shared by the member's consent (hub/privacy/sharing.py)
        body["profile"] = {"given_name": m.profile.given_name, "family_name": m.profile.family_name,
                           "email": m.profile.email}
    return body


def balance(b: BalanceView) -> dict:
    return {
        "program": b.program.code,
        "posted": b.balance.posted,
        "pending": b.balance.debits_pending,
        "available": b.balance.available,
        "value": format((b.program.point_value * b.balance.available).normalize(), "f"),
    }


def movement(m: Movement) -> dict:
    return {
        "id": m.id,
        "program": m.program,
        "code": m.code,
        "points": m.points,
        "status": m.status,
        "hub_transaction_id": m.hub_transaction_id,
        "ref_type": m.ref_type,
        "ref_id": m.ref_id,
        "why": why(m.why) if m.why else None,
        "created_at": ts(m.created_at),
    }


def why(w: Why) -> dict:
    return {"rule_version": w.rule_version,
            "lines": [{"rule": x.rule, "kind": x.kind, "points": format(x.points, "f"), "detail": x.detail} for x in w.lines]}


def rule_version(v: VersionView) -> dict:
    return {"program": v.program, "version": v.version, "effective_from": ts(v.effective_from),
            "document": v.document, "created_by": v.created_by, "created_at": ts(v.created_at)}


def surprise(v: SurpriseView) -> dict:
    return {"id": str(v.id), "program": v.program, "member_id": str(v.member_id), "surprise_id": v.surprise_id,
            "points": v.points, "reason": v.reason, "created_at": ts(v.created_at)}


def transaction(v: TxnView) -> dict:
    t = v.txn
    out = {
        "id": str(t.id),
        "kind": t.kind,
        "program": v.program,
        "member_id": str(v.member_id),
        "transaction_id": t.partner_txn_id,
        "amount": money.to_major(t.amount_minor, t.currency),
        "currency": t.currency,
        "occurred_at": ts(t.occurred_at),
        "store_id": t.store_id,
        "points": t.points,
        "created_at": ts(t.created_at),
    }
    if t.kind == "return":
        out["purchase_id"] = str(t.purchase_id)
        out["points_shortfall"] = t.points_shortfall
    else:
        out["refunded_amount"] = money.to_major(t.refunded_minor, t.currency)
        out["points_reversed"] = t.points_reversed
        out["channel"] = t.channel
        out["items"] = [
            {**{k: v for k, v in line.items() if k != "amount_minor"},
             "amount": money.to_major(line["amount_minor"], t.currency)}
            for line in t.items
        ] if t.items is not None else None
        out["rating"] = t.rating
    return out
