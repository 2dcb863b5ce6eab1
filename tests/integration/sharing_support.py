"""Set-up of the consent-gated sharing tests (hub/privacy/sharing.py): one member of two
partners, with data at both, and the matrix of every partner-facing read."""
from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from sqlalchemy import delete

from hub.actor import Actor
from hub.identity.account_models import MemberAccount
from hub.privacy import sharing
from hub.privacy.sharing_models import SharingConsent
from tests.conftest import Partner
from tests.integration.engage_support import join
from tests.integration.oidc_support import log_in
from tests.integration.test_frequency import publish
from tests.integration.test_member_transfers import give, set_policy

# Referrals, tiers and expiry in A's program, so that those reads have an answer to compare.
RULES = {
    "referral": {"referrer_points": 1, "referee_points": 1, "max_per_referrer": {"count": 10, "per": "lifetime"}},
    "tiers": {"basis": "points_earned", "window_months": 12, "review": {"every_months": 12, "anchor": "calendar"},
              "levels": [{"code": "silver", "name": "Silver", "threshold": 1}]},
    "expiry": {"policy": "end_of_year"},
}

SPEC = Path(__file__).resolve().parents[2] / "openapi" / "hub.yaml"
NONE: frozenset[str] = frozenset()


def _reads(wanted) -> set[str]:
    """Every GET whose security names a scope `wanted` accepts."""
    spec = yaml.safe_load(SPEC.read_text())
    found = set()
    for path, item in spec["paths"].items():
        op = item.get("get")
        if op is None:
            continue
        scopes = {s for requirement in op.get("security", spec.get("security", [])) for names in requirement.values()
                  for s in names}
        if any(wanted(s) for s in scopes):
            found.add(f"GET {path}")
    return found


def partner_facing_reads() -> set[str]:
    """Every GET a partner's client-credentials token may call: those whose security names a
    scope that is neither an ops scope nor a member's own (me:...)."""
    return _reads(lambda s: not s.startswith(("ops:", "me:")))


def member_reads() -> set[str]:
    """Every GET a member's token may call (a partner's brand app holds one)."""
    return _reads(lambda s: s.startswith("me:"))


class World:
    """Partner A (the one reading) and partner B; a member of both with a coalition account,
    a purchase at each, a redemption at B, and some of A's own objects to read."""

    def __init__(self, ops, http, db):
        self.db = db
        self.a, self.b = Partner(ops, http), Partner(ops, http)
        publish(db, self.a, RULES)
        publish(db, self.b, RULES)  # so that the member's own reads have a tier, progress... at B too
        login, self.cookie = log_in(db)
        self.member_id = login.member_id
        self.member = str(login.member_id)
        join(db, self.a, self.member_id)
        join(db, self.b, self.member_id)
        self.email = self._email(login.account_id)
        self.a_purchase = self.a.buy(self.member, "500000")["id"]
        self.b_purchase = self.b.buy(self.member, "700000")["id"]
        self.a_external_id = self._identifier(self.a)
        self.b_external_id = self._identifier(self.b)
        self.b_redemption = self._redemption(self.b)
        self.b_transfer = self._transfer(self.b)
        self.endpoint = self.a.api.post("/v1/webhook-endpoints", {"url": "https://hooks.example/sharing"}).json()["id"]
        self.segment = f"S{secrets.token_hex(4).upper()}"
        put = self.a.api.http.put(f"/v1/segments/{self.segment}", headers=self.a.api.headers, json={"name": "all"})
        assert put.status_code == 201, put.text
        assert self.a.api.post(f"/v1/segments/{self.segment}/refresh").status_code == 200

    def _email(self, account_id) -> str:
        with self.db.read() as s:
            return s.get(MemberAccount, account_id).email

    def _identifier(self, partner) -> str:
        (membership,) = partner.api.get(f"/v1/members/{self.member}").json()["memberships"]
        return membership["identifiers"]["external_id"]

    def _redemption(self, partner) -> str:
        reward = f"R{secrets.token_hex(4).upper()}"
        made = partner.api.post("/v1/rewards", {"code": reward, "kind": "discount", "name": "10% off",
                                                "program": partner.program, "points": 1})
        assert made.status_code == 201, made.text
        done = partner.api.post("/v1/redemptions", {"reward": reward, "program": partner.program,
                                                    "member": {"member_id": self.member}})
        assert done.status_code == 201, done.text
        return done.json()["id"]

    def _transfer(self, partner) -> str:
        """The member gives 10 points to another of the partner's members."""
        assert set_policy(partner.api, partner.program, 100, 100).status_code == 200
        given = give(partner.api, partner.program, {"member_id": partner.enrol()}, 10, sender=self.member)
        assert given.status_code == 201, given.text
        return given.json()["id"]

    # consents, as the member gives them on the dashboard
    def member_actor(self) -> Actor:
        return Actor(client_id="hub-web", partner_id=None, scopes=frozenset(), member_id=self.member_id)

    def share(self, *purposes: str, partner: Partner | None = None) -> None:
        code = (partner or self.a).code
        self.db.write(lambda s: [sharing.grant(s, self.member_actor(), code, p, sharing.DASHBOARD)
                                 for p in purposes])

    def share_nothing(self) -> None:
        self.db.write(lambda s: s.execute(delete(SharingConsent).where(SharingConsent.member_id == self.member_id)))

    def visible(self, response) -> frozenset[str]:
        """Which purposes' data of the member at B (or their profile) this answer shows (a
        refusal shows none, though its detail may repeat the id asked for)."""
        if response.status_code != 200:
            return frozenset()
        text = response.text
        markers = {sharing.PROFILE: [self.email], sharing.BALANCES: [self.b.code],
                   sharing.PURCHASE_HISTORY: [self.b_purchase, self.b_redemption]}
        return frozenset(p for p, found in markers.items() if any(marker in text for marker in found))


@dataclass(frozen=True)
class Read:
    """One partner-facing read as partner A calls it, and the purposes whose data it shows
    when the member shares them with A (none: it answers the same with or without consent)."""

    label: str
    path: object  # World -> the path with its query
    shows: frozenset[str] = field(default=NONE)
    status: int = 200  # without consent

    @property
    def id(self) -> str:
        return self.label.removeprefix("GET /") + ("" if not self.shows else " +" + "+".join(sorted(self.shows)))


def _r(label: str, path, shows=NONE, status: int = 200) -> Read:
    return Read(label, path, frozenset(shows), status)


READS = [
    _r("GET /programs", lambda w: "/v1/programs"),
    _r("GET /programs/{code}/rules", lambda w: f"/v1/programs/{w.a.program}/rules"),
    _r("GET /programs/{code}/rules/versions", lambda w: f"/v1/programs/{w.a.program}/rules/versions"),
    _r("GET /programs/{code}/rules/versions/{version}", lambda w: f"/v1/programs/{w.a.program}/rules/versions/1"),
    _r("GET /members", lambda w: f"/v1/members?external_id={w.a_external_id}"),
    _r("GET /members", lambda w: f"/v1/members?external_id={w.b_external_id}"),  # B's card: never found
    _r("GET /members/{member_id}", lambda w: f"/v1/members/{w.member}", {sharing.PROFILE}),
    _r("GET /members/{member_id}/balances", lambda w: f"/v1/members/{w.member}/balances"),
    _r("GET /members/{member_id}/balances", lambda w: f"/v1/members/{w.member}/balances?scope=coalition",
       {sharing.BALANCES}),
    _r("GET /members/{member_id}/history", lambda w: f"/v1/members/{w.member}/history"),
    _r("GET /members/{member_id}/history", lambda w: f"/v1/members/{w.member}/history?scope=coalition",
       {sharing.PURCHASE_HISTORY}),
    _r("GET /members/{member_id}/history",
       lambda w: f"/v1/members/{w.member}/history?scope=coalition&program={w.b.program}", {sharing.PURCHASE_HISTORY},
       404),
    _r("GET /members/{member_id}/tier", lambda w: f"/v1/members/{w.member}/tier?program={w.a.program}"),
    _r("GET /members/{member_id}/expiring", lambda w: f"/v1/members/{w.member}/expiring?program={w.a.program}"),
    _r("GET /challenges", lambda w: "/v1/challenges"),
    _r("GET /members/{member_id}/offers", lambda w: f"/v1/members/{w.member}/offers"),
    _r("GET /segments", lambda w: "/v1/segments"),
    _r("GET /segments/{code}", lambda w: f"/v1/segments/{w.segment}"),
    _r("GET /segments/{code}/members", lambda w: f"/v1/segments/{w.segment}/members"),
    _r("GET /transactions/{transaction_id}", lambda w: f"/v1/transactions/{w.a_purchase}"),
    # B's purchase: never A's to read
    _r("GET /transactions/{transaction_id}", lambda w: f"/v1/transactions/{w.b_purchase}", status=404),
    _r("GET /members/{member_id}/progress", lambda w: f"/v1/members/{w.member}/progress?program={w.a.program}"),
    _r("GET /members/{member_id}/referral-code", lambda w: f"/v1/members/{w.member}/referral-code?program={w.a.program}"),
    _r("GET /rewards", lambda w: "/v1/rewards"),
    _r("GET /redemptions", lambda w: f"/v1/redemptions?member_id={w.member}"),
    _r("GET /redemptions/{redemption_id}", lambda w: f"/v1/redemptions/{w.b_redemption}", status=404),  # B's: never
    _r("GET /conversions/rates", lambda w: "/v1/conversions/rates"),
    _r("GET /conversions/rates/{program}", lambda w: f"/v1/conversions/rates/{w.a.program}"),
    _r("GET /conversions", lambda w: f"/v1/conversions?member_id={w.member}"),
    _r("GET /conversions/{conversion_id}", lambda w: f"/v1/conversions/{uuid.uuid4()}", status=404),
    _r("GET /member-transfers", lambda w: f"/v1/member-transfers?member_id={w.member}"),
    _r("GET /member-transfers/{transfer_id}", lambda w: f"/v1/member-transfers/{uuid.uuid4()}", status=404),
    _r("GET /webhook-endpoints", lambda w: "/v1/webhook-endpoints"),
    _r("GET /webhook-endpoints/{endpoint_id}", lambda w: f"/v1/webhook-endpoints/{w.endpoint}"),
    _r("GET /webhook-endpoints/{endpoint_id}/deliveries", lambda w: f"/v1/webhook-endpoints/{w.endpoint}/deliveries"),
    # Settlement: money between the partner and the hub, no member's data at all.
    _r("GET /settlement/statements", lambda w: "/v1/settlement/statements"),
    _r("GET /settlement/statements/{statement_id}", lambda w: f"/v1/settlement/statements/{uuid.uuid4()}", status=404),
    _r("GET /settlement/statements/{statement_id}/lines/{line_id}/transfers",
       lambda w: f"/v1/settlement/statements/{uuid.uuid4()}/lines/1/transfers", status=404),
    _r("GET /settlement/statements/{statement_id}/export",
       lambda w: f"/v1/settlement/statements/{uuid.uuid4()}/export", status=404),
]


# --- the member's own reads through a partner's brand app ----------------------------------

ALWAYS = "me:read"  # what the consent page's `me:read` itself shares: balances and memberships everywhere


@dataclass(frozen=True)
class MemberRead:
    """One read with the member's token, as A's brand app calls it. `elsewhere`: the hub's own
    app sees the member's data at B in it; `shows`: what lets A's brand see that too (ALWAYS,
    a purpose, or None: nothing does); `status`: A's brand's answer when it may not."""

    label: str
    path: object  # World -> the path with its query
    elsewhere: bool = False
    shows: str | None = None
    status: int = 200

    @property
    def id(self) -> str:
        return self.label.removeprefix("GET /")


MEMBER_READS = [
    MemberRead("GET /me", lambda w: "/v1/me", True, ALWAYS),
    MemberRead("GET /me/expiring", lambda w: "/v1/me/expiring", True, ALWAYS),
    MemberRead("GET /me/referral-code", lambda w: f"/v1/me/referral-code?program={w.b.program}", True, ALWAYS),
    MemberRead("GET /me/tiers", lambda w: "/v1/me/tiers", True, sharing.PURCHASE_HISTORY),
    MemberRead("GET /me/progress", lambda w: "/v1/me/progress", True, sharing.PURCHASE_HISTORY),
    MemberRead("GET /me/challenges", lambda w: "/v1/me/challenges", shows=sharing.PURCHASE_HISTORY),
    MemberRead("GET /me/offers", lambda w: "/v1/me/offers", True),  # another partner's offers: never
    MemberRead("GET /me/attributes", lambda w: "/v1/me/attributes"),  # test_sharing: never the values
    MemberRead("GET /me/consents", lambda w: "/v1/me/consents"),
    MemberRead("GET /me/sharing", lambda w: "/v1/me/sharing"),
    MemberRead("GET /me/export", lambda w: "/v1/me/export", True, status=403),
    MemberRead("GET /challenges", lambda w: "/v1/challenges"),
    MemberRead("GET /conversions/rates", lambda w: "/v1/conversions/rates"),
    MemberRead("GET /conversions/rates/{program}", lambda w: f"/v1/conversions/rates/{w.a.program}"),
    MemberRead("GET /conversions", lambda w: "/v1/conversions", shows=sharing.PURCHASE_HISTORY),
    MemberRead("GET /conversions/{conversion_id}", lambda w: f"/v1/conversions/{uuid.uuid4()}", status=404),
    MemberRead("GET /member-transfers", lambda w: "/v1/member-transfers", True, sharing.PURCHASE_HISTORY),
    MemberRead("GET /member-transfers/{transfer_id}", lambda w: f"/v1/member-transfers/{w.b_transfer}", True,
               sharing.PURCHASE_HISTORY, 404),
]


def shows_elsewhere(world: World, response) -> bool:
    """Whether an answer to the member's token holds their data at B (the zip archive: always)."""
    if response.status_code != 200:
        return False
    if response.headers["content-type"] == "application/zip":
        return True
    return world.b.program in response.text or world.b_transfer in response.text
