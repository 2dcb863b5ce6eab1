"""What the schema cannot say about the `earning` and `promotions` sections: duplicate ids,
contradictory or overlapping rules, awards without a bound, caps that leave a rule nothing,
empty windows and unknown time zones. Each finding has the JSON pointer of what is wrong."""
from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from hub.rules.document import Finding
from hub.rules.rating import Conditions


def _minutes(c: Conditions) -> set[int]:
    if c.minutes is None:
        return set(range(1440))
    start, end = c.minutes
    return set(range(start, end)) if start < end else set(range(start, 1440)) | set(range(end))


def overlap(a: Conditions, b: Conditions) -> bool:
    """Could one purchase line meet both?"""
    for x, y in ((a.categories, b.categories), (a.stores, b.stores), (a.days, b.days)):
        if x is not None and y is not None and x.isdisjoint(y):
            return False
    if a.channel is not None and b.channel is not None and a.channel != b.channel:
        return False
    if a.minutes is not None and b.minutes is not None and _minutes(a).isdisjoint(_minutes(b)):
        return False
    return True


def _window(when: dict | None, path: str) -> list[Finding]:
    time = (when or {}).get("time")
    if time and time["from"] == time["to"]:
        return [Finding(f"{path}/when/time", "the time window is empty: from equals to")]
    return []


def _duplicates(items: list[dict], path: str) -> list[Finding]:
    seen: dict[str, int] = {}
    found = []
    for i, item in enumerate(items):
        if item["id"] in seen:
            found.append(Finding(f"{path}/{i}/id", f"id {item['id']!r} is already used at {path}/{seen[item['id']]}"))
        seen.setdefault(item["id"], i)
    return found


def _bounded_everywhere(rules: list[dict]) -> bool:
    """A cap rule without conditions bounds every purchase's points from this section."""
    return any(r["kind"] == "cap" and not r.get("when") and "per_transaction" in r["cap"] for r in rules)


def lint_earning(document: dict) -> list[Finding]:
    earning = document.get("earning")
    if earning is None:
        return []
    found = []
    zone = earning.get("timezone", "UTC")
    try:
        ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        found.append(Finding("/earning/timezone", f"unknown time zone {zone!r} (an IANA name, e.g. Asia/Jakarta)"))
    rules = earning.get("rules", [])
    found += _duplicates(rules, "/earning/rules")
    capped_section = _bounded_everywhere(rules)
    compiled = [Conditions.of(r.get("when")) for r in rules]
    for i, r in enumerate(rules):
        path = f"/earning/rules/{i}"
        found += _window(r.get("when"), path)
        cap = r.get("cap") or {}
        if r["kind"] != "cap" and 0 in (cap.get("per_transaction"), cap.get("per_member")):
            found.append(Finding(f"{path}/cap", "this cap is 0: the rule can never award anything"))
        if (r["kind"] == "multiplier" and Decimal(r["multiplier"]) > 1 and not cap and not capped_section
                and not r.get("allow_unbounded")):
            found.append(Finding(path, "a multiplier above 1 with no cap is unbounded: give it a cap, add a cap"
                                       " rule without conditions, or set allow_unbounded: true"))
        for j in range(i):
            o = rules[j]
            if o["kind"] != r["kind"] or o.get("priority", 0) != r.get("priority", 0):
                continue
            if not overlap(compiled[i], compiled[j]):
                continue
            if r["kind"] == "multiplier" and r.get("group") and r.get("group") == o.get("group") \
                    and Decimal(r["multiplier"]) != Decimal(o["multiplier"]):
                found.append(Finding(path, f"contradicts /earning/rules/{j} ({o['id']}): same group and priority,"
                                           " overlapping conditions, another multiplier; give one a higher priority"))
            elif r["kind"] != "cap" and not r.get("group") and not o.get("group") \
                    and (r.get("when") or {}) == (o.get("when") or {}):
                found.append(Finding(path, f"overlaps /earning/rules/{j} ({o['id']}): same kind, priority and"
                                           " conditions, so both apply; merge them or put them in one group"))
    return found


def _moment(value: str) -> datetime | None:
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        return None
    return when if when.tzinfo is not None else None


def lint_promotions(document: dict) -> list[Finding]:
    promotions = document.get("promotions")
    if promotions is None:
        return []
    found = _duplicates(promotions, "/promotions")
    for i, p in enumerate(promotions):
        path = f"/promotions/{i}"
        starts, ends = _moment(p["starts_at"]), _moment(p["ends_at"])
        for name, moment in (("starts_at", starts), ("ends_at", ends)):
            if moment is None:
                found.append(Finding(f"{path}/{name}", "not an RFC 3339 date-time with a time zone"))
        if starts and ends and ends <= starts:
            found.append(Finding(f"{path}/ends_at", "the promotion ends before it starts"))
        found += _window(p.get("when"), path)
        if "budget_points" not in p and not p.get("allow_unbounded"):
            found.append(Finding(path, "a promotion needs budget_points (or allow_unbounded: true)"))
        if p.get("budget_points") == 0:
            found.append(Finding(f"{path}/budget_points", "a budget of 0 points can never award anything"))
    return found


def lint_budget_changes(previous: list[dict], document: dict) -> list[Finding]:
    """A promotion's budget is fixed once published: its spending is counted in stripes cut
    from the first budget (hub.rules.counters), so a new figure under the same id would not
    bind. A changed budget needs a new promotion (end the old one, start one with a new id)."""
    published = {}
    for earlier in previous:
        for p in earlier.get("promotions", ()):
            published.setdefault(p["id"], p.get("budget_points"))
    found = []
    for i, p in enumerate(document.get("promotions", ())):
        if p["id"] in published and p.get("budget_points") != published[p["id"]]:
            found.append(Finding(
                f"/promotions/{i}/budget_points",
                f"promotion {p['id']} was published with a budget of {published[p['id']]} points; a budget cannot"
                " change once published: end this promotion and start one with a new id",
            ))
    return found
