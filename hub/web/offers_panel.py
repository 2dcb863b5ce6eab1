"""The dashboard's offers and badges (templates/_offers.html): the member's top offers
(hub/rules/offers.py), challenges in progress and badges earned (hub/rules/challenges.py),
with their texts in English and Bahasa Indonesia."""
from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy.orm import Session

from hub.rules import challenges, offers
from hub.web.i18n import add_messages

OFFERS_ON_HOME = 5


@dataclass(frozen=True)
class Panel:
    offers: list[offers.Offer]
    in_progress: list[challenges.MemberChallenge]
    badges: list[challenges.MemberChallenge]


def panel(session: Session, member_id: uuid.UUID) -> Panel:
    top = [o for o in offers.for_member(session, member_id, limit=OFFERS_ON_HOME + 10) if o.kind != "challenge"]
    in_progress, done = challenges.of_member(session, member_id)
    # Challenges have their own list with progress: the offers here are the rest.
    return Panel(top[:OFFERS_ON_HOME], in_progress, done)


add_messages({
    "en": {
        "offers.title": "Offers for you",
        "offers.caption": "Offers picked for you, most relevant first",
        "offers.offer": "Offer",
        "offers.why": "Why",
        "offers.ends": "Ends",
        "offers.none": "No offers for you right now.",
        "offers.reason.affordable": "You can have it now for {points} {program} points",
        "offers.reason.almost_affordable": "{progress} of the {points} {program} points it takes",
        "offers.reason.everyone": "For every {program} member",
        "offers.reason.tier": "For your tier in {program}",
        "offers.reason.segment": "Picked for you by {program}",
        "offers.challenges_title": "Challenges",
        "offers.challenge_progress": "{name}: {progress} of {target}",
        "offers.challenge_bonus": "Bonus: {points} {program} points",
        "offers.no_challenges": "No challenges running right now.",
        "offers.badges_title": "Your badges",
        "offers.badge": "{badge}, for “{challenge}”",
        "offers.no_badges": "No badges yet: complete a challenge to earn one.",
    },
    "id": {
        "offers.title": "Penawaran untuk Anda",
        "offers.caption": "Penawaran pilihan untuk Anda, yang paling relevan lebih dulu",
        "offers.offer": "Penawaran",
        "offers.why": "Alasan",
        "offers.ends": "Berakhir",
        "offers.none": "Belum ada penawaran untuk Anda saat ini.",
        "offers.reason.affordable": "Bisa Anda dapatkan sekarang dengan {points} poin {program}",
        "offers.reason.almost_affordable": "{progress} dari {points} poin {program} yang dibutuhkan",
        "offers.reason.everyone": "Untuk semua anggota {program}",
        "offers.reason.tier": "Untuk tingkat Anda di {program}",
        "offers.reason.segment": "Dipilih untuk Anda oleh {program}",
        "offers.challenges_title": "Tantangan",
        "offers.challenge_progress": "{name}: {progress} dari {target}",
        "offers.challenge_bonus": "Bonus: {points} poin {program}",
        "offers.no_challenges": "Belum ada tantangan yang berjalan saat ini.",
        "offers.badges_title": "Lencana Anda",
        "offers.badge": "{badge}, untuk “{challenge}”",
        "offers.no_badges": "Belum ada lencana: selesaikan tantangan untuk mendapatkannya.",
    },
})
