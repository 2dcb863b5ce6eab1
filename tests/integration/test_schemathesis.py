"""Property-based conformance test of the whole API against openapi/hub.yaml (schemathesis).

Every operation of the spec, as the app serves it at /v1/openapi.json, is called in-process on
the ASGI app with schemathesis-generated requests, valid (positive) and spec-violating
(negative), from its coverage phase (boundary values, missing fields, wrong types, other
methods and media types) and its fuzzing phase. Every response must:

- not be a 5xx (not_a_server_error),
- have a status, content type, headers and body the spec documents for the operation
  (status_code_conformance, content_type_conformance, response_headers_conformance,
  response_schema_conformance),
- be a 4xx when the request breaks the spec (negative_data_rejection).

Every call carries a valid bearer token, so requests get past auth into the handlers: a partner
token where the operation accepts a partner's scopes, an ops token where it needs ops scopes.
Three in four fuzzed cases are also pointed at real data: a seeded partner's program, member
(with all four identifiers) and purchase replace the generated codes, ids and identifiers
wherever the case is meant to be valid, so success paths run too rather than only 404s, and odd
but valid values (foreign cursors, edge timestamps, amounts) reach the domain code. The test
fails if some operation never answers 2xx, i.e. if the seeding stops reaching it.

Generation is derandomized with a fixed seed and no example database, so a run is repeatable;
it takes 20-25 s on SQLite and on PostgreSQL.
"""
from __future__ import annotations

import collections
import itertools
import secrets
import uuid
from decimal import ROUND_DOWN, Decimal

import pytest
import schemathesis
from hypothesis import strategies as st
from schemathesis.checks import (
    content_type_conformance,
    negative_data_rejection,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.core.parameters import ParameterLocation

from hub import pagination
from hub.db import utcnow
from hub.api import runtime
from hub.rewards.providers import WebhookEvent
from hub.identity.clients import PARTNER_SCOPES
from hub.identity.oidc.clients import MEMBER_SCOPES
from tests.integration.settlement_support import SEEDED_PERIOD, seed_statement
from tests.integration.oidc_support import SCOPE, Browser, RelyingParty, log_in
from tests.integration.test_frequency import publish as publish_rules
from tests.integration.test_oidc import register, sign_in

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
    negative_data_rejection,
]

CONFIG = {
    # `deterministic` is Hypothesis' derandomize; the seed fixes what schemathesis draws itself.
    # No example database: a failure found once must not change what later runs generate.
    "seed": 20261123,
    "generation": {"max-examples": 40, "deterministic": True, "database": "none"},
    # No health check is suppressed: none fires with these strategies.
}

BODY, PATH, QUERY = ParameterLocation.BODY, ParameterLocation.PATH, ParameterLocation.QUERY
IDENTIFIER_KINDS = ("external_id", "card_number", "phone", "email")

PAST = "2026-01-01T00:00:00Z"
AFTER_PURCHASE = "2026-11-02T00:00:00Z"  # the seeded purchase occurred on 2026-11-01
# Valid RFC 3339 date-times at the edges: the first and last days a datetime holds, in zones that
# put them outside that range in UTC, and more fractional digits than a microsecond.
ODD_TIMES = [
    "0001-01-01T00:00:00+14:00",
    "0001-01-01T00:00:00Z",
    "9999-12-31T23:59:59-14:00",
    "2025-12-31T23:59:59.999999999+05:45",
]
# Cursors that match the parameter's pattern but were never issued: other JSON values, ids out
# of range, a NUL in a code, NaN.
ODD_CURSORS = [pagination.encode(v) for v in ("x", {}, [], None, True, 1.5, -1, 0, 10**30, "A\x00")]
ODD_CURSORS.append("TmFO")


class Seed:
    """A partner's real program, member and purchase, and how to point a generated case at them.

    Only the parts of a case that were generated valid are changed, and only to other valid
    values, so a positive case stays positive and a negative one keeps what makes it negative.
    """

    def __init__(self, partner, ops, member_session=None):
        self.partner = partner.code
        self.program = partner.program
        self.identifiers = {
            "external_id": "st-member-1",
            "card_number": "4000123412341234",
            "phone": "+6281234567890",
            "email": "member@example.com",
        }
        self.member = partner.enrol(**self.identifiers)
        self.identifiers["member_id"] = self.member
        # The member signed in on the partner's brand site (single sign-on): their access token
        # for /v1/me, the pairwise `subject` the partner knows them by, and a second partner's
        # consent for DELETE /v1/me/consents/{partner} to withdraw.
        (self.member_token, self.identifiers["subject"], self.consented,
         self.consented_token, self.own_app_token) = member_session(self.member)
        self.purchase = partner.buy(self.member, "100000000", txn="st-purchase-1")["id"]
        # A position in a list newest first (time, id), as /member-transfers and /conversions issue.
        position = pagination.encode([PAST, str(uuid.uuid4())])
        self.cursors = [pagination.encode(self.program), pagination.encode(1), position, *ODD_CURSORS]
        self.reward = f"ST-{secrets.token_hex(4).upper()}"
        made = partner.api.post("/v1/rewards", {"code": self.reward, "kind": "discount", "name": "10% off",
                                                "program": self.program, "points": 1})
        assert made.status_code == 201, made.text
        # A coalition reward priced in units (only ops make those): what `pay_with` can pay,
        # 10 units, one of the seeded program's points.
        self.pooled_reward = f"ST-{secrets.token_hex(4).upper()}"
        made = ops.post("/v1/rewards", {"code": self.pooled_reward, "kind": "discount", "name": "10% off",
                                        "units": "10"})
        assert made.status_code == 201, made.text
        self.redemption = partner.api.post(
            "/v1/redemptions", {"reward": self.reward, "program": self.program, "member": {"member_id": self.member}}
        ).json()["id"]
        self._webhooks(partner)
        self._conversions(partner)  # its conversion.completed makes the seeded endpoint a delivery
        self.webhook_delivery = partner.api.get(
            f"/v1/webhook-endpoints/{self.webhook_endpoint}/deliveries").json()["items"][0]["id"]
        self._member_transfers(partner)
        self._rules(partner)
        self._reconciliation(ops)
        self.bodies = {
            "POST /members": self._enrolment,
            "POST /transactions": self._purchase,
            "POST /transactions/batch": self._batch,
            "POST /returns": self._return,
            "POST /programs": self._program,
            "POST /clients": self._client,
            "POST /rewards": self._reward,
            "POST /redemptions": self._redemption,
            "POST /conversions/quotes": self._quote,
            "POST /conversions": self._conversion,
            "POST /conversions/rates": self._rate,
            "POST /member-transfers": self._member_transfer,
            "POST /programs/{code}/rules/preview": self._preview,
            "POST /webhook-endpoints": self._webhook_endpoint,
            "POST /challenges": self._challenge,
            "POST /programs/{code}/surprises": self._surprise,
            "POST /engagement-events": self._engagement_event,
            "POST /reconciliation/runs": self._report,
        }

    def _webhooks(self, partner):
        """Two webhook endpoints of the partner: one the run disables (DELETE), one that stays
        enabled for rotations and replays."""
        self.webhook_endpoint, self.doomed_endpoint = (
            partner.api.post("/v1/webhook-endpoints", {"url": f"https://hooks.example/{name}"}).json()["id"]
            for name in ("kept", "doomed"))

    def _conversions(self, partner):
        """A second program of the partner, the member in it, the pair between the two open,
        and one conversion done; a third program, in no pair, whose rate the run may change."""
        self.program_b, self.program_c = (f"G{letter}{secrets.token_hex(3).upper()}" for letter in "BC")
        for code in (self.program_b, self.program_c):
            made = partner.ops.post("/v1/programs", {"partner": self.partner, "code": code, "name": code,
                                                     "point_value": "4", "earn_rule": {"currency": "IDR",
                                                                                       "points_per_unit": "0.001"}})
            assert made.status_code == 201, made.text
        assert partner.api.post("/v1/members", {"program": self.program_b, "member_id": self.member}).status_code == 201
        for source, target in ((self.program, self.program_b), (self.program_b, self.program)):
            opened = partner.ops.http.put(f"/v1/conversions/pairs/{source}/{target}", json={"open": True},
                                          headers=partner.ops.headers)
            assert opened.status_code == 200, opened.text
        self.partner_api = partner.api
        self.conversion = partner.api.post("/v1/conversions", {"quote": self._new_quote(10)}).json()["id"]

    def _new_quote(self, points: int) -> str:
        made = self.partner_api.post("/v1/conversions/quotes", {
            "from": self.program, "to": self.program_b, "points": points, "member": {"member_id": self.member}})
        assert made.status_code == 201, made.text
        return made.json()["quote"]

    def _member_transfers(self, partner):
        """The seeded program open to transfers, at most 1,000 points each (so the run cannot
        drain what the other operations spend); a second member, known by every identifier
        but a subject, to give to; and one transfer done. The policy operation gets the third
        program, so that closing it leaves the seeded one open."""
        opened = partner.api.http.put(f"/v1/programs/{self.program}/transfer-policy", headers=partner.api.headers,
                                      json={"max_points": 1000, "daily_limit": 10**12})
        assert opened.status_code == 200, opened.text
        self.recipient = {"external_id": "st-member-2", "card_number": "4000123412345678",
                          "phone": "+6281234567891", "email": "member2@example.com"}
        self.recipient["member_id"] = partner.enrol(**self.recipient)
        self.transfer = partner.api.post("/v1/member-transfers", {
            "program": self.program, "from": {"member_id": self.member},
            "to": {"member_id": self.recipient["member_id"]}, "points": 1}).json()["id"]

    def _rules(self, partner):
        """Rules for the third program (where every program path points): version 1 for
        GET /rules/versions/{version}, and the member in it for their surprise rewards."""
        published = partner.api.http.put(f"/v1/programs/{self.program_c}/rules", json={"document": {}},
                                         headers=partner.api.headers)
        assert published.status_code == 201, published.text
        assert partner.api.post("/v1/members", {"program": self.program_c, "member_id": self.member}).status_code == 201

    def _reconciliation(self, ops):
        """A run of a Tango report of orders the hub never placed: exceptions to resolve (each
        once: the run takes them in turn)."""
        made = ops.post("/v1/reconciliation/runs", {"provider": "tango", "csv": self._tango_report(
            f"rdm{uuid.uuid4().hex}" for _ in range(20))})
        assert made.status_code == 201, made.text
        self.reconciliation_run = made.json()["id"]
        found = ops.get("/v1/reconciliation/exceptions", run_id=self.reconciliation_run).json()["items"]
        self.reconciliation_exceptions = itertools.cycle([e["id"] for e in found])

    @staticmethod
    def _tango_report(references) -> str:
        from partners.tango.report import HEADER

        return "\r\n".join([",".join(HEADER), *(
            f"RA-{n},{ref},2026-11-01 10:00:00,hub-sandbox,U157189,Starbucks Card $10.00,10.00,USD,COMPLETE"
            for n, ref in enumerate(references))]) + "\r\n"

    def apply(self, case, rnd):
        # A quarter stay as generated: unknown codes and ids must give clean 404s too.
        # (Hypothesis starts from 0.0, so its first, simplest cases are seeded ones.)
        if rnd.random() > 0.75:
            return case
        meta = case.meta
        if not meta.is_negative_at(PATH):
            self._path(case.path_parameters or {})
            if case.operation.label == "DELETE /webhook-endpoints/{endpoint_id}":
                case.path_parameters["endpoint_id"] = self.doomed_endpoint
            if case.operation.label in SHARING_CHANGES:  # a partner the member belongs to
                case.path_parameters["partner"] = self.partner
        if not meta.is_negative_at(QUERY):
            self._query(case.query or {}, rnd)
        rule = self.bodies.get(case.operation.label)
        if rule and not meta.is_negative_at(BODY) and isinstance(case.body, dict):
            rule(case.body, rnd)
        return case

    def _path(self, path):
        if "partner" in path:
            path["partner"] = self.consented
        if "member_id" in path:
            path["member_id"] = self.member
        if "transaction_id" in path:
            path["transaction_id"] = self.purchase
        if "redemption_id" in path:
            path["redemption_id"] = self.redemption
        if "provider" in path:
            path["provider"] = WEBHOOK_PROVIDER
        if "conversion_id" in path:
            path["conversion_id"] = self.conversion
        if "transfer_id" in path:
            path["transfer_id"] = self.transfer
        if "endpoint_id" in path:
            path["endpoint_id"] = self.webhook_endpoint
        if "delivery_id" in path:
            path["delivery_id"] = self.webhook_delivery
        if "code" in path:
            path["code"] = self.program_c
        if "program" in path:
            path["program"] = self.program_c
        if "version" in path:
            path["version"] = 1
        if "statement_id" in path:
            path["statement_id"], path["line_id"] = self.statement, self.statement_line
        if "period" in path:
            path["period"] = SEEDED_PERIOD
        if "run_id" in path:
            path["run_id"] = self.reconciliation_run
        if "exception_id" in path:
            path["exception_id"] = next(self.reconciliation_exceptions)
        if "from_program" in path:  # the way back: A -> B stays open for the quotes
            path["from_program"], path["to_program"] = self.program_b, self.program

    def _query(self, query, rnd):
        if "program" in query:
            query["program"] = self.program
        if "cursor" in query:
            query["cursor"] = rnd.choice(self.cursors)
        if "member_id" in query:
            query["member_id"] = self.member
        if "run_id" in query:
            query["run_id"] = self.reconciliation_run
        given = [kind for kind in IDENTIFIER_KINDS if kind in query]
        if given:  # a lookup: exactly one identifier, the member's
            keep = rnd.choice(given)
            for kind in given:
                del query[kind]
            query[keep] = self.identifiers[keep]

    def _enrolment(self, body, rnd):
        body["program"] = self.program
        if "member_id" in body:
            if len(body) > 2 and rnd.random() < 0.5:
                del body["member_id"]  # a new member (an identifier is left)
            else:
                body["member_id"] = self.member  # already enrolled: 409

    def _purchase(self, body, rnd):
        kind = next(iter(body["member"]))
        body.update(program=self.program, currency="IDR", member={kind: self.identifiers[kind]})
        body["amount"] = rnd.choice([body["amount"], self._amount(body["amount"])])
        body["occurred_at"] = rnd.choice([body["occurred_at"], PAST, *ODD_TIMES])

    def _preview(self, body, rnd):
        """A purchase the program (path `code`: program_c) can rate, for the seeded member."""
        body.update(currency="IDR", amount=self._amount(body["amount"]))
        if "member" in body:
            body["member"] = {"member_id": self.member}
        if rnd.random() < 0.5:
            body.pop("items", None)

    def _batch(self, body, rnd):
        item = {
            "member": {"member_id": self.member},
            "transaction_id": f"st-batch-{len(body['items'])}",
            "amount": "150000",
            "occurred_at": PAST,
        }
        self._purchase(item, rnd)
        body["items"][0] = item  # the other items stay arbitrary objects, refused one by one

    def _return(self, body, rnd):
        body["purchase"] = rnd.choice(
            [{"id": self.purchase}, {"program": self.program, "transaction_id": "st-purchase-1"}]
        )
        body["currency"] = "IDR"
        body["amount"] = rnd.choice([body["amount"], self._amount(body["amount"], 10**6)])
        body["occurred_at"] = rnd.choice([body["occurred_at"], AFTER_PURCHASE, *ODD_TIMES])

    def _program(self, body, rnd):
        body["partner"] = self.partner
        body["earn_rule"]["currency"] = "IDR"

    def _client(self, body, rnd):
        if "partner" in body:
            body["partner"] = self.partner

    def _reward(self, body, rnd):
        body.update(code=f"ST-{rnd.getrandbits(40):X}", program=self.program)
        body.pop("units", None)
        body.setdefault("points", 1)
        if body["kind"] == "tier_upgrade":
            body.setdefault("tier", "gold")
        if "min_tier" in body:
            body["min_tier"] = rnd.choice([body["min_tier"], "gold"])

    def _redemption(self, body, rnd):
        kind = next(iter(body.get("member") or {"member_id": None}))
        body.update(reward=self.reward, program=self.program, member={kind: self.identifiers[kind]})
        body.pop("amount", None)  # the seeded reward has a fixed price
        pay_with = body.get("pay_with")
        if pay_with is not None:  # pooled: exactly one of program and pay_with, a unit-priced reward
            del body["program"]
            body["reward"] = self.pooled_reward
            if "order" in pay_with:
                pay_with["order"] = [self.program]
            if "split" in pay_with:
                pay_with["split"] = [{"program": self.program, "points": 1}]

    def _quote(self, body, rnd):
        kind = next(iter(body.get("member") or {"member_id": None}))
        body.update({"from": self.program, "to": self.program_b, "member": {kind: self.identifiers[kind]}})
        body["points"] = rnd.choice([body["points"], 1 + body["points"] % 1000])

    def _conversion(self, body, rnd):
        if rnd.random() < 0.75:  # else the generated string: refused as no quote of ours
            body["quote"] = self._new_quote(1 + rnd.randrange(100))

    def _webhook_endpoint(self, body, rnd):
        body["url"] = f"https://hooks.example/st-{rnd.getrandbits(32):x}"
        body.pop("partner", None)  # a partner registers its own

    def _rate(self, body, rnd):
        body["program"] = self.program_c  # a new rate for A or B would refuse the seeded quotes

    def _challenge(self, body, rnd):
        """Open now, counting and paid only in the seeded program (so other operations'
        purchases complete nothing unexpected), under a new code."""
        from datetime import timedelta

        from hub.db import utcnow

        now = utcnow()
        body.update(code=f"S{rnd.getrandbits(40):X}", starts_at=(now - timedelta(days=1)).isoformat(),
                    ends_at=(now + timedelta(days=1 + rnd.randrange(30))).isoformat())
        body["goal"]["programs"] = [self.program]
        if body["goal"]["kind"] == "spend" or "min_amount" in body["goal"]:
            body["goal"]["currency"] = "IDR"
        body["bonus"]["program"] = self.program

    def _member_transfer(self, body, rnd):
        kind = next(iter(body["to"]))
        kind = "member_id" if kind == "subject" else kind  # the recipient never signed in
        body.update(program=self.program, to={kind: self.recipient[kind]})
        body.pop("from", None)  # the member's token gives the member's own points

    def _surprise(self, body, rnd):
        body["member"] = {"member_id": self.member}  # in the third program by member id only
        body["points"] = rnd.choice([body["points"], 1 + body["points"] % 100_000])

    def _engagement_event(self, body, rnd):
        kind = next(iter(body["member"]))
        body.update(program=self.program, member={kind: self.identifiers[kind]},
                    event_id=f"st-event-{rnd.getrandbits(40):x}")
        # In force since the seed published them (a generated past time finds no rules: a 422).
        body["occurred_at"] = rnd.choice([body["occurred_at"], utcnow().isoformat()])

    def _report(self, body, rnd):
        """A Tango report of one order unknown to the hub: a new run, or the same file again."""
        body.update(provider="tango", csv=self._tango_report([f"rdm{rnd.getrandbits(8):032x}"]))
        if rnd.random() < 0.5:
            body.pop("period_start", None)
            body.pop("period_end", None)

    @staticmethod
    def _amount(amount, limit=10**12):
        """An amount the seeded program takes: positive, at most 2 decimals (IDR), below limit."""
        value = Decimal(amount).quantize(Decimal("0.01"), ROUND_DOWN) % limit
        return str(max(value, Decimal("0.01")))


WEBHOOK_PROVIDER = "stprovider"
# Only the hub's own apps grant sharing consent and download the member's archive (a
# partner's brand is refused): these run with the seeded member's token from a first-party app.
SHARING_CHANGES = ("PUT /me/sharing/{partner}/{purpose}", "DELETE /me/sharing/{partner}/{purpose}")
OWN_APP_ONLY = (*SHARING_CHANGES, "GET /me/export")
# The seeded member's token may also move their points (POST /member-transfers).
MEMBER_TOKEN_SCOPE = SCOPE + " me:points"


class AcceptingProvider:
    """A provider connector whose webhooks always verify, about no order: the conformance run
    reaches the webhook operation's success path (tests/integration/test_redemptions.py
    tests real verification)."""

    def verify_webhook(self, headers, body, now):
        return WebhookEvent(event_id=secrets.token_hex(8), reference=None, outcome=None)


def publish_frequency_rules(db, partner):
    """The seeded program offers every engagement kind, referral codes, tiers and expiry, so
    that those operations have a success path to reach."""
    publish_rules(db, partner, {
        "engagement": {kind: {"points": 1, "daily_cap": 1000}
                       for kind in ("survey", "review", "social_share", "app_download")},
        "referral": {"referrer_points": 1, "referee_points": 1, "max_per_referrer": {"count": 10, "per": "lifetime"}},
        # Tiers and expiry, so that a member's tier has an answer; "gold" is what generated
        # tier upgrades and exclusive rewards name (see _reward).
        "tiers": {"basis": "points_earned", "window_months": 12, "review": {"every_months": 12, "anchor": "calendar"},
                  "levels": [{"code": "silver", "name": "Silver", "threshold": 1},
                             {"code": "gold", "name": "Gold", "threshold": 10**9, "exclusive": True}]},
        "expiry": {"policy": "end_of_year"},
    })


@pytest.fixture
def statuses():
    """Status codes answered, per operation label."""
    return collections.defaultdict(collections.Counter)


def _member_session(app, db, ops, partner, second_partner, member_id):
    """The seeded member signs in on a brand site of each partner and on a first-party app (a
    client of no partner): (access token of the first, the first partner's pairwise sub for
    them, the second partner's code and access token: a brand withdraws only its own partner's
    consent, the first-party app's access token: only it grants sharing consent)."""
    browser = Browser(app, log_in(db, member_id=uuid.UUID(member_id))[1])
    tokens = []
    brands = [register(ops, owner.code, scopes=MEMBER_TOKEN_SCOPE.split()) for owner in (partner, second_partner)]
    brands.append(ops.post("/v1/clients", {"name": "hub shop app", "redirect_uris": ["https://brand.example/cb"],
                                           "scopes": MEMBER_TOKEN_SCOPE.split()}).json())
    for brand in brands:
        rp = RelyingParty(app, brand["client_id"], brand["client_secret"], "https://brand.example/cb",
                          scope=MEMBER_TOKEN_SCOPE)
        token = sign_in(browser, rp)
        tokens.append((token["access_token"], rp.verify_id_token(token["id_token"], None)["sub"]))
    (access_token, subject), (second_token, _), (own_app_token, _) = tokens
    return access_token, subject, second_partner.code, second_token, own_app_token


@pytest.fixture
def api_schema(request, app, db, ops, partner, make_partner, statuses):
    # schemathesis 4.32 renames the pytest node per operation through `node._nodeid`, which
    # pytest 9.2 no longer has (it became `_id`); without one its lazy schemas fail at once.
    if not hasattr(request.node, "_nodeid"):
        request.node._nodeid = request.node.nodeid

    runtime.current().providers[WEBHOOK_PROVIDER] = AcceptingProvider()
    request.addfinalizer(lambda: runtime.current().providers.pop(WEBHOOK_PROVIDER, None))
    schema = schemathesis.openapi.from_asgi(
        "/v1/openapi.json", app, config=schemathesis.Config.from_dict(CONFIG)
    )
    publish_frequency_rules(db, partner)
    seed = Seed(partner, ops, lambda member: _member_session(app, db, ops, partner, make_partner(), member))
    seed.statement, seed.statement_line = seed_statement(db, partner)
    tokens = {"partner": partner.api.headers["Authorization"], "ops": ops.headers["Authorization"],
              "member": f"Bearer {seed.member_token}", "withdrawing": f"Bearer {seed.consented_token}",
              "own_app": f"Bearer {seed.own_app_token}"}

    class Tokens:
        """A partner token if one of the operation's security requirements needs only partner
        scopes, a member's if it needs only member scopes, else an ops token."""

        def get(self, case, ctx):
            if case.operation.label == "DELETE /me/consents/{partner}":
                return tokens["withdrawing"]  # the second partner's brand, on its own consent
            if case.operation.label in OWN_APP_ONLY:
                return tokens["own_app"]
            default = ctx.operation.schema.raw_schema.get("security", [])
            for requirement in ctx.operation.definition.raw.get("security", default):
                if all(set(scopes) <= set(PARTNER_SCOPES) for scopes in requirement.values()):
                    return tokens["partner"]
                if all(set(scopes) <= set(MEMBER_SCOPES) for scopes in requirement.values()):
                    return tokens["member"]
            return tokens["ops"]

        def set(self, case, data, ctx):
            case.headers = {**(case.headers or {}), "Authorization": data}

    schema.auth(refresh_interval=None)(Tokens)

    @schema.hook
    def before_generate_case(context, strategy):
        return st.builds(seed.apply, strategy, st.randoms(use_true_random=False))

    yield schema

    labels = {result.ok().label for result in schema.get_all_operations()}
    never_succeeded = sorted(
        label for label in labels if not any(200 <= s < 300 for s in statuses[label])
    )
    assert not never_succeeded, f"no generated request succeeded for {never_succeeded}"


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
def test_api_conforms_to_spec(case, statuses):
    response = case.call()
    statuses[case.operation.label][response.status_code] += 1
    case.validate_response(response, checks=CHECKS)


# Malformed requests the run above reaches only by chance (a body that is not UTF-8, a newline
# in a path) or never (its strings are valid Unicode, its bodies shallow). Each was a 500.
MALFORMED = {
    "body not UTF-8": ("POST", "/v1/partners", b'{"code": "CODE", "name": "\xff"}'),
    "unpaired surrogate": ("POST", "/v1/partners", b'{"code": "CODE", "name": "\\ud800"}'),
    "nested too deep": ("POST", "/v1/transactions/batch", b"[" * 100_000),
    "newline in path": ("GET", "/v1/members/a%0Ab/balances", None),
}


@pytest.mark.parametrize("method, path, body", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_requests_are_4xx_problems(http, ops, partner, method, path, body):
    token = ops.headers if "partners" in path else partner.api.headers
    headers = {**token, "Content-Type": "application/json"}
    if body:  # a new partner code, so a 409 for an existing one cannot pass for the refusal
        body = body.replace(b"CODE", f"S{secrets.token_hex(4).upper()}".encode())
    response = http.request(method, path, content=body, headers=headers)
    assert 400 <= response.status_code < 500, response.text
    assert response.headers["content-type"] == "application/problem+json"
