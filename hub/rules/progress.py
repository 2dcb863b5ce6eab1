"""What a member sees of the frequency rules: stamp cards, streaks, vouchers, referrals.

For a partner (its own program, a member it knows) and for the member themselves (every
program whose rules in force use one of these features). Referral codes are made on first
request (hub.rules.referrals.code_for).
"""
from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from hub.actor import Actor
from hub.db import utcnow
from hub.errors import Invalid, NotFound
from hub.programs.models import Membership, Program
from hub.programs.service import partner_program
from hub.rewards.models import Reward
from hub.rules import referrals, stamps, versions
from hub.rules.frequency_models import RewardVoucher

SECTIONS = ("stamp_cards", "streaks", "referral")


@dataclass(frozen=True)
class Voucher:
    code: str
    reward: str  # the reward's name
    reward_code: str
    issued_at: object


@dataclass(frozen=True)
class Progress:
    program: Program
    member_id: uuid.UUID
    cards: list[stamps.CardProgress]
    streaks: list[stamps.StreakRun]
    vouchers: list[Voucher]
    referral: referrals.ReferralProgress
    referrals_offered: bool


def _membership(session: Session, program: Program, member_id: uuid.UUID) -> Membership:
    membership = session.scalar(select(Membership).where(
        Membership.member_id == member_id, Membership.program_id == program.id))
    if membership is None:
        raise NotFound(f"member has no membership in {program.code}", slug="membership-not-found")
    return membership


def _of(session: Session, program: Program, membership: Membership) -> Progress:
    rules = versions.in_force(session, program.id, utcnow())
    cards, runs = stamps.progress(session, membership.id, rules)
    vouchers = [Voucher(v.code, name, code, v.issued_at) for v, name, code in session.execute(
        select(RewardVoucher, Reward.name, Reward.code).join(Reward, Reward.id == RewardVoucher.reward_id)
        .where(RewardVoucher.membership_id == membership.id).order_by(RewardVoucher.issued_at.desc()))]
    return Progress(program, membership.member_id, cards, runs, vouchers, referrals.progress(session, membership.id),
                    bool(rules and rules.section("referral")))


def for_partner(session: Session, actor: Actor, member_id: uuid.UUID, program_code: str) -> Progress:
    program = partner_program(session, actor, program_code)
    return _of(session, program, _membership(session, program, member_id))


def own(session: Session, member_id: uuid.UUID) -> list[Progress]:
    """The member's progress in every program that runs stamp cards, streaks or referrals."""
    found = []
    for membership, program in session.execute(
        select(Membership, Program).join(Program, Program.id == Membership.program_id)
        .where(Membership.member_id == member_id).order_by(Program.code)
    ):
        rules = versions.in_force(session, program.id, utcnow())
        if rules and any(rules.section(s) for s in SECTIONS):
            found.append(_of(session, program, membership))
    return found


def _code(session: Session, program: Program, membership: Membership) -> str:
    rules = versions.in_force(session, program.id, utcnow())
    if not (rules and rules.section("referral")):
        raise Invalid(f"{program.code} runs no referral program", slug="referrals-not-offered")
    return referrals.code_for(session, program.id, membership.id)


def referral_code(session: Session, actor: Actor, member_id: uuid.UUID, program_code: str) -> tuple[str, str]:
    """(program code, the member's referral code), made now if they have none."""
    program = partner_program(session, actor, program_code)
    return program.code, _code(session, program, _membership(session, program, member_id))


def own_referral_code(session: Session, member_id: uuid.UUID, program_code: str) -> tuple[str, str]:
    program = session.scalar(select(Program).where(Program.code == program_code))
    if program is None:
        raise NotFound(f"you have no membership in {program_code}", slug="membership-not-found")
    return program.code, _code(session, program, _membership(session, program, member_id))
