"""A member's data export (issue 7, item 4): every row the hub keeps about one member, as a
zip of JSON files with a manifest (docs/privacy.md, "Export").

Each data area is a collector in a small registry: `register` (a collector of a `Subject`)
or `register_rows` (a `(session, member_id) -> rows` function of another package). The
archive has one `<area>.json` per collector, `manifest.json` (format, member, time, and what
each file holds) and `README.txt`. Secrets are never exported: password and token hashes,
sealed values are left out (the sealed ones the member owns are unsealed: gift-card codes,
recipients; mail is listed without its bodies, which hold live links).
"""
from __future__ import annotations

import io
import json
import uuid
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from hub import ledger
from hub.actor import Actor
from hub.audit import trail
from hub.db import utcnow
from hub.errors import Forbidden, NotFound
from hub.exchange.models import Conversion, MemberTransfer
from hub.identity import mail
from hub.identity.account_models import LinkRequest, LoginSession, MemberAccount
from hub.identity.oidc.models import Consent, Grant, PairwiseSubject
from hub.ledger.models import Transfer
from hub.privacy import blind, sharing
from hub.programs.models import Member, Membership, MembershipIdentifier, PointTransaction, Program
from hub.rewards import redemptions
from hub.rewards.models import Redemption, RedemptionLeg, Reward
from hub.rules.engage_models import ChallengeEntrant, MemberAttribute, MemberBadge
from hub.rules.frequency_models import (
    EngagementEvent,
    Referral,
    ReferralCode,
    RewardVoucher,
    StampProgress,
    StreakProgress,
)
from hub.rules.models import Award, Segment, SegmentMember
from hub.rules.standing_models import ExpiryNotice, TierBucket, TierChange

FORMAT = "coalition-hub-member-export/1"

# Columns that hold secrets (hashes, sealed blobs): never exported as they are.
SECRET_COLUMNS = frozenset({
    "password_hash", "totp_secret_sealed", "totp_last_step", "token_hash", "cookie_hash", "code_hash",
    "recipient_sealed", "delivery_sealed", "body_sealed",
})


@dataclass(frozen=True)
class Subject:
    """The member being exported (or erased) and what a collector may need."""

    session: Session
    member_id: uuid.UUID

    def memberships(self) -> list[tuple[Membership, Program]]:
        return self.session.execute(
            select(Membership, Program).join(Program, Program.id == Membership.program_id)
            .where(Membership.member_id == self.member_id).order_by(Program.code)).all()

    def membership_ids(self) -> list[uuid.UUID]:
        return [m.id for m, _ in self.memberships()]

    def account(self) -> MemberAccount | None:
        return self.session.scalar(select(MemberAccount).where(MemberAccount.member_id == self.member_id))


@dataclass(frozen=True)
class Area:
    name: str
    description: str
    collect: Callable[[Subject], object]


AREAS: dict[str, Area] = {}


def register(name: str, description: str):
    """Decorator: `collect(subject) -> JSON-able rows` becomes the archive's `<name>.json`."""
    def add(collect: Callable[[Subject], object]):
        if name in AREAS:
            raise ValueError(f"export area {name!r} is already registered")
        AREAS[name] = Area(name, description, collect)
        return collect
    return add


def register_rows(name: str, description: str, export_rows: Callable[[Session, uuid.UUID], object]) -> None:
    """Register another package's `export_rows(session, member_id)`."""
    register(name, description)(lambda subject: export_rows(subject.session, subject.member_id))


def jsonable(value):
    if isinstance(value, (uuid.UUID, Decimal)):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    return value


def row(obj, **extra) -> dict:
    """An ORM row's columns (secrets left out), plus `extra`."""
    columns = {c.key: getattr(obj, c.key) for c in obj.__mapper__.column_attrs if c.key not in SECRET_COLUMNS}
    return jsonable({**columns, **extra})


def _rows(subject: Subject, model, *conditions) -> list[dict]:
    return [row(r) for r in subject.session.scalars(select(model).where(*conditions))]


def build(session: Session, member_id: uuid.UUID, *, now: datetime | None = None) -> bytes:
    """The archive (zip bytes) of everything the hub keeps about the member."""
    subject = Subject(session, member_id)
    files = {name: area.collect(subject) for name, area in AREAS.items()}
    manifest = {
        "format": FORMAT, "member_id": str(member_id), "generated_at": (now or utcnow()).isoformat(),
        "files": {f"{name}.json": area.description for name, area in AREAS.items()},
    }
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("manifest.json", json.dumps(manifest, indent=2))
        archive.writestr("README.txt", _readme(manifest))
        for name, content in files.items():
            archive.writestr(f"{name}.json", json.dumps(jsonable(content), indent=2, ensure_ascii=False))
    return buffer.getvalue()


def archive(db, member_id: uuid.UUID) -> bytes:
    """`build` in one read transaction, for a member that exists (else 404)."""
    with db.read() as session:
        if session.get(Member, member_id) is None:
            raise NotFound("no such member", slug="member-not-found")
        return build(session, member_id)


def ops_archive(db, member_id: uuid.UUID, by: str) -> bytes:
    """The archive for ops answering the member's request: the trail records who took it
    (committed before the archive is handed over, so no export goes unrecorded)."""
    data = archive(db, member_id)
    db.write(lambda session: trail.record(session, actor=by, action="member.export", target=f"member:{member_id}",
                                          after={"bytes": len(data)}))
    return data


def own_archive(db, actor: Actor) -> bytes:
    """The member's own archive, through the hub's pages or a first-party app only: it holds
    everything (other partners' purchases, gift-card codes), so a partner's app, whose token
    sees only what its partner may (docs/consent.md), never gets it."""
    with db.read() as session:
        if sharing.brand_partner(session, actor) is not None:
            raise Forbidden("a partner's app cannot download the member's data: the member downloads it "
                            "on the hub's dashboard", slug="export-refused")
    return archive(db, actor.member_id)


def _readme(manifest: dict) -> str:
    lines = [f"Your data at the coalition hub (member {manifest['member_id']}), {manifest['generated_at']}.",
             "Each file is JSON (UTF-8; times ISO 8601 UTC; points are integers, money minor units).", ""]
    lines += [f"{name}: {description}" for name, description in manifest["files"].items()]
    return "\n".join(lines) + "\n"


# --- the hub's own data areas -------------------------------------------------------------

@register("account", "Your login: email, names, language, whether two-step login is on (never the password or secrets).")
def _account(subject: Subject):
    account = subject.account()
    if account is None:
        return None
    return row(account, totp_enabled=account.totp_enabled_at is not None)


@register("memberships", "Your programs: identifiers partners know you by, tier and balance.")
def _memberships(subject: Subject):
    found = []
    for membership, program in subject.memberships():
        identifiers = subject.session.scalars(
            select(MembershipIdentifier).where(MembershipIdentifier.membership_id == membership.id))
        balance = ledger.balance(subject.session, membership.account_id)
        found.append(row(membership, program=program.code, program_name=program.name,
                         identifiers={i.kind: i.value for i in identifiers},
                         balance={"posted": balance.credits_posted - balance.debits_posted,
                                  "pending_debits": balance.debits_pending}))
    return found


@register("ledger", "Every points movement in or out of your accounts.")
def _ledger(subject: Subject):
    accounts = {m.account_id: p.code for m, p in subject.memberships()}
    if not accounts:
        return []
    rows = subject.session.scalars(select(Transfer).where(or_(
        Transfer.debit_account_id.in_(list(accounts)), Transfer.credit_account_id.in_(list(accounts))))
        .order_by(Transfer.id))
    return [row(t, program=accounts.get(t.debit_account_id) or accounts.get(t.credit_account_id),
                direction="out" if t.debit_account_id in accounts else "in") for t in rows]


@register("purchases", "Purchases and returns partners posted, their items and how they were rated.")
def _purchases(subject: Subject):
    return _rows(subject, PointTransaction, PointTransaction.membership_id.in_(subject.membership_ids()))


@register("redemptions", "Rewards you ordered, who receives them and what was delivered (gift-card codes).")
def _redemptions(subject: Subject):
    found = []
    for r, reward_code in subject.session.execute(
            select(Redemption, Reward.code).join(Reward, Reward.id == Redemption.reward_id)
            .where(Redemption.member_id == subject.member_id).order_by(Redemption.created_at)):
        legs = _rows(subject, RedemptionLeg, RedemptionLeg.redemption_id == r.id)
        found.append(row(r, reward=reward_code, legs=legs,
                         recipient=redemptions.unseal(r.recipient_sealed),
                         delivery=redemptions.unseal(r.delivery_sealed)))
    return found


@register("conversions", "Points you converted between programs.")
def _conversions(subject: Subject):
    return _rows(subject, Conversion, Conversion.member_id == subject.member_id)


@register("member_transfers", "Points you gave to or received from other members.")
def _member_transfers(subject: Subject):
    return _rows(subject, MemberTransfer, or_(MemberTransfer.from_member_id == subject.member_id,
                                              MemberTransfer.to_member_id == subject.member_id))


@register("standing", "Tier history, monthly qualifying totals and expiry notices.")
def _standing(subject: Subject):
    ids = subject.membership_ids()
    accounts = [m.account_id for m, _ in subject.memberships()]
    return {
        "tier_changes": _rows(subject, TierChange, TierChange.membership_id.in_(ids)),
        "tier_buckets": _rows(subject, TierBucket, TierBucket.membership_id.in_(ids)),
        "expiry_notices": _rows(subject, ExpiryNotice, ExpiryNotice.account_id.in_(accounts)),
    }


@register("engagement", "Bonus awards, stamp cards, streaks, vouchers, referrals, engagement events, challenges.")
def _engagement(subject: Subject):
    ids = subject.membership_ids()
    return {
        "awards": _rows(subject, Award, Award.membership_id.in_(ids)),
        "stamp_cards": _rows(subject, StampProgress, StampProgress.membership_id.in_(ids)),
        "streaks": _rows(subject, StreakProgress, StreakProgress.membership_id.in_(ids)),
        "vouchers": _rows(subject, RewardVoucher, RewardVoucher.membership_id.in_(ids)),
        "referral_codes": _rows(subject, ReferralCode, ReferralCode.membership_id.in_(ids)),
        "referrals": _rows(subject, Referral, or_(Referral.referrer_membership_id.in_(ids),
                                                  Referral.referee_membership_id.in_(ids))),
        "events": _rows(subject, EngagementEvent, EngagementEvent.membership_id.in_(ids)),
        "challenges": _rows(subject, ChallengeEntrant, ChallengeEntrant.member_id == subject.member_id),
        "badges": _rows(subject, MemberBadge, MemberBadge.member_id == subject.member_id),
    }


@register("profile", "What you told partners about yourself, and the segments you are in.")
def _profile(subject: Subject):
    segments = subject.session.execute(
        select(Segment.code, Segment.name, SegmentMember.since).join(Segment, Segment.id == SegmentMember.segment_id)
        .where(SegmentMember.member_id == subject.member_id))
    return {
        "attributes": _rows(subject, MemberAttribute, MemberAttribute.member_id == subject.member_id),
        "segments": [jsonable({"segment": c, "name": n, "since": s}) for c, n, s in segments],
    }


register_rows("sharing_consents", "What you chose to let each partner see (per purpose), and every grant and withdrawal.",
              sharing.export_rows)


@register("sign_in", "Brands you signed in to (consents, grants, pairwise ids), login sessions, link requests.")
def _sign_in(subject: Subject):
    account = subject.account()
    by_account = [] if account is None else [account.id]
    return {
        "consents": _rows(subject, Consent, Consent.member_id == subject.member_id),
        "grants": _rows(subject, Grant, Grant.member_id == subject.member_id),
        "pairwise_subjects": _rows(subject, PairwiseSubject, PairwiseSubject.member_id == subject.member_id),
        "login_sessions": _rows(subject, LoginSession, LoginSession.account_id.in_(by_account)),
        "link_requests": _rows(subject, LinkRequest, LinkRequest.account_id.in_(by_account)),
    }


@register("mail", "Messages the hub sent you (to your login email or a membership's email no other member "
                  "uses): to whom, the subject and when; never the text, which holds live links.")
def _mail(subject: Subject):
    return [jsonable({"id": m.id, "to": m.to, "subject": m.subject, "created_at": m.created_at})
            for m in mail.to_addresses(subject.session, own_addresses(subject))]


def addresses(subject: Subject) -> list[str]:
    """The member's email addresses: the login's and every membership's (where the hub mails)."""
    account = subject.account()
    found = [] if account is None else [account.email]
    found += [i.value for i in subject.session.scalars(select(MembershipIdentifier).where(
        MembershipIdentifier.membership_id.in_(subject.membership_ids()), MembershipIdentifier.kind == "email"))]
    return list(dict.fromkeys(found))


def own_addresses(subject: Subject) -> list[str]:
    """Those of the member's addresses no other member uses (as login or membership email):
    mail to a shared address may be the other member's, so export leaves it out and erasure
    keeps it."""
    s, mine = subject.session, addresses(subject)
    indexes = {blind.index("email", a): a for a in mine}
    shared = set(s.scalars(select(MemberAccount.email_index).where(
        MemberAccount.email_index.in_(indexes), MemberAccount.member_id != subject.member_id)))
    shared |= set(s.scalars(
        select(MembershipIdentifier.value_index).join(Membership, Membership.id == MembershipIdentifier.membership_id)
        .where(MembershipIdentifier.kind == "email", MembershipIdentifier.value_index.in_(indexes),
               Membership.member_id != subject.member_id)))
    return [a for i, a in indexes.items() if i not in shared]
