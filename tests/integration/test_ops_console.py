"""The ops console (hub/web/ops) through Flask's test client: login with password and TOTP,
each page for each role, the actions on redemptions in review and webhook deliveries, and
what partner_admin may not see."""
from __future__ import annotations

import json
import re
import secrets
import time
import uuid
from datetime import timedelta

import pyotp
import pytest
from sqlalchemy import func, select

from click.testing import CliRunner
from markupsafe import escape

from hub.audit import review_notes
from hub.audit.models import AuditEntry
from hub.cli import main as hub_cli
from hub.db import utcnow
from hub.rewards import relay
from hub.settlement import activity
from hub.identity import ops_users, ratelimit, roles
from hub.identity.accounts import Passwords
from hub.identity.ops_user_models import OpsSession
from hub.ledger.models import Transfer
from hub.ledger.verify import verify
from hub.notify import webhook_endpoints, webhooks
from hub.notify.webhook_models import WebhookDelivery, WebhookEndpoint
from hub.programs.models import Partner
from hub.rewards.models import Redemption
from hub.rewards.providers import Outcome, Status
from tests.integration.test_account_pages import Browser, flask_app  # noqa: F401  (fixture)
from tests.integration.test_rate_limits import refuse  # noqa: F401  (fixture)
from tests.integration.test_redemptions import provider, redeem, reward_code, rich_member, run_relay  # noqa: F401

PASSWORD = "ops password for tests"
_HASH = Passwords().hash(PASSWORD)  # argon2 once for the module


class OpsUser:
    def __init__(self, email: str, totp: pyotp.TOTP):
        self.email, self.totp = email, totp
        self.step = 0

    def code(self) -> str:
        """A code the hub has not accepted yet (each is accepted once): now, then the next step."""
        code = self.totp.at(time.time() + 30 * self.step)
        self.step += 1
        return code


@pytest.fixture
def make_user(db):
    def make(role: str, partner_code: str | None = None) -> OpsUser:
        email = f"ops-{secrets.token_hex(4)}@example.com"
        _, uri = db.write(lambda s: ops_users.add(s, email=email, role=role, partner_code=partner_code,
                                                  password_hash=_HASH, actor="test"))
        return OpsUser(email, pyotp.parse_uri(uri))
    return make


def log_in(flask_app, user: OpsUser) -> Browser:
    browser = Browser(flask_app)
    response = browser.submit("/ops/login", "/ops/login", email=user.email, password=PASSWORD, code=user.code())
    assert response.status_code == 302, response.get_data(as_text=True)
    browser.get("/ops/")  # the CSRF token of a logged-in page
    return browser


def _post_routes(flask_app) -> list[str]:
    return sorted(rule.rule for rule in flask_app.url_map.iter_rules()
                  if rule.endpoint.startswith("ops.") and "POST" in rule.methods)


def _forms(page: str) -> list[str]:
    return re.findall(r'<form method="post" action="([^"]+)"', page)


def _audit_count(db) -> int:
    with db.read() as s:
        return s.scalar(select(func.count()).select_from(AuditEntry))


def _ledger_ok(db) -> None:
    with db.read() as s:
        report = verify(s)
    assert report.ok, report.violations


# --- login -------------------------------------------------------------------------------

def test_login_takes_password_and_totp_and_a_strict_separate_cookie(flask_app, make_user, db):
    user = make_user(roles.OPS_ADMIN)
    browser = Browser(flask_app)
    assert browser.get("/ops/").headers["Location"].startswith("/ops/login")
    for fields in ({"password": PASSWORD, "code": "000000"}, {"password": "wrong password", "code": user.code()}):
        response = browser.submit("/ops/login", "/ops/login", email=user.email, **fields)
        assert response.status_code == 400 and "do not match" in browser.text()
        assert "hub_ops" not in response.headers.get("Set-Cookie", "")
    response = browser.submit("/ops/login", "/ops/login", email=user.email, password=PASSWORD, code=user.code())
    assert response.status_code == 302 and response.headers["Location"] == "/ops/"
    cookie = response.headers["Set-Cookie"]
    assert cookie.startswith("hub_ops=") and "HttpOnly" in cookie and "SameSite=Strict" in cookie
    assert browser.get("/ops/").status_code == 200
    assert browser.get("/account/").status_code == 302  # not a member login
    browser.post("/ops/logout", {})
    assert browser.get("/ops/").status_code == 302


def test_a_disabled_user_is_logged_out_and_cannot_log_in(flask_app, make_user, db):
    user = make_user(roles.OPS_ANALYST)
    browser = log_in(flask_app, user)
    db.write(lambda s: ops_users.disable(s, user.email, actor="test"))
    assert browser.get("/ops/").status_code == 302
    response = browser.submit("/ops/login", "/ops/login", email=user.email, password=PASSWORD, code=user.code())
    assert response.status_code == 400


@pytest.mark.parametrize("column,by", [("last_seen_at", ops_users.IDLE + timedelta(seconds=1)),
                                       ("expires_at", ops_users.ABSOLUTE)], ids=["idle", "absolute"])
def test_sessions_end_after_their_timeouts(flask_app, make_user, db, column, by):
    browser = log_in(flask_app, make_user(roles.OPS_ANALYST))
    assert browser.get("/ops/").status_code == 200

    def age(s):
        for row in s.scalars(select(OpsSession).where(OpsSession.ended_at.is_(None))):
            setattr(row, column, getattr(row, column) - by)
    db.write(age)
    assert browser.get("/ops/").status_code == 302


def test_on_https_the_cookie_is_host_prefixed_and_secure(flask_app, make_user, monkeypatch):
    monkeypatch.setattr(flask_app.extensions["hub_web"], "cookie_secure", True)
    user = make_user(roles.OPS_ANALYST)
    browser = Browser(flask_app)
    browser.get("/ops/login", base_url="https://localhost")  # (its CSRF cookie is Secure: https only)
    response = browser.post("/ops/login", {"email": user.email, "password": PASSWORD, "code": user.code()},
                            base_url="https://localhost")
    assert response.status_code == 302
    cookie = response.headers["Set-Cookie"]
    assert cookie.startswith("__Host-hub_ops=") and "Secure" in cookie and "SameSite=Strict" in cookie


@pytest.mark.parametrize("rule", [ratelimit.LOGIN_ACCOUNT, ratelimit.SECOND_FACTOR_ACCOUNT], ids=lambda r: r.name)
def test_login_is_rate_limited(flask_app, make_user, refuse, rule):
    user = make_user(roles.OPS_ADMIN)
    refuse(rule)
    password = "wrong password" if rule is ratelimit.LOGIN_ACCOUNT else PASSWORD
    response = Browser(flask_app).submit("/ops/login", "/ops/login", email=user.email, password=password,
                                         code="000000")
    assert response.status_code == 429 and int(response.headers["Retry-After"]) > 0


# --- pages and roles ---------------------------------------------------------------------

@pytest.fixture
def two_partners(partner, other_partner, db):
    """Both partners with a member who earned, an API client and a webhook delivery."""
    for p in (partner, other_partner):
        p.buy(p.enrol(), "250000")

        def endpoint(s, code=p.code):
            partner_id = s.scalar(select(Partner.id).where(Partner.code == code))
            s.add(WebhookEndpoint(partner_id=partner_id, url=f"https://{code.lower()}.example/hook",
                                  secret_sealed=webhook_endpoints.seal(webhooks.new_secret()), created_by="test"))
            s.flush()
            webhooks.emit(s, partner_id, "tier.changed", {"partner": code})
        db.write(endpoint)
    return partner, other_partner


PAGES = ["/ops/", "/ops/redemptions", "/ops/partners", "/ops/webhooks", "/ops/audit"]


def test_every_page_renders_for_an_admin_with_its_actions(flask_app, make_user, two_partners, provider, db):
    partner, other = two_partners
    _in_review(partner, provider, db)
    browser = log_in(flask_app, make_user(roles.OPS_ADMIN))
    for path in PAGES + [f"/ops/partners/{partner.code}"]:
        assert browser.get(path).status_code == 200, path
    page = browser.get("/ops/").get_data(as_text=True)
    assert f"<h3 id=\"c-day-{partner.program}\">" in page and "<svg" in page and "<table" in page
    assert partner.client_id in browser.get(f"/ops/partners/{partner.code}").get_data(as_text=True)
    assert "/ops/redemptions/refund" in _forms(browser.get("/ops/redemptions").get_data(as_text=True))
    assert "/ops/webhooks/replay" in _forms(browser.get("/ops/webhooks").get_data(as_text=True))


def test_an_analyst_reads_everything_but_every_action_is_refused(flask_app, make_user, two_partners, provider, db):
    partner, _ = two_partners
    order, _ = _in_review(partner, provider, db)
    browser = log_in(flask_app, make_user(roles.OPS_ANALYST))
    for path in PAGES:
        assert browser.get(path).status_code == 200, path
        assert _forms(browser.text()) == ["/ops/logout"], path  # no action buttons
    routes = [r for r in _post_routes(flask_app) if r not in ("/ops/login", "/ops/logout")]
    assert len(routes) >= 4
    before = _audit_count(db)
    for path in routes:
        browser.get("/ops/")
        response = browser.post(path, {"redemption_id": order, "delivery_id": str(uuid.uuid4()), "reason": "x"})
        assert response.status_code == 403, path
    assert _audit_count(db) == before and _state(db, order) == "needs_review"


def test_a_partner_admin_sees_only_its_partner(flask_app, make_user, two_partners, db):
    partner, other = two_partners
    browser = log_in(flask_app, make_user(roles.PARTNER_ADMIN, partner.code))
    for path, present, absent in [
        ("/ops/", partner.program, other.program),
        ("/ops/partners", partner.code, other.code),
        (f"/ops/partners/{partner.code}", partner.client_id, other.client_id),
        ("/ops/webhooks", f"{partner.code.lower()}.example", f"{other.code.lower()}.example"),
    ]:
        page = browser.get(path)
        assert page.status_code == 200 and present in browser.text() and absent not in browser.text(), path
    assert browser.get(f"/ops/partners/{other.code}").status_code == 404
    for path in ("/ops/redemptions", "/ops/audit"):
        assert browser.get(path).status_code == 403, path
    assert "/ops/redemptions" not in browser.get("/ops/").get_data(as_text=True)  # not in its navigation
    browser.get("/ops/")
    with db.read() as s:
        delivery = s.scalar(select(WebhookDelivery.id).join(WebhookEndpoint).join(Partner)
                            .where(Partner.code == other.code))
    assert browser.post("/ops/webhooks/replay", {"delivery_id": str(delivery)}).status_code == 403


def test_every_post_checks_csrf(flask_app, make_user):
    browser = log_in(flask_app, make_user(roles.OPS_ADMIN))
    for path in _post_routes(flask_app):
        response = browser.post(path, {"csrf_token": "0" * 64, "email": "x@example.com"}, csrf=False)
        assert response.status_code == 400, path
    assert browser.get("/ops/").status_code == 200  # still logged in


# --- actions ------------------------------------------------------------------------------

def _in_review(partner, provider, db) -> tuple[str, str]:
    """A gift card order the provider never answered definitively: in review, 16,000 points
    held. (Its id, its member's id.)"""
    member = rich_member(partner)
    order = redeem(partner, member, reward_code(db, provider), amount="10.00").json()
    provider.place_script = [Outcome(Status.UNKNOWN)]
    provider.lookup_script = [Outcome(Status.UNKNOWN)] * 3
    assert [run_relay(db, provider, order["id"]) for _ in range(4)][-1] == "needs_review"
    return order["id"], member


def _state(db, redemption_id: str) -> str:
    with db.read() as s:
        return s.scalar(select(Redemption.state).where(Redemption.id == uuid.UUID(redemption_id)))


def _failure(db, redemption_id: str) -> str | None:
    with db.read() as s:
        return s.scalar(select(Redemption.failure).where(Redemption.id == uuid.UUID(redemption_id)))


def _audited(db, action: str, target: str) -> AuditEntry | None:
    with db.read() as s:
        return s.scalar(select(AuditEntry).where(AuditEntry.action == action, AuditEntry.target == target))


@pytest.mark.parametrize("path,action,state,points_back", [
    ("/ops/redemptions/refund", "redemption.refund", "failed", True),
    ("/ops/redemptions/fulfil", "redemption.mark_fulfilled", "fulfilled", False),
    ("/ops/redemptions/retry", "redemption.requeue", "pending", False),
], ids=["refund", "mark fulfilled", "retry"])
def test_review_actions_settle_the_order_once_audited(flask_app, make_user, partner, provider, db,
                                                      path, action, state, points_back):
    order, member = _in_review(partner, provider, db)
    held = partner.balance(member)
    browser = log_in(flask_app, make_user(roles.OPS_ADMIN))
    browser.get("/ops/redemptions")
    assert order in browser.text()
    in_review_for = _failure(db, order)
    why = f"provider confirmed {order[:8]} by phone"
    response = browser.post(path, {"redemption_id": order, "reason": why})
    assert response.status_code == 302, browser.text()
    assert _state(db, order) == state
    after = partner.balance(member)
    if points_back:  # the 16,000 reserved are available again
        assert after["posted"] == held["posted"] and after["available"] == held["available"] + 16000
    elif state == "fulfilled":  # the reservation is spent
        assert after["posted"] == held["posted"] - 16000 and after["available"] == held["available"]
    else:  # retry: still reserved, the relay has it again
        assert after == held
    entry = _audited(db, action, f"redemption:{order}")
    assert entry is not None and entry.actor.startswith("ops:") and entry.after["state"] == state
    _ledger_ok(db)
    # A settled (or requeued) order leaves the review list, and a review note says who acted
    # and why (a retry given a reason is noted too), and what put the order in review, which
    # its failure no longer says.
    page = browser.get("/ops/redemptions").get_data(as_text=True)
    assert entry.actor in page and why in page
    (row,) = re.findall(rf"<code>{order}</code>.*?</tr>", page, re.S)
    assert in_review_for.startswith("no definitive answer") and f"<td>{escape(in_review_for)}</td>" in row
    # A second press finds the order no longer in review: refused, nothing changes.
    browser.get("/ops/redemptions")
    again = browser.post(path, {"redemption_id": order, "reason": "again"})
    assert again.status_code == 409 and "does not need review" in browser.text()
    assert partner.balance(member) == after and _state(db, order) == state
    _ledger_ok(db)


def test_refund_and_mark_fulfilled_need_a_reason(flask_app, make_user, partner, provider, db):
    order, _ = _in_review(partner, provider, db)
    browser = log_in(flask_app, make_user(roles.OPS_ADMIN))
    before = _audit_count(db)
    for path in ("/ops/redemptions/refund", "/ops/redemptions/fulfil"):
        browser.get("/ops/redemptions")
        assert browser.post(path, {"redemption_id": order, "reason": "  "}).status_code == 422
    assert _state(db, order) == "needs_review" and _audit_count(db) == before


def test_a_reason_past_its_limit_is_refused_before_anything_is_written(flask_app, make_user, partner, provider, db):
    """The forms' maxlength is a hint: the server holds every reason, a retry's too, to
    REASON_MAX characters."""
    order, _ = _in_review(partner, provider, db)
    browser = log_in(flask_app, make_user(roles.OPS_ADMIN))
    before = _audit_count(db)
    page = browser.get("/ops/redemptions").get_data(as_text=True)
    assert f'maxlength="{review_notes.REASON_MAX}"' in page
    for path in ("/ops/redemptions/refund", "/ops/redemptions/fulfil", "/ops/redemptions/retry"):
        browser.get("/ops/redemptions")
        too_long = browser.post(path, {"redemption_id": order, "reason": "x" * (review_notes.REASON_MAX + 1)})
        assert too_long.status_code == 422 and "at most" in browser.text()
    assert _state(db, order) == "needs_review" and _audit_count(db) == before
    with db.read() as s:
        assert review_notes.about(s, review_notes.REDEMPTION, uuid.UUID(order)) == []
    browser.get("/ops/redemptions")
    longest = browser.post("/ops/redemptions/refund", {"redemption_id": order, "reason": "x" * review_notes.REASON_MAX})
    assert longest.status_code == 302 and _state(db, order) == "failed"


def test_replay_of_a_delivery_is_audited(flask_app, make_user, two_partners, db):
    partner, _ = two_partners
    with db.read() as s:
        delivery = s.scalar(select(WebhookDelivery.id).join(WebhookEndpoint).join(Partner)
                            .where(Partner.code == partner.code))
    browser = log_in(flask_app, make_user(roles.OPS_ADMIN))
    browser.get("/ops/webhooks")
    assert browser.post("/ops/webhooks/replay", {"delivery_id": str(delivery)}).status_code == 302
    with db.read() as s:
        entries = s.scalars(select(AuditEntry).where(AuditEntry.action == "webhook_delivery.replay")).all()
    (entry,) = [e for e in entries if e.after["delivery_id"] == str(delivery)]
    assert entry.actor.startswith("ops:")  # the console user, as every other console action names them
    browser.get("/ops/webhooks")
    assert browser.post("/ops/webhooks/replay", {"delivery_id": "not an id"}).status_code == 422



# --- the overview's numbers and the CLI -----------------------------------------------------

def _today(db, program: str, grain: str) -> activity.Bucket:
    with db.read() as s:
        (found,) = [a for a in activity.activity(s, grain, utcnow()) if a.program == program]
    assert len(found.buckets) == activity.SPANS[grain]
    return found.buckets[-1]


@pytest.mark.parametrize("grain", [activity.DAY, activity.MONTH])
def test_activity_counts_issued_and_posted_redemptions_per_program(partner, provider, db, grain):
    order, _ = _in_review(partner, provider, db)  # a member earned 5,000,000 and reserved 16,000
    today = _today(db, partner.program, grain)
    assert (today.issued, today.redeemed) == (5_000_000, 0)  # a reservation is not redeemed yet
    db.write(lambda s: relay.resolve(s, uuid.UUID(order), fulfilled=True, reason="confirmed", by="test"))
    today = _today(db, partner.program, grain)
    assert (today.issued, today.redeemed) == (5_000_000, 16_000)
    assert today.label == utcnow().strftime("%Y-%m-%d" if grain == activity.DAY else "%Y-%m")


def test_activity_of_a_partner_has_only_its_programs(partner, other_partner, db):
    with db.read() as s:
        partner_id = s.scalar(select(Partner.id).where(Partner.code == partner.code))
        programs = [a.program for a in activity.activity(s, activity.DAY, utcnow(), partner_id)]
    assert programs == [partner.program]


def test_the_cli_adds_lists_and_disables_users_and_shows_the_secrets_once(flask_app, partner, db, settings,
                                                                           monkeypatch):
    monkeypatch.setenv("HUB_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("HUB_SECRET_KEY", settings.secret_key)
    runner = CliRunner()
    email = f"admin-{secrets.token_hex(4)}@example.com"
    added = runner.invoke(hub_cli, ["ops", "users", "add", "--email", email, "--role", "partner_admin",
                                    "--partner", partner.code])
    assert added.exit_code == 0, added.output
    password = re.search(r"password: (\S+)", added.output).group(1)
    totp = pyotp.parse_uri(re.search(r"(otpauth://\S+)", added.output).group(1))
    browser = Browser(flask_app)
    response = browser.submit("/ops/login", "/ops/login", email=email, password=password, code=totp.now())
    assert response.status_code == 302
    listed = json.loads(runner.invoke(hub_cli, ["ops", "users", "list", "--json"]).output)
    assert {"email": email, "role": "partner_admin", "partner": partner.code} in [
        {k: row[k] for k in ("email", "role", "partner")} for row in listed]
    refused = runner.invoke(hub_cli, ["ops", "users", "add", "--email", email, "--role", "ops_admin"])
    assert refused.exit_code == 1
    assert runner.invoke(hub_cli, ["ops", "users", "add", "--email", f"x{email}", "--role", "partner_admin"]).exit_code == 1
    assert runner.invoke(hub_cli, ["ops", "users", "disable", email]).exit_code == 0
    assert browser.get("/ops/").status_code == 302
    with db.read() as s:
        actions = s.scalars(select(AuditEntry.action).where(AuditEntry.actor == "cli",
                                                            AuditEntry.action.like("ops_user.%"))).all()
    assert {"ops_user.add", "ops_user.disable"} <= set(actions)


def test_an_expired_reservation_cannot_be_marked_fulfilled_but_can_be_refunded(flask_app, make_user, partner,
                                                                                provider, db):
    order, member = _in_review(partner, provider, db)
    held = partner.balance(member)

    def expire(s):
        transfer_id = s.scalar(select(Redemption.transfer_id).where(Redemption.id == uuid.UUID(order)))
        s.execute(Transfer.__table__.update().where(Transfer.id == transfer_id)
                  .values(timeout_at=utcnow() - timedelta(minutes=1)))
    db.write(expire)
    browser = log_in(flask_app, make_user(roles.OPS_ADMIN))
    browser.get("/ops/redemptions")
    response = browser.post("/ops/redemptions/fulfil", {"redemption_id": order, "reason": "card was sent"})
    assert response.status_code == 409 and "expired" in browser.text()
    assert _state(db, order) == "needs_review" and partner.balance(member) == held
    browser.get("/ops/redemptions")
    assert browser.post("/ops/redemptions/refund", {"redemption_id": order, "reason": "never sent"}).status_code == 302
    assert partner.balance(member)["available"] == held["available"] + 16000
    _ledger_ok(db)
