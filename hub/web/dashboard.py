"""The member's home under /account: balances per program and in coalition units, recent
activity, rewards within reach (with a redeem button), converting points between their
programs (the open pairs and their published rates, a quote to confirm, then the conversion),
the brands they share data with (with a revoke button), linked memberships; and account
linking under /account/link.

Thin, like accounts.py: every POST carries the CSRF token (checked before the view), runs one
domain call in one transaction and renders its outcome. Converting is two steps, both
hub.exchange.conversions as the member: POST /account/convert/quote shows the signed quote
(a read; a partner-hosted source is asked about the member's balance after it, as the API
does), POST /account/convert executes it under idempotency.run keyed by a one-time value in the
confirmation form, so a double press or a reload replays instead of converting twice.

A program a partner hosts (programs.hosted_by) keeps its balances in the partner's system:
its row says who holds the points instead of showing the hub's zero, and no page load asks
the partner.
"""
from __future__ import annotations

import re
import secrets
import uuid
from decimal import ROUND_DOWN, Decimal
from types import SimpleNamespace

from flask import Blueprint, redirect, render_template, request, url_for
from sqlalchemy import select

from hub import idempotency, money
from hub.actor import Actor
from hub.errors import DomainError, Invalid
from hub.exchange import conversions, rates
from hub.exchange.models import PENDING as CONVERSION_PENDING
from hub.identity import consent, linking, mail, ratelimit
from hub.identity.account_models import MemberAccount
from hub.ledger import InsufficientFunds
from hub.programs import service as programs
from hub.programs.models import Partner, Program
from hub.rewards import catalog, redemptions
from hub.rewards.models import PENDING
from hub.web import common
from hub.web import dashboard_text  # noqa: F401  (adds the pages' texts to the catalogue)
from hub.web import offers_panel
from hub.web import progress as progress_panel
from hub.web.i18n import number, t
from hub.web.session import current_login, login_url
from hub.web.state import state

blueprint = Blueprint("dashboard", __name__, url_prefix="/account", template_folder="templates")
# The same guards as the account pages (headers: hub/hardening/headers.py, on every response).
common.guard(blueprint)

HISTORY_ON_HOME = 10
HISTORY_PAGE = 25
REWARDS_ON_HOME = 10
NOTICES = ("consent-revoked", "linked")
REDEEM_ERRORS = ("out-of-stock", "reward-unavailable", "limit-reached")
# The refusals of a quote or a conversion the member gets a message for (hub.exchange; a
# second press while the first still runs, on PostgreSQL), and the form's own (no pair
# chosen, not a number of points); anything else is "other".
CONVERT_ERRORS = ("same-program", "conversion-closed", "below-minimum", "off-increment", "above-maximum",
                  "insufficient-points", "quote-expired", "quote-stale", "quote-used", "invalid-quote",
                  "not-a-member", "partner-unavailable", "idempotency-key-in-use", "no-pair", "invalid-points")
# Refusals a fresh quote may fix: their message links back to the convert form.
REQUOTE = ("quote-expired", "quote-stale", "invalid-quote")
# Points as typed: digits, or digits grouped by thousands (1,000 in English, 1.000 in Indonesian).
POINTS = re.compile(r"\d{1,3}(?:[,. ]\d{3})+|\d+")
POINTS_DIGITS = 13  # rates.MAX_POINTS has 13 digits: longer is not a number of points
QUOTE = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+")  # as the API's schema (Quote.read wants ASCII)
CENT = Decimal("0.01")


def _settings():
    return state().hub.settings


def _units(value: Decimal) -> Decimal:
    return value.quantize(CENT, rounding=ROUND_DOWN)


# --- the dashboard -----------------------------------------------------------------------

@blueprint.get("/")
def home():
    current = current_login()
    if current is None:
        return redirect(login_url(url_for(".home")))
    notice = t(f"notice.{request.args['done']}") if request.args.get("done") in NOTICES else None
    actor = common.web_actor(current.member_id)
    with common.db().read() as s:
        account = s.get(MemberAccount, current.account_id)
        own = programs.own_balances(s, current.member_id)
        # A hosted program's points are in the partner's system: its row names who holds
        # them rather than showing the hub's zero (and nobody asks the partner here).
        hosted = [b.program.code for _, b in own if b.program.hosted_by]
        holders = {code: p.partner for code, p in _programs(s, hosted).items()} if hosted else {}
        balances = [
            {"program": b.program, "partner": partner, "held_by": holders.get(b.program.code),
             "available": b.balance.available, "pending": b.balance.debits_pending,
             "value": None if b.program.hosted_by else _units(b.program.point_value * b.balance.available)}
            for partner, b in own
        ]
        history, more = programs.own_history(s, current.member_id, None, HISTORY_ON_HOME)
        legs = _conversion_legs(s, actor, history)
        offers = catalog.within_reach(
            s, actor, _settings().unit_rates,
            [(row["program"], row["available"]) for row in balances if row["available"] > 0 and not row["held_by"]],
            limit=REWARDS_ON_HOME)
        held = {row["program"].code for row in balances}
        # The pairs the member can use: open, and a membership in both programs.
        pairs = [p for p in rates.list_pairs(s, actor) if p.from_code in held and p.to_code in held]
        consents = consent.list_for(s, current.member_id)
        linked = linking.linked(s, current.member_id)
        progress = progress_panel.load(s, current.member_id)
        engage = offers_panel.panel(s, current.member_id)
    names = {row["program"].code: row["program"].name for row in balances}
    return render_template(
        "dashboard.html", account=account, balances=balances,
        total=sum((r["value"] for r in balances if r["value"] is not None), Decimal(0)),
        hosted=any(r["held_by"] for r in balances), history=history, more=more, legs=legs, offers=offers,
        pairs=[_pair_row(p) for p in pairs], consents=consents, linked=linked, names=names,
        notice=notice, redeem_key=secrets.token_urlsafe(16), to_major=money.to_major, progress=progress,
        engage=engage,
    )


def _conversion_legs(s, actor: Actor, history: list[programs.Movement]) -> dict[str, conversions.ConversionView]:
    """The conversions the movements on a page belong to (ref_id -> conversion), so that
    both legs of one read as one conversion "A -> B"."""
    ids = set()
    for m in history:
        if m.ref_type == "conversion" and m.ref_id:
            try:
                ids.add(uuid.UUID(m.ref_id))
            except ValueError:
                pass
    return {str(k): v for k, v in conversions.by_ids(s, actor, sorted(ids)).items()}


def _pair_row(p: rates.PairView) -> dict:
    """A pair as the rates table shows it: what one step of source points buys now."""
    return {"from_code": p.from_code, "to_code": p.to_code, "increment": p.increment,
            "receive": p.rate.points_out, "fee_percent": _percent(p.fee_bps), "min_points": p.min_points}


@blueprint.get("/history")
def history():
    current = current_login()
    if current is None:
        return redirect(login_url(url_for(".history")))
    try:
        with common.db().read() as s:
            items, more = programs.own_history(s, current.member_id, request.args.get("cursor"), HISTORY_PAGE)
            legs = _conversion_legs(s, common.web_actor(current.member_id), items)
            names = {m.program_code: m.program_name for m in linking.linked(s, current.member_id)}
    except Invalid:  # a cursor this page did not issue
        return redirect(url_for(".history"))
    return render_template("history.html", history=items, more=more, names=names, legs=legs)


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
    terms = redemptions.Terms.from_settings(_settings())
    actor = common.web_actor(current.member_id)

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
        outcome = idempotency.run(common.db(), actor.ref, key, idempotency.fingerprint("POST", "/account/redeem", body),
                                  work, redact=("delivery",))
    except InsufficientFunds:
        return _redeem_failed("insufficient")
    except DomainError as exc:
        return _redeem_failed(exc.slug if exc.slug in REDEEM_ERRORS else "other")
    if outcome.replayed:
        return common.message("redeem.replayed_title", t("redeem.replayed_text"), link=url_for(".home"),
                                 link_key="dash.back")
    done = outcome.body
    if done["state"] == PENDING:
        text = t("redeem.pending_text", points=done["points"], program=done["program"], reward=done["reward"],
                 email=current.email)
        return common.message("redeem.pending_title", text, link=url_for(".home"), link_key="dash.back",
                                 status=202)
    return render_template("redeemed.html", done=done, delivery=done.get("delivery") or {}), 201


def _redeem_failed(slug: str):
    return common.message("redeem.failed_title", t(f"redeem.error.{slug}"), link=url_for(".home"),
                             link_key="dash.back", status=409)


# --- convert -----------------------------------------------------------------------------

def _terms() -> conversions.Terms:
    return conversions.Terms.from_settings(_settings())


def _points(typed: str) -> int | None:
    typed = typed.strip()
    if not POINTS.fullmatch(typed):
        return None
    digits = re.sub(r"\D", "", typed)
    return int(digits) if len(digits) <= POINTS_DIGITS and int(digits) > 0 else None


def _programs(s, codes) -> dict[str, SimpleNamespace]:
    """Program code -> its name, its partner's name, and whether the partner hosts it."""
    rows = s.execute(select(Program.code, Program.name, Program.hosted_by, Partner.name)
                     .join(Partner, Partner.id == Program.partner_id).where(Program.code.in_(list(codes))))
    return {code: SimpleNamespace(name=name, partner=partner, hosted=bool(hosted))
            for code, name, hosted, partner in rows}


@blueprint.post("/convert/quote")
def convert_quote():
    current = current_login()
    if current is None:
        return redirect(login_url(url_for(".home")))
    from_code, _, to_code = request.form.get("pair", "").partition(":")
    if not (from_code and to_code):
        return _convert_failed("no-pair")
    points = _points(request.form.get("points", ""))
    if points is None:
        return _convert_failed("invalid-points")
    actor, terms = common.web_actor(current.member_id), _terms()
    try:
        with common.db().read() as s:
            quote, remote_check = conversions.quote(s, actor, {"from": from_code, "to": to_code, "points": points},
                                                    terms)
            sides = _programs(s, (from_code, to_code))
        if remote_check is not None:
            # Out of a hosted program: the partner says whether the member holds the points,
            # after the read (no connection waits on a partner), as the API does.
            remote_check.run(state().hub.hosted)
    except InsufficientFunds:
        return _convert_failed("insufficient-points", 409)
    except DomainError as exc:
        return _convert_failed(exc.slug, exc.status)
    minutes = max(1, round(terms.quote_ttl.total_seconds() / 60))
    return render_template(
        "convert_quote.html", quote=quote, signed=quote.sign(terms.secret_key), key=secrets.token_urlsafe(16),
        source=sides[from_code], target=sides[to_code], minutes=minutes, fee_places=_places(quote.fee_units),
        percent=_percent(quote.fee_bps))


@blueprint.post("/convert")
def convert():
    current = current_login()
    if current is None:
        return redirect(login_url(url_for(".home")))
    signed = request.form.get("quote", "")
    if len(signed) > 1000 or not QUOTE.fullmatch(signed):
        return _convert_failed("invalid-quote", 422)
    body = {"quote": signed}
    actor, terms = common.web_actor(current.member_id), _terms()

    def work(s):
        view = conversions.execute(s, actor, body, terms)
        c = view.conversion
        return (202 if c.state == CONVERSION_PENDING else 201), {
            "state": c.state, "from": view.from_code, "to": view.to_code, "points": c.points_in,
            "receive": c.points_out, "fee_units": str(c.fee_units), "hosted_side": c.hosted_side}

    # The form's one-time key makes a second press (or a reload) replay the first outcome
    # instead of converting again (the quote itself executes at most once, too).
    key = request.form.get("key", "")[:255] or None
    try:
        outcome = idempotency.run(common.db(), actor.ref, key, idempotency.fingerprint("POST", "/account/convert", body),
                                  work)
    except InsufficientFunds:
        return _convert_failed("insufficient-points", 409)
    except DomainError as exc:
        return _convert_failed(exc.slug, exc.status)
    if outcome.replayed:
        return common.message("convert.replayed_title", t("convert.replayed_text"), link=url_for(".home"),
                                 link_key="dash.back")
    done = outcome.body
    with common.db().read() as s:
        sides = _programs(s, (done["from"], done["to"]))
    source, target = sides[done["from"]], sides[done["to"]]
    fee = Decimal(done["fee_units"])
    pending = done["state"] == CONVERSION_PENDING
    return render_template("converted.html", done=done, source=source, target=target, fee=fee,
                           fee_places=_places(fee), pending=pending,
                           title_key="convert.pending_title" if pending else "convert.done_title"), outcome.status


def _convert_failed(slug: str, status: int = 400):
    slug = slug if slug in CONVERT_ERRORS else "other"
    if slug in REQUOTE:
        link, link_key = url_for(".home", _anchor="convert-title"), "convert.new_quote"
    else:
        link, link_key = url_for(".home"), "dash.back"
    return common.message("convert.failed_title", t(f"convert.error.{slug}"), link=link, link_key=link_key,
                             status=status)


def _places(value: Decimal) -> int:
    """The decimals a value needs (a fee may be 100 units, or 0.25)."""
    return max(0, -value.normalize().as_tuple().exponent)


def _percent(fee_bps: int) -> str:
    percent = Decimal(fee_bps) / 100
    return number(percent, _places(percent))


# --- consents ----------------------------------------------------------------------------

@blueprint.post("/consents/revoke")
def revoke_consent():
    current = current_login()
    if current is None:
        return redirect(login_url(url_for(".home")))
    brand = request.form.get("partner", "")
    try:
        # Also revokes every grant of that partner's clients (their tokens stop working).
        common.db().write(lambda s: consent.revoke(s, current.member_id, brand))
    except DomainError:
        return common.message("consent.not_found_title", t("consent.not_found_text"), link=url_for(".home"),
                                 link_key="dash.back", status=404)
    return redirect(url_for(".home", done="consent-revoked"), 303)


# --- account linking ---------------------------------------------------------------------

def _link_form(form: dict, errors: dict, status: int = 200):
    with common.db().read() as s:
        choices = linking.programs(s)
    return render_template("link.html", form=form, errors=errors, programs=choices), status


def _errors(exc: DomainError) -> dict[str, str]:
    return {exc.extra.get("field", "form"): t(f"error.{exc.slug}")}


@blueprint.route("/link", methods=["GET", "POST"])
def link():
    account = common.current_account()
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
            mail.send(s, to=started.send_to, subject=t("mail.link_subject"),
                      body=t("mail.link_body", program=started.program_name, code=started.code))
        return started

    try:
        started = common.db().write(work)
    except (Invalid, DomainError) as exc:
        return _link_form(form, _errors(exc), status=400 if isinstance(exc, Invalid) else 409)
    # The same page whether a code went out or not.
    return _code_form(started.request_id, started.program_name, {})


def _code_form(request_id, program_name: str, errors: dict, status: int = 200):
    return render_template("link_code.html", request_id=request_id, program=program_name, errors=errors), status


@blueprint.post("/link/code")
def link_code():
    account = common.current_account()
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
    outcome = common.db().write(lambda s: linking.confirm(s, secret_key, s.get(MemberAccount, account.id), request_id,
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
    return common.message("link.failed_title", t(f"link.error.{status}", program=program),
                             link=url_for(".link"), link_key="link.start_over", status=http_status)
