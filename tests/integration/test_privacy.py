"""A member's data export, erasure and retention (hub/privacy, docs/privacy.md) through the HTTP
API, the account pages and the CLI, on the test database (SQLite or PostgreSQL)."""
from __future__ import annotations

import io
import json
import secrets
import time
import uuid
import zipfile
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
import time_machine
from click.testing import CliRunner
from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from hub import ledger
from hub.cli import main as hub_cli
from hub.db import utcnow
from hub.audit import review_notes
from hub.exchange.models import MemberTransfer
from hub.idempotency import IdempotencyKey
from hub.identity.account_models import AccountToken, LoginSession, MemberAccount, OutgoingMail
from hub.ledger.models import Transfer
from hub.ledger.verify import verify
from hub.notify import outbox, webhooks
from hub.notify.webhook_models import SUCCEEDED, WebhookDelivery, WebhookEvent
from hub.identity import accounts, mail, ratelimit
from hub.notify.outbox import OutboxMessage
from hub.privacy import blind, erasure, export, retention, sharing
from hub.programs.models import Membership, PointTransaction, Program
from hub.rewards import relay
from hub.rewards.providers import Outcome, Status
from hub.rules.engage_models import MemberAttribute
from hub.rules.frequency_models import Referral
from hub.web.i18n import MESSAGES
from tests.conftest import assert_problem
from tests.integration.test_account_pages import (  # noqa: F401  (fixtures)
    PASSWORD,
    Browser,
    _codes_from,
    _mail_link,
    _totp_from,
    browser,
    clock,
    flask_app,
    web_state,
)
from tests.integration.test_redemptions import member_api, provider, redeem, reward_code, run_relay  # noqa: F401
from tests.integration.test_frequency import REFERRAL, enrol_referred, publish, referral_code
from tests.integration.test_member_transfers import give, set_policy
from tests.integration.test_webhooks import register


def _signed_up(browser, db, settings, email: str) -> uuid.UUID:
    browser.submit("/account/signup", "/account/signup", email=email, password=PASSWORD,
                   given_name="Wulandari", family_name="Kusumawati")
    browser.get(_mail_link(db, settings, email))
    token = browser.text().split('name="token" value="')[1].split('"')[0]
    assert browser.post("/account/verify", {"token": token, "next": "/account/"}).status_code == 200
    browser.login(email, next_url="/account/")
    with db.read() as s:
        return accounts.find(s, email).member_id


@pytest.fixture
def rich(browser, db, settings, partner, provider):
    """A member with an account and a membership holding every identifier kind, a purchase
    with items, a fulfilled gift card, an attribute, mail, and a partner webhook endpoint."""
    register(partner.api, event_types=["member.erased"])
    person = {
        "email": f"wulan-{secrets.token_hex(4)}@example.com",
        "membership_email": f"wk-{secrets.token_hex(4)}@example.org",
        "phone": f"+62812{secrets.randbelow(10**7):07d}",
        "card_number": f"{secrets.randbelow(10**12):012d}",
        "external_id": f"crm-{secrets.token_hex(5)}",
        "card_code": f"GIFT-{secrets.token_hex(6).upper()}",
    }
    member_id = _signed_up(browser, db, settings, person["email"])
    enrolled = partner.enrol(card_number=person["card_number"], phone=person["phone"],
                             email=person["membership_email"], external_id=person["external_id"])
    db.write(lambda s: s.execute(Membership.__table__.update().where(
        Membership.member_id == uuid.UUID(enrolled)).values(member_id=member_id)))
    items = [{"category": "coffee", "amount": "40000000", "sku": "KOPI-SUSU-XL"}]
    assert partner.api.post("/v1/transactions", partner.purchase_body(
        str(member_id), "5000000000", items=items)).status_code == 201
    order = redeem(partner, str(member_id), reward_code(db, provider), amount="10.00").json()
    card = {"code": person["card_code"], "pin": "4321", "url": "https://cards.example/x"}
    provider.place_script = [Outcome(Status.FULFILLED, provider_order_id="P-9", delivery=card)]
    assert run_relay(db, provider, order["id"]) == "fulfilled"
    db.write(lambda s: s.add(MemberAttribute(member_id=member_id, name="diet", value="vegetarian-strict")))
    return {"member_id": member_id, "person": person, "partner": partner}


@pytest.fixture
def cli(settings, monkeypatch):
    """`hub ...` on the test database."""
    monkeypatch.setenv("HUB_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("HUB_SECRET_KEY", settings.secret_key)
    return lambda *args: CliRunner().invoke(hub_cli, list(args))


def _archive(response) -> dict[str, str]:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(response.content)) as archive:
        return {name: archive.read(name).decode() for name in archive.namelist()}


def test_member_export_holds_every_area(rich, http):
    member_id, person = rich["member_id"], rich["person"]
    files = _archive(member_api(http, rich["partner"], str(member_id), scope="me:read").get("/v1/me/export"))
    manifest = json.loads(files["manifest.json"])
    assert manifest["member_id"] == str(member_id)
    assert set(manifest["files"]) == {f"{name}.json" for name in export.AREAS} == set(files) - {
        "manifest.json", "README.txt"}
    data = {name.removesuffix(".json"): json.loads(text) for name, text in files.items() if name.endswith(".json")}
    assert data["account"]["email"] == person["email"] and data["account"]["family_name"] == "Kusumawati"
    assert "password_hash" not in data["account"]
    (membership,) = data["memberships"]
    assert membership["identifiers"] == {"card_number": person["card_number"], "phone": person["phone"],
                                         "email": person["membership_email"], "external_id": person["external_id"]}
    assert membership["balance"]["posted"] == 5_000_000 - 16_000
    assert {t["code"] for t in data["ledger"]} >= {"earn", "redemption"}
    assert data["purchases"][0]["items"][0]["sku"] == "KOPI-SUSU-XL"
    assert data["redemptions"][0]["delivery"]["code"] == person["card_code"]
    assert data["profile"]["attributes"][0]["value"] == "vegetarian-strict"
    assert data["sign_in"]["login_sessions"] and data["mail"][0]["to"] == person["email"]
    assert "cookie_hash" not in data["sign_in"]["login_sessions"][0]


def test_ops_export_needs_ops_scope(rich, ops):
    assert _archive(ops.get(f"/v1/members/{rich['member_id']}/export"))["manifest.json"]
    assert_problem(ops.get(f"/v1/members/{uuid.uuid4()}/export"), 404, "member-not-found")
    assert rich["partner"].api.get(f"/v1/members/{rich['member_id']}/export").status_code == 403


def test_deleting_the_account_on_the_page_erases_everything_personal(rich, browser, db, ops, cli):
    member_id, person, partner = rich["member_id"], rich["person"], rich["partner"]
    browser.get("/account/sharing/")
    shared = browser.post("/account/sharing/", {"partner": partner.code, "purpose": sharing.PROFILE, "action": "grant"})
    assert shared.status_code == 303
    page = browser.get("/account/delete")
    assert page.status_code == 200 and f"{partner.program}: 4984000 points" in browser.text()
    assert browser.post("/account/delete", {"password": "not my password"}).status_code == 400
    assert browser.post("/account/delete", {"password": PASSWORD}).status_code == 200
    assert "Your account is deleted" in browser.text()

    # Erasure then export shows nothing personal.
    files = _archive(ops.get(f"/v1/members/{member_id}/export"))
    everything = "\n".join(files.values())
    for value in (*person.values(), "Wulandari", "Kusumawati", "vegetarian-strict", "KOPI-SUSU-XL"):
        assert value not in everything, value
    # What the member shared ended with the erasure; the proof of it stays.
    assert [(r["kind"], r.get("action"), r.get("channel")) for r in json.loads(files["sharing_consents.json"])] == [
        ("sharing_consent_event", "grant", "dashboard"), ("sharing_consent_event", "revoke", "erasure")]
    # The points were forfeited to the program's breakage account; the ledger still verifies.
    with db.read() as s:
        program = s.scalar(select(Program).where(Program.code == partner.program))
        forfeit = s.scalar(select(Transfer).where(Transfer.code == erasure.FORFEIT, Transfer.ref_id == str(member_id)))
        assert (forfeit.amount, forfeit.credit_account_id) == (4_984_000, program.breakage_account_id)
        assert verify(s).ok
        (event,) = s.scalars(select(WebhookEvent).where(WebhookEvent.type == "member.erased",
                                                        WebhookEvent.data["member_id"].as_string() == str(member_id)))
    assert event.data["programs"] == [{"program": partner.program, "external_id": person["external_id"],
                                       "card_number": person["card_number"]}]
    # The member cannot log in, nor be found or credited by the partner.
    assert Browser(browser.client.application).login(person["email"]).status_code == 400
    assert browser.get("/account/").status_code == 302
    assert_problem(partner.api.get(f"/v1/members/{member_id}"), 410, "member-erased")
    assert partner.api.get("/v1/members", card_number=person["card_number"]).json()["items"] == []
    assert_problem(partner.api.post("/v1/transactions", partner.purchase_body(str(member_id), "10000")),
                   410, "member-erased")
    # Erasing again (ops) is a no-op.
    result = cli("privacy", "erase", str(member_id), "--yes")
    assert result.exit_code == 0 and "already erased" in result.output


def test_with_two_step_login_on_deleting_needs_a_code_too(browser, db, settings, partner):
    member_id = _signed_up(browser, db, settings, f"totp-{secrets.token_hex(4)}@example.com")
    browser.get("/account/security")
    browser.post("/account/security/totp", {"password": PASSWORD})
    browser.get("/account/security")
    totp = _totp_from(browser.text())
    codes = _codes_from(browser.post("/account/security/totp/confirm", {"code": totp.now()}).get_data(as_text=True))
    browser.get("/account/delete")
    assert 'name="code"' in browser.text() and "You hold no points" in browser.text()
    assert browser.post("/account/delete", {"password": PASSWORD, "code": "000000"}).status_code == 400
    with db.read() as s:
        assert not erasure.erased(s, member_id)
    assert browser.post("/account/delete", {"password": PASSWORD, "code": codes[0]}).status_code == 200
    with db.read() as s:
        assert erasure.erased(s, member_id) and s.scalar(
            select(MemberAccount).where(MemberAccount.member_id == member_id)) is None


def test_other_parts_register_their_export_and_erasure(partner, db, settings, cli):
    """The registries' extension points, as the lead wires another package's functions."""
    member = uuid.UUID(partner.enrol(external_id=f"x-{secrets.token_hex(4)}"))
    forgotten = []
    export.register_rows("extra", "Another part's rows.", lambda s, m: [{"member": str(m)}])
    erasure.register_forget("extra", lambda s, m: forgotten.append(m))
    try:
        with db.read() as s:
            with zipfile.ZipFile(io.BytesIO(export.build(s, member))) as archive:
                assert json.loads(archive.read("extra.json")) == [{"member": str(member)}]
        assert cli("privacy", "erase", str(member), "--yes").exit_code == 0
        assert forgotten == [member]
    finally:
        export.AREAS.pop("extra")
        erasure.ERASERS.pop("extra")


def test_erasure_waits_for_a_redemption_in_flight(partner, provider, db, cli):
    phone = f"+62813{secrets.randbelow(10**7):07d}"
    member = partner.enrol(phone=phone, email=f"p-{secrets.token_hex(4)}@example.com")
    partner.buy(member, "5000000000")
    order = redeem(partner, member, reward_code(db, provider), amount="10.00").json()
    assert order.get("state") == "pending", order
    result = cli("privacy", "erase", member, "--yes")
    assert result.exit_code == 1 and "still being settled" in result.output
    with db.read() as s:
        assert not erasure.erased(s, uuid.UUID(member))
    provider.place_script = [Outcome(Status.FULFILLED, provider_order_id="P-1", delivery={"code": "X"})]
    assert run_relay(db, provider, order["id"]) == "fulfilled"
    result = cli("privacy", "erase", member, "--yes")
    assert result.exit_code == 0 and f"{partner.program} {5_000_000 - 16_000}" in result.output
    assert partner.api.get("/v1/members", phone=phone).json()["items"] == []
    with db.read() as s:
        assert verify(s).ok


def test_cli_export_writes_the_archive(rich, tmp_path, cli):
    out = tmp_path / "member.zip"
    result = cli("privacy", "export", str(rich["member_id"]), "--out", str(out))
    assert result.exit_code == 0, result.output
    with zipfile.ZipFile(out) as archive:
        assert rich["person"]["card_code"] in archive.read("redemptions.json").decode()


def _left(db, account_id, email, key, event_id) -> dict[str, int]:
    """How many of one member's rows of each retained kind are left."""
    count = {
        "mail": select(func.count()).select_from(OutgoingMail).where(OutgoingMail.to_index == blind.index("email", email)),
        "tokens": select(func.count()).select_from(AccountToken).where(AccountToken.account_id == account_id),
        "sessions": select(func.count()).select_from(LoginSession).where(LoginSession.account_id == account_id),
        "keys": select(func.count()).select_from(IdempotencyKey).where(IdempotencyKey.key == key),
        "events": select(func.count()).select_from(WebhookEvent).where(WebhookEvent.id == event_id),
    }
    with db.read() as s:
        return {name: s.scalar(q) for name, q in count.items()}


def test_retention_deletes_only_what_outlived_its_period(browser, db, settings, partner):
    email = f"old-{secrets.token_hex(4)}@example.com"
    member_id = _signed_up(browser, db, settings, email)  # mail, a used token, a login session
    browser.get("/account/security")
    assert browser.post("/account/logout", {}).status_code == 302
    key = uuid.uuid4().hex
    assert partner.api.post("/v1/members", {"program": partner.program, "external_id": key}, key=key).status_code == 201
    register(partner.api, event_types=["member.erased"])

    def delivered_event(s):
        event_id = webhooks.emit(s, s.scalar(select(Program.partner_id).where(Program.code == partner.program)),
                                 "member.erased", {"member_id": "x", "programs": []})
        s.execute(update(WebhookDelivery).where(WebhookDelivery.event_id == event_id).values(status=SUCCEEDED))
        return event_id
    event_id = db.write(delivered_event)
    with db.read() as s:
        account_id = s.scalar(select(MemberAccount.id).where(MemberAccount.member_id == member_id))
    made = _left(db, account_id, email, key, event_id)
    assert all(made.values()), made

    # A week and a day on, the idempotency key and the used token have outlived their periods.
    with time_machine.travel(utcnow() + timedelta(days=8), tick=False):
        retention.run(db, settings, batch=1)
    assert _left(db, account_id, email, key, event_id) == {**made, "keys": 0, "tokens": 0}
    # Past thirty days, the mail, the ended session and the delivered event too; a second run
    # finds nothing more.
    with time_machine.travel(utcnow() + timedelta(days=31), tick=False):
        retention.run(db, settings)
        assert _left(db, account_id, email, key, event_id) == dict.fromkeys(made, 0)
        again = retention.run(db, settings)
    assert set(again.values()) == {0}


# --- review follow-ups: stored replies, transfer notes, erasure racing a write --------------

def _erase(db, member_id: str) -> None:
    db.write(lambda s: erasure.erase(s, uuid.UUID(member_id), "ops:test"))


def _stored(db, owner_key: str) -> bool:
    with db.read() as s:
        return s.scalar(select(func.count()).select_from(IdempotencyKey).where(IdempotencyKey.key == owner_key)) > 0


def test_erasure_deletes_every_stored_reply_that_names_the_member(db, partner):
    """A partner's stored enrolment reply holds the member's email and phone: erasure deletes
    it (and the purchase's, the batch's), so a repeat re-executes; other members' stay."""
    tag = secrets.token_hex(4)
    body = {"program": partner.program, "email": f"erase-{tag}@example.com", "phone": f"+62812{secrets.randbelow(10**7):07d}"}
    first = partner.api.post("/v1/members", body, key=f"enrol-{tag}")
    assert first.status_code == 201
    member = first.json()["id"]
    other = partner.api.post("/v1/members", {"program": partner.program, "external_id": f"o-{tag}"}, key=f"other-{tag}")
    purchase = partner.purchase_body(member, "100000")
    assert partner.api.post("/v1/transactions", purchase, key=f"buy-{tag}").status_code == 201
    batch = {"items": [partner.purchase_body(member, "1000"), partner.purchase_body(other.json()["id"], "1000")]}
    assert partner.api.post("/v1/transactions/batch", batch, key=f"batch-{tag}").status_code == 200
    _erase(db, member)

    for key in ("enrol", "buy", "batch"):
        assert not _stored(db, f"{key}-{tag}"), key
    assert _stored(db, f"other-{tag}")
    again = partner.api.post("/v1/members", body, key=f"enrol-{tag}")
    assert again.status_code == 201 and "Idempotent-Replayed" not in again.headers
    assert again.json()["id"] != member  # enrolled afresh: the erased member is not brought back
    assert_problem(partner.api.post("/v1/transactions", purchase, key=f"buy-{tag}"), 410, "member-erased")
    replay = partner.api.post("/v1/members", {"program": partner.program, "external_id": f"o-{tag}"}, key=f"other-{tag}")
    assert replay.headers.get("Idempotent-Replayed") == "true"


def test_a_transfer_note_is_kept_off_the_ledger_and_cleared_by_erasure(db, partner, ops):
    assert set_policy(partner.api, partner.program, 500, 1000).status_code == 200
    ana, budi = partner.enrol(), partner.enrol()
    partner.buy(ana, "1000000")
    note = f"for Budi, get well soon {secrets.token_hex(3)}"
    sent = give(partner.api, partner.program, {"member_id": budi}, 100, sender=ana, note=note)
    assert sent.status_code == 201 and sent.json()["note"] == note
    with db.read() as s:
        row = s.get(MemberTransfer, uuid.UUID(sent.json()["id"]))
        assert row.note == note and s.get(Transfer, row.transfer_id).meta is None
    _erase(db, budi)  # the recipient: the note is about them too
    with db.read() as s:
        assert s.get(MemberTransfer, uuid.UUID(sent.json()["id"])).note is None
    for member in (ana, budi):
        assert note not in "\n".join(_archive(ops.get(f"/v1/members/{member}/export")).values())


def test_a_closed_account_takes_no_more_movements(db, partner):
    """What a write that read the member before the erasure committed meets afterwards (the
    same on both dialects): the ledger refuses the account, nothing is written."""
    member = partner.enrol()
    purchase = partner.buy(member, "100000")
    _erase(db, member)
    with db.read() as s:
        program = s.scalar(select(Program).where(Program.code == partner.program))
        account_id = s.scalar(select(Membership.account_id).where(Membership.member_id == uuid.UUID(member)))
    late = ledger.TransferSpec(debit=program.issuance_account_id, credit=account_id, amount=5, code="earn",
                               ledger=program.id, caused_by="test")
    for write in (lambda s: ledger.post(s, [late]), lambda s: ledger.require_open(s, [account_id])):
        with pytest.raises(ledger.AccountClosed), Session(db.engine) as s:
            write(s)
    with db.read() as s:
        assert ledger.balance(s, account_id).posted == 0
        assert verify(s).ok
    body = {"purchase": {"id": purchase["id"]}, "return_id": f"r-{secrets.token_hex(4)}", "amount": "1000",
            "currency": partner.currency, "occurred_at": "2026-11-02T10:00:00Z"}
    assert_problem(partner.api.post("/v1/returns", body), 410, "member-erased")


def _wait_for_a_lock_wait(db, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    with db.engine.connect() as conn:
        while time.monotonic() < deadline:
            waiting = conn.exec_driver_sql("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                                           " AND wait_event_type = 'Lock'").scalar()
            conn.rollback()
            if waiting:
                return
            time.sleep(0.02)
    raise AssertionError("the purchase never waited for the erasure's lock")


@pytest.mark.parametrize("amount", ["100000", "500"], ids=["earning", "earning-nothing"])
def test_a_purchase_racing_an_erasure_is_refused_and_writes_nothing(db, partner, amount):
    """The purchase reads the member before the erasure commits (PostgreSQL, READ COMMITTED)
    and reaches the account while the erasure holds it: once the erasure commits, the
    purchase gets 410 and leaves no transaction, items or points. On SQLite writers run one at
    a time: the purchase comes after the erasure and meets the same answer."""
    member = partner.enrol()
    partner.buy(member, "100000")
    body = partner.purchase_body(member, amount, items=[{"category": "pharmacy", "amount": amount, "sku": "SECRET"}])
    if db.dialect == "postgresql":
        with Session(db.engine) as eraser, ThreadPoolExecutor(1) as pool:
            erasure.erase(eraser, uuid.UUID(member), "ops:test")  # forfeited and closed, not committed
            late = pool.submit(partner.api.post, "/v1/transactions", body)
            _wait_for_a_lock_wait(db)
            eraser.commit()
            answer = late.result(timeout=30)
    else:
        _erase(db, member)
        answer = partner.api.post("/v1/transactions", body)
    assert_problem(answer, 410, "member-erased")
    with db.read() as s:
        assert s.scalar(select(func.count()).select_from(PointTransaction)
                        .where(PointTransaction.partner_txn_id == body["transaction_id"])) == 0
        account_id = s.scalar(select(Membership.account_id).where(Membership.member_id == uuid.UUID(member)))
        assert ledger.balance(s, account_id).posted == 0
        assert verify(s).ok


def test_a_days_wrong_codes_on_the_delete_page_mail_the_member_as_the_security_page_does(
        browser, db, settings, clock):
    """Whoever guesses codes here has the password, as on the login's code step: when the day's
    allowance fills, the member is mailed (hub.identity.accounts.second_factor_failed), once."""
    email = f"guess-{secrets.token_hex(4)}@example.com"
    member_id = _signed_up(browser, db, settings, email)
    browser.get("/account/security")
    browser.post("/account/security/totp", {"password": PASSWORD})
    browser.get("/account/security")
    browser.post("/account/security/totp/confirm", {"code": _totp_from(browser.text()).now()})
    day, five_minutes = ratelimit.SECOND_FACTOR_DAY, ratelimit.SECOND_FACTOR_ACCOUNT
    browser.get("/account/delete")
    for _ in range(day.limit // five_minutes.limit):
        for _ in range(five_minutes.limit):
            assert browser.post("/account/delete", {"password": PASSWORD, "code": "000000"}).status_code == 400
        clock.now += five_minutes.window
    assert browser.post("/account/delete", {"password": PASSWORD, "code": "000000"}).status_code == 429
    with db.read() as s:
        account = accounts.find(s, email)
        subject = MESSAGES[account.locale]["mail.code_guesses_subject"]
        sent = [m for m in mail.latest(s, to=email) if m.subject == subject]
        assert len(sent) == 1 and not erasure.erased(s, member_id)


# --- review fixes: what the export hands over, what erasure spares ------------------------

def test_mail_is_exported_without_bodies_and_never_another_members(rich, http, db, other_partner):
    """Bodies hold live links (password reset, link codes): the archive lists messages only.
    Mail to an address another member also uses may be theirs: neither exported nor erased."""
    person, member_id = rich["person"], rich["member_id"]
    other_partner.enrol(email=person["membership_email"])  # someone else, at another partner, same address
    db.write(lambda s: mail.send(s, to=person["email"], subject="Reset", body="https://hub/reset?token=LIVE-RESET"))
    db.write(lambda s: mail.send(s, to=person["membership_email"], subject="Code", body="your code: LINK-CODE"))
    files = _archive(member_api(http, rich["partner"], str(member_id), scope="me:read").get("/v1/me/export"))
    messages = json.loads(files["mail.json"])
    assert messages and all(set(m) == {"id", "to", "subject", "created_at"} for m in messages)
    assert {m["to"] for m in messages} == {person["email"]} and "Reset" in {m["subject"] for m in messages}
    assert not any(secret in text for text in files.values() for secret in ("LIVE-RESET", "LINK-CODE", "token="))

    db.write(lambda s: erasure.erase(s, member_id, "ops:test"))
    with db.read() as s:
        left = {address: s.scalar(select(func.count()).select_from(OutgoingMail).where(
            OutgoingMail.to_index == blind.index("email", address))) for address in (person["email"],
                                                                                     person["membership_email"])}
    assert left == {person["email"]: 0, person["membership_email"]: 1}


def test_an_unverified_account_cannot_prove_its_address_from_the_download(browser, db):
    """Signed up with someone else's address and logged in unverified, the download holds no
    verification link, so the address stays unproven."""
    victim = f"victim-{secrets.token_hex(4)}@example.com"
    browser.submit("/account/signup", "/account/signup", email=victim, password=PASSWORD,
                   given_name="Not", family_name="Victim")
    assert browser.login(victim, next_url="/account/").status_code == 302  # unverified, yet logged in
    answer = browser.client.get("/account/export")
    assert answer.status_code == 200
    with zipfile.ZipFile(io.BytesIO(answer.data)) as archive:
        everything = "\n".join(archive.read(n).decode() for n in archive.namelist())
        messages = json.loads(archive.read("mail.json"))
    assert [m["to"] for m in messages] == [victim] and "body" not in messages[0]
    assert "/account/verify" not in everything and "token=" not in everything
    with db.read() as s:
        assert accounts.find(s, victim).email_verified_at is None


def test_an_erased_member_is_gone_only_to_a_partner_that_had_them(db, partner, other_partner):
    member = partner.enrol()
    db.write(lambda s: erasure.erase(s, uuid.UUID(member), "ops:test"))
    assert_problem(partner.api.get(f"/v1/members/{member}"), 410, "member-erased")
    # Another partner learns nothing: not even that the id existed.
    assert_problem(other_partner.api.get(f"/v1/members/{member}"), 404, "member-not-found")


def test_erasure_clears_the_referrers_code_kept_in_their_referrals(db, partner):
    publish(db, partner, {"referral": REFERRAL})
    referrer = partner.enrol()
    code = referral_code(partner, referrer)
    referee = enrol_referred(partner, code)
    db.write(lambda s: erasure.erase(s, uuid.UUID(referrer), "ops:test"))
    with db.read() as s:
        (kept,) = s.scalars(select(Referral.code).join(Membership, Membership.id == Referral.referee_membership_id)
                            .where(Membership.member_id == uuid.UUID(referee)))
    assert kept == ""


def test_retention_deletes_done_outbox_messages_after_their_period(db, settings):
    key = uuid.uuid4().hex
    db.write(lambda s: [outbox.enqueue(s, "test.retention", f"{key}-{n}", {"subject": "pairwise-sub"}) for n in (1, 2)])
    db.write(lambda s: outbox.complete(s, "test.retention", f"{key}-1"))

    def left() -> set[str]:
        with db.read() as s:
            return set(s.scalars(select(OutboxMessage.key).where(OutboxMessage.key.startswith(key))))
    with time_machine.travel(utcnow() + timedelta(days=settings.retention_outbox_days - 1), tick=False):
        retention.run(db, settings)
    assert left() == {f"{key}-1", f"{key}-2"}
    with time_machine.travel(utcnow() + timedelta(days=settings.retention_outbox_days + 1), tick=False):
        assert retention.run(db, settings)["outbox"] >= 1
    assert left() == {f"{key}-2"}  # an open message is never deleted
    # The open one has no task to carry it: gone, so that no dispatcher of a later test meets it.
    db.write(lambda s: s.execute(delete(OutboxMessage).where(OutboxMessage.key.startswith(key))))


def _review_notes(db, order: str) -> list[tuple[str, str, str | None, str | None]]:
    with db.read() as s:
        return [(n.action, n.actor, n.reason, n.in_review_for and n.in_review_for.split(":")[0])
                for n in review_notes.about(s, review_notes.REDEMPTION, uuid.UUID(order))]


def test_erasure_blanks_the_reasons_of_ops_review_notes_about_the_members_orders(db, partner, provider):
    """Ops' reason for settling an order in review is free text that could name the member:
    erasure blanks it, and what the order's failure said then; who acted, what and when stay.
    Other members' notes stay whole."""
    orders = {}
    for name in ("Wulandari", "Budi"):
        member = partner.enrol(email=f"m{uuid.uuid4().hex[:8]}@example.com")
        partner.buy(member, "50000000")
        order = redeem(partner, member, reward_code(db, provider), amount="10.00").json()["id"]
        provider.place_script = [Outcome(Status.UNKNOWN)]
        provider.lookup_script = [Outcome(Status.UNKNOWN)] * 3
        assert [run_relay(db, provider, order) for _ in range(4)][-1] == "needs_review"
        db.write(lambda s, order=order, name=name: relay.resolve(
            s, uuid.UUID(order), fulfilled=False, reason=f"{name} called: never got the card", by="ops:someone"))
        orders[name] = (member, order)
    _erase(db, orders["Wulandari"][0])
    assert _review_notes(db, orders["Wulandari"][1]) == [("refund", "ops:someone", None, None)]
    assert _review_notes(db, orders["Budi"][1]) == [("refund", "ops:someone", "Budi called: never got the card",
                                                     "no definitive answer after 4 attempts")]
