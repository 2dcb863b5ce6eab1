"""The dashboard's progress panel (_progress.html): the member's stamp cards, streaks,
vouchers and referral code in each program that runs them, with its texts in both
languages (added to hub/web/i18n.py's catalogue at import)."""
from __future__ import annotations

import uuid

from sqlalchemy.orm import Session

from hub.rules import progress
from hub.web.i18n import add_messages

MESSAGES = {
    "en": {
        "progress.title": "Your progress",
        "progress.stamps": "{name}: {stamps} of {of} stamps",
        "progress.cards_done": "{count} card(s) completed",
        "progress.streak": "{run} of {length} {period}s in a row",
        "progress.streak_done": "Streak earned",
        "progress.period.day": "day",
        "progress.period.week": "week",
        "progress.period.month": "month",
        "progress.voucher": "Voucher for {reward}: {code}",
        "progress.referral_code": "Your referral code: {code}",
        "progress.referrals_paid": "Friends who joined and earned you a bonus: {count}",
    },
    "id": {
        "progress.title": "Kemajuan Anda",
        "progress.stamps": "{name}: {stamps} dari {of} stempel",
        "progress.cards_done": "{count} kartu selesai",
        "progress.streak": "{run} dari {length} {period} berturut-turut",
        "progress.streak_done": "Rangkaian tercapai",
        "progress.period.day": "hari",
        "progress.period.week": "minggu",
        "progress.period.month": "bulan",
        "progress.voucher": "Voucher untuk {reward}: {code}",
        "progress.referral_code": "Kode referal Anda: {code}",
        "progress.referrals_paid": "Teman yang bergabung dan memberi Anda bonus: {count}",
    },
}
add_messages(MESSAGES)


def load(session: Session, member_id: uuid.UUID) -> list[progress.Progress]:
    return progress.own(session, member_id)
