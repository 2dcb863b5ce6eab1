"""The member's home under /account: balances per program and in coalition units, recent
activity, rewards within reach (with a redeem button), the brands they share data with (with
a revoke button), linked memberships; and account linking under /account/link.

Thin, like accounts.py: every POST carries the CSRF token (checked before the view), runs one
domain call in one transaction and renders its outcome. Converting points between programs
belongs to the conversions work (hub/exchange) and is not offered here yet.
"""
from __future__ import annotations

import secrets
import uuid
from datetime import timedelta
from decimal import ROUND_DOWN, Decimal

from flask import Blueprint, redirect, render_template, request, url_for

from hub import idempotency, money
from hub.actor import Actor
from hub.errors import DomainError, Invalid
from hub.identity import consent, linking, mail, ratelimit
from hub.identity.account_models import MemberAccount
from hub.ledger import InsufficientFunds
from hub.programs import service as programs
from hub.rewards import catalog, redemptions
from hub.rewards.models import PENDING
from hub.web import accounts
from hub.web import dashboard_text  # noqa: F401  (adds the pages' texts to the catalogue)
from hub.web.i18n import t
from hub.web.session import current_login, login_url
from hub.web.state import state

blueprint = Blueprint("dashboard", __name__, url_prefix="/account", template_folder="templates")
# The same guards as the account pages: CSRF on every POST, no caching or framing, and the
# same pages for a refused form and for too many attempts.
blueprint.before_request(accounts._csrf)
blueprint.after_request(accounts._headers)
blueprint.register_error_handler(ratelimit.Limited, accounts._too_many)
blueprint.register_error_handler(400, accounts._bad_request)

HISTORY_ON_HOME = 10
HISTORY_PAGE = 25
REWARDS_ON_HOME = 10
WEB_CLIENT = "hub-web"  # how the dashboard's actions appear as the caller (Actor.client_id)
NOTICES = ("consent-revoked", "linked")
REDEEM_ERRORS = ("out-of-stock", "reward-unavailable", "limit-reached")
CENT = Decimal("0.01")


def _db():
    return state().hub.db


def _settings():
    return state().hub.settings


def _actor(member_id: uuid.UUID) -> Actor:
    return Actor(client_id=WEB_CLIENT, partner_id=None, scopes=frozenset(), member_id=member_id)


def _units(value: Decimal) -> Decimal:
    return value.quantize(CENT, rounding=ROUND_DOWN)


# --- the dashboard -----------------------------------------------------------------------

@blueprint.get("/")
def home():
    current = current_login()
    if current is None:
        return redirect(login_url(url_for(".home")))
    notice = t(f"notice.{request.args['done']}") if request.args.get("done") in NOTICES else None
    actor = _actor(current.member_id)
    with _db().read() as s:
        account = s.get(MemberAccount, current.account_id)
        balances = [
            {"program": b.program, "partner": partner, "available": b.balance.available,
             "pending": b.balance.debits_pending, "value": _units(b.program.point_value * b.balance.available)}
            for partner, b in programs.own_balances(s, current.member_id)
        ]
        history, more = programs.own_history(s, current.member_id, None, HISTORY_ON_HOME)
        offers = catalog.within_reach(
            s, actor, _settings().unit_rates,
            [(row["program"], row["available"]) for row in balances if row["available"] > 0],
            limit=REWARDS_ON_HOME)
        consents = consent.list_for(s, current.member_id)
        linked = linking.linked(s, current.member_id)
    names = {row["program"].code: row["program"].name for row in balances}
    return render_template(
        "dashboard.html", account=account, balances=balances, total=sum((r["value"] for r in balances), Decimal(0)),
        history=history, more=more, offers=offers, consents=consents, linked=linked, names=names,
        notice=notice, redeem_key=secrets.token_urlsafe(16), to_major=money.to_major,
    )


@blueprint.get("/history")
def history():
    current = current_login()
    if current is None:
        return redirect(login_url(url_for(".history")))
    try:
        with _db().read() as s:
            items, more = programs.own_history(s, current.member_id, request.args.get("cursor"), HISTORY_PAGE)
            names = {m.program_code: m.program_name for m in linking.linked(s, current.member_id)}
    except Invalid:  # a cursor this page did not issue
        return redirect(url_for(".history"))
    return render_template("history.html", history=items, more=more, names=names)


# --- redeem ------------------------------------------------------------------------------

@blueprint.post("/redeem")
def redeem():
    current = current_login()
    if current is None:
        return redirect(login_url(url_for(".home")))
    body = {"reward": request.form.get("reward", ""), "program": request.form.get("program", ""),
            # Provider rewards (gift cards, donations) go to the account's email address.
            "recipient": {"email": current.email}}
    if request.form.get("amount"):
        body["amount"] = request.form["amount"]
    hub = state().hub
    terms = redemptions.Terms(hub.settings.unit_rates, timedelta(seconds=hub.settings.redemption_hold),
                              hub.settings.secret_key)
    actor = _actor(current.member_id)

    def work(s):
        view = redemptions.redeem(s, actor, body, terms)
        r = view.redemption
        return (202 if r.state == PENDING else 201), {
            "state": r.state, "reward": view.reward.name, "points": r.points, "program": view.program_code,
            "delivery": view.delivery}

    # The form's one-time key makes a second press (or a reload) replay the first outcome
    # instead of spending twice. The voucher is shown once: a replay does not repeat it.
    key = request.form.get("key", "")[:255] or None
    try:
        outcome = idempotency.run(_db(), actor.ref, key, idempotency.fingerprint("POST", "/account/redeem", body),
                                  work, redact=("delivery",))
    except InsufficientFunds:
        return _redeem_failed("insufficient")
    except DomainError as exc:
        return _redeem_failed(exc.slug if exc.slug in REDEEM_ERRORS else "other")
    if outcome.replayed:
        return accounts._message("redeem.replayed_title", t("redeem.replayed_text"), link=url_for(".home"),
                                 link_key="dash.back")
    done = outcome.body
    if done["state"] == PENDING:
        text = t("redeem.pending_text", points=done["points"], program=done["program"], reward=done["reward"],
                 email=current.email)
        return accounts._message("redeem.pending_title", text, link=url_for(".home"), link_key="dash.back",
                                 status=202)
    return render_template("redeemed.html", done=done, delivery=done.get("delivery") or {}), 201


def _redeem_failed(slug: str):
    return accounts._message("redeem.failed_title", t(f"redeem.error.{slug}"), link=url_for(".home"),
                             link_key="dash.back", status=409)


# --- consents ----------------------------------------------------------------------------

@blueprint.post("/consents/revoke")
def revoke_consent():
    current = current_login()
    if current is None:
        return redirect(login_url(url_for(".home")))
    brand = request.form.get("partner", "")
    try:
        # Also revokes every grant of that partner's clients (their tokens stop working).
        _db().write(lambda s: consent.revoke(s, current.member_id, brand))
    except DomainError:
        return accounts._message("consent.not_found_title", t("consent.not_found_text"), link=url_for(".home"),
                                 link_key="dash.back", status=404)
    return redirect(url_for(".home", done="consent-revoked"), 303)


# --- account linking ---------------------------------------------------------------------

def _account() -> MemberAccount | None:
    current = current_login()
    if current is None:
        return None
    with _db().read() as s:
        return s.get(MemberAccount, current.account_id)


def _link_form(form: dict, errors: dict, status: int = 200):
    with _db().read() as s:
        choices = linking.programs(s)
    return render_template("link.html", form=form, errors=errors, programs=choices), status


def _errors(exc: DomainError) -> dict[str, str]:
    return {exc.extra.get("field", "form"): t(f"error.{exc.slug}")}


@blueprint.route("/link", methods=["GET", "POST"])
def link():
    account = _account()
    if account is None:
        return redirect(login_url(url_for(".link")))
    form = {k: request.form.get(k, "") for k in ("program", "identifier")}
    if request.method == "GET":
        return _link_form(form, {})
    limiter = state().limiter
    # Every request may mail a code: counted per account and per card (known or not).
    limiter.attempt(ratelimit.LINK_START_ACCOUNT, str(account.id))
    limiter.attempt(ratelimit.LINK_START_CARD, linking.card_subject(form["program"], form["identifier"]))
    secret_key = _settings().secret_key

    def work(s):
        started = linking.start(s, secret_key, s.get(MemberAccount, account.id), form["program"], form["identifier"])
        if started.send_to is not None:
            mail.send(s, secret_key, to=started.send_to, subject=t("mail.link_subject"),
                      body=t("mail.link_body", program=started.program_name, code=started.code))
        return started

    try:
        started = _db().write(work)
    except (Invalid, DomainError) as exc:
        return _link_form(form, _errors(exc), status=400 if isinstance(exc, Invalid) else 409)
    # The same page whether a code went out or not.
    return _code_form(started.request_id, started.program_name, {})


def _code_form(request_id, program_name: str, errors: dict, status: int = 200):
    return render_template("link_code.html", request_id=request_id, program=program_name, errors=errors), status


@blueprint.post("/link/code")
def link_code():
    account = _account()
    if account is None:
        return redirect(login_url(url_for(".link")))
    try:
        request_id = uuid.UUID(request.form.get("request", ""))
    except ValueError:
        return _link_failed("code-expired")
    program_name = request.form.get("program_name", "")[:200]
    # Counted before the code is checked, so parallel guesses cannot pass the limit; only
    # wrong codes stay counted.
    tries = state().limiter.attempt(ratelimit.LINK_CODE_ACCOUNT, str(account.id))
    secret_key = _settings().secret_key
    outcome = _db().write(lambda s: linking.confirm(s, secret_key, s.get(MemberAccount, account.id), request_id,
                                                    request.form.get("code", "")))
    if outcome.status not in (linking.CODE_WRONG, linking.TOO_MANY):
        tries.succeeded()
    if outcome.status == linking.LINKED:
        return redirect(url_for(".home", done="linked"), 303)
    if outcome.status == linking.CODE_WRONG:
        return _code_form(request_id, program_name, {"code": t("link.wrong_code", left=outcome.attempts_left)},
                          status=400)
    return _link_failed(outcome.status, program=outcome.program_code or "")


def _link_failed(status: str, program: str = ""):
    http_status = 409 if status in (linking.ALREADY_MEMBER, linking.LINKED_ELSEWHERE) else 400
    return accounts._message("link.failed_title", t(f"link.error.{status}", program=program),
                             link=url_for(".link"), link_key="link.start_over", status=http_status)
