"""Tiers and expiry rules, table by table: expiry dates per policy, review dates per anchor,
qualification, the sections' linters, and what a holding says is due."""
from __future__ import annotations

from datetime import datetime, timezone

import pytest

from hub.rules import document, months
from hub.rules.expiry import Holding, expires_at
from hub.rules.tiers import parse
from hub.rules.versions import RuleSet


def utc(*parts) -> datetime:
    return datetime(*parts, tzinfo=timezone.utc)


@pytest.mark.parametrize("section, credited, expected", [
    # after_months: to the second, the day clipped to the month's end
    ({"policy": "after_months", "months": 12}, utc(2026, 3, 15, 10, 30), utc(2027, 3, 15, 10, 30)),
    ({"policy": "after_months", "months": 1}, utc(2026, 1, 31, 8), utc(2026, 2, 28, 8)),
    ({"policy": "after_months", "months": 1}, utc(2028, 1, 31, 8), utc(2028, 2, 29, 8)),  # leap year
    ({"policy": "after_months", "months": 18}, utc(2026, 8, 31), utc(2028, 2, 29)),
    # end_of_month: the first instant of the month after (month + after_months)
    ({"policy": "end_of_month"}, utc(2026, 3, 15, 10), utc(2026, 4, 1)),
    ({"policy": "end_of_month", "after_months": 2}, utc(2026, 3, 1), utc(2026, 6, 1)),
    ({"policy": "end_of_month", "after_months": 0}, utc(2026, 12, 31, 23, 59), utc(2027, 1, 1)),
    ({"policy": "end_of_month", "after_months": 12}, utc(2026, 12, 5), utc(2028, 1, 1)),
    # end_of_year: the first instant of the year after (year + after_years)
    ({"policy": "end_of_year"}, utc(2026, 1, 1), utc(2027, 1, 1)),
    ({"policy": "end_of_year", "after_years": 1}, utc(2026, 12, 31, 23), utc(2028, 1, 1)),
    # never
    ({"policy": "never"}, utc(2026, 1, 1), None),
    (None, utc(2026, 1, 1), None),
])
def test_expiry_date_per_policy(section, credited, expected):
    assert expires_at(section, credited) == expected


def test_a_credit_in_another_zone_expires_by_its_utc_month():
    from datetime import timedelta
    jakarta = timezone(timedelta(hours=7))
    # 2026-04-01 03:00 in Jakarta is still March 31 in UTC.
    assert expires_at({"policy": "end_of_month"}, datetime(2026, 4, 1, 3, tzinfo=jakarta)) == utc(2026, 4, 1)


def _tiers(basis="points_earned", review=None, levels=None, window=12, currency="USD"):
    section = {
        "basis": basis, "window_months": window,
        "review": review or {"every_months": 12, "anchor": "calendar"},
        "levels": levels or [
            {"code": "SILVER", "name": "Silver", "threshold": 1000},
            {"code": "GOLD", "name": "Gold", "threshold": 5000, "earn_multiplier": "1.5", "exclusive": True},
        ],
    }
    return parse(RuleSet(None, 1, utc(2026, 1, 1), {"tiers": section}), currency)


@pytest.mark.parametrize("total, level, next_level", [
    (0, None, "SILVER"),
    (999, None, "SILVER"),
    (1000, "SILVER", "GOLD"),
    (4999, "SILVER", "GOLD"),
    (5000, "GOLD", None),
    (10**9, "GOLD", None),
])
def test_qualification_by_points(total, level, next_level):
    tiers = _tiers()
    assert getattr(tiers.qualifying_level(total), "code", None) == level
    assert getattr(tiers.next_level(total), "code", None) == next_level


@pytest.mark.parametrize("currency, threshold, minor", [
    ("USD", "1000", 100000),
    ("USD", "1000.5", 100050),
    ("IDR", "1500000", 150000000),  # ISO 4217: IDR has 2 decimals
    ("JPY", "10.5", 11),  # finer than the currency's unit: reached by the next whole unit
    ("JPY", "0.1", 1),
])
def test_spend_thresholds_are_minor_units_of_the_earn_currency(currency, threshold, minor):
    tiers = _tiers(basis="spend", currency=currency, levels=[{"code": "A", "name": "A", "threshold": threshold}])
    assert tiers.levels[0].threshold == minor


@pytest.mark.parametrize("window, at, first, last", [
    # window_months calendar months, the current one included
    (12, utc(2026, 6, 15), months.index(utc(2025, 7, 1)), months.index(utc(2026, 6, 1))),
    (1, utc(2026, 6, 15), months.index(utc(2026, 6, 1)), months.index(utc(2026, 6, 1))),
    (3, utc(2026, 1, 1), months.index(utc(2025, 11, 1)), months.index(utc(2026, 1, 1))),
])
def test_the_rolling_window(window, at, first, last):
    assert _tiers(window=window).window(at) == (first, last)


JOINED = utc(2025, 3, 10, 9)
REACHED = utc(2026, 5, 31, 12)


@pytest.mark.parametrize("review, after, expected", [
    # calendar: the 1st of `month` and every every_months after it
    ({"every_months": 12, "anchor": "calendar"}, utc(2026, 5, 31), utc(2027, 1, 1)),
    ({"every_months": 12, "anchor": "calendar"}, utc(2027, 1, 1), utc(2028, 1, 1)),  # strictly after
    ({"every_months": 6, "anchor": "calendar"}, utc(2026, 5, 31), utc(2026, 7, 1)),
    ({"every_months": 12, "anchor": "calendar", "month": 4}, utc(2026, 5, 31), utc(2027, 4, 1)),
    ({"every_months": 3, "anchor": "calendar", "month": 2}, utc(2026, 5, 31), utc(2026, 8, 1)),
    # membership: anniversaries of joining
    ({"every_months": 12, "anchor": "membership"}, utc(2026, 5, 31), utc(2027, 3, 10, 9)),
    ({"every_months": 12, "anchor": "membership"}, utc(2025, 3, 10, 9), utc(2026, 3, 10, 9)),
    # tier: every_months after reaching the tier (the 31st clipped)
    ({"every_months": 12, "anchor": "tier"}, REACHED, utc(2027, 5, 31, 12)),
    ({"every_months": 1, "anchor": "tier"}, REACHED, utc(2026, 6, 30, 12)),
    ({"every_months": 1, "anchor": "tier"}, utc(2026, 6, 30, 12), utc(2026, 7, 31, 12)),
])
def test_review_dates(review, after, expected):
    assert _tiers(review=review).next_review(JOINED, REACHED, after) == expected


def _doc(tiers=None, expiry=None):
    doc = {}
    if tiers is not None:
        doc["tiers"] = {"basis": "points_earned", "window_months": 12,
                        "review": {"every_months": 12, "anchor": "calendar"}, **tiers}
    if expiry is not None:
        doc["expiry"] = expiry
    return doc


def _levels(*thresholds, **extra):
    return [{"code": f"L{i}", "name": f"Level {i}", "threshold": t, **extra} for i, t in enumerate(thresholds)]


@pytest.mark.parametrize("doc, findings", [
    (_doc({"levels": _levels(0, 1000, 5000)}), []),
    (_doc({"levels": _levels(0, 1000, 1000)}), [("/tiers/levels/2/threshold", "increase strictly")]),
    (_doc({"levels": _levels(5000, 1000)}), [("/tiers/levels/1/threshold", "increase strictly")]),
    (_doc({"levels": [{"code": "A", "name": "A", "threshold": 0}, {"code": "A", "name": "B", "threshold": 9}]}),
     [("/tiers/levels/1/code", "defined twice")]),
    (_doc({"levels": _levels(0, 10, earn_multiplier="0.9")}),
     [("/tiers/levels/0/earn_multiplier", "at least 1"), ("/tiers/levels/1/earn_multiplier", "at least 1")]),
    (_doc({"levels": _levels("100.00")}), [("/tiers/levels/0/threshold", "number of points")]),
    (_doc({"basis": "spend", "levels": _levels(100)}), [("/tiers/levels/0/threshold", "decimal string")]),
    (_doc({"basis": "spend", "levels": _levels("100", "250.50")}), []),
    (_doc({"review": {"every_months": 5, "anchor": "calendar"}, "levels": _levels(0)}),
     [("/tiers/review/every_months", "dividing 12")]),
    (_doc({"review": {"every_months": 12, "anchor": "tier", "month": 3}, "levels": _levels(0)}),
     [("/tiers/review/month", "calendar reviews only")]),
    (_doc(expiry={"policy": "after_months", "months": 24}), []),
    (_doc(expiry={"policy": "end_of_month", "months": 24}), [("/expiry/months", "does not apply")]),
    (_doc(expiry={"policy": "end_of_year", "after_months": 1}), [("/expiry/after_months", "does not apply")]),
    (_doc(expiry={"policy": "never", "notice_days": 10}), [("/expiry/notice_days", "need no notice")]),
])
def test_linters_name_the_path_of_each_contradiction(doc, findings):
    found = document.findings(doc)
    assert [f.path for f in found] == [path for path, _ in findings]
    for finding, (_, words) in zip(found, findings):
        assert words in finding.message


@pytest.mark.parametrize("doc, path", [
    (_doc(expiry={"policy": "after_months"}), "/expiry"),  # months required
    (_doc(expiry={"policy": "sometimes"}), "/expiry/policy"),
    (_doc({"levels": []}), "/tiers/levels"),
    (_doc({"levels": [{"code": "A", "name": "A", "threshold": -1}]}), "/tiers/levels/0/threshold"),
    (_doc({"levels": [{"code": "A", "name": "A", "threshold": 1, "perks": "x"}]}), "/tiers/levels/0"),
])
def test_schema_errors_have_paths(doc, path):
    assert path in [f.path for f in document.findings(doc)]


JAN, FEB, MAR = utc(2027, 1, 1), utc(2027, 2, 1), utc(2027, 3, 1)


@pytest.mark.parametrize("lots, spent, at, due", [
    ([(JAN, 100), (FEB, 50)], 0, JAN, 100),          # the January lot, whole
    ([(JAN, 100), (FEB, 50)], 30, JAN, 70),          # spending took the soonest lot first
    ([(JAN, 100), (FEB, 50)], 130, JAN, 0),          # ...and all of it, then some of February's
    ([(JAN, 100), (FEB, 50)], 130, FEB, 20),
    ([(JAN, 100), (FEB, 50)], 150, MAR, 0),          # all spent: nothing to expire
    ([(JAN, 100), (FEB, 50)], 0, utc(2026, 12, 31), 0),  # nothing has expired yet
    ([], 0, MAR, 0),                                 # never-expiring credits are no lots
])
def test_what_is_due(lots, spent, at, due):
    assert Holding(1, tuple(lots), spent).due(at) == due


def test_the_schedule_splits_what_expires_by_date_and_shows_overdue_first():
    holding = Holding(1, ((JAN, 100), (FEB, 50), (MAR, 25), (MAR, 5)), 120)
    # 120 spent: January's 100 and 20 of February's. On Feb 15, February's 30 are overdue
    # (the job has not run), then March's 30.
    assert holding.schedule(utc(2027, 2, 15)) == [(FEB, 30), (MAR, 30)]
    assert holding.schedule(utc(2026, 6, 1)) == [(FEB, 30), (MAR, 30)]
