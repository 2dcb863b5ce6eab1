"""The authorization endpoint's decisions (OIDC Core 3.1.2), free of HTTP.

`decide` takes the request's parameters, the browser's login (or None) and the consent on
record, and says what to do: show an error page (the client or redirect_uri cannot be
trusted, so never redirect), redirect back with an OAuth error, send the browser to the
login page, ask for consent, or issue a code.

Deliberate differences from Authlib's own authorization endpoint (its known pitfalls as a provider):
redirect_uri is required and matched exactly (no fallback to a registered one), PKCE is S256
only and required of public clients, nonce is optional, and auth_time is the login's real one.
An account whose email address is not verified gets `access_denied`.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import re
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlencode

from authlib.oauth2.rfc7636.challenge import CODE_CHALLENGE_PATTERN
from sqlalchemy.orm import Session

from hub.identity import consent
from hub.identity.keys import KeyStore
from hub.identity.oidc import claims as claim_sets
from hub.identity.oidc import clients, grants, jwts, subjects
from hub.identity.oidc.clients import BrandClient
from hub.identity.oidc.models import Grant

if TYPE_CHECKING:
    from hub.identity.login import Login

PROMPTS = ("none", "login", "consent", "select_account")
NONCE_MAX = 255  # oidc_codes.nonce
# Set on the way back from a forced login: "<ms>.<mac>", the login must be at least this
# recent (Unix time, milliseconds). It replaces prompt=login / max_age, which would otherwise
# send the browser to the login page forever. The mac (HMAC-SHA256 with HUB_SECRET_KEY) binds
# it to the time the hub chose and to this request's client_id, redirect_uri, state and
# nonce: a marker that is missing its mac, forged, moved to another request or older than
# AUTH_AFTER_TTL is ignored, so prompt=login / max_age are honoured again.
AUTH_AFTER = "auth_after"
AUTH_AFTER_TTL = 3600  # seconds: how long the member may take on the login page


@dataclass(frozen=True)
class ErrorPage:
    """The request cannot be answered by a redirect: show this message to the person."""
    message: str


@dataclass(frozen=True)
class Redirect:
    """Send the browser back to the client (a code, or an OAuth error)."""
    location: str


@dataclass(frozen=True)
class NeedLogin:
    """Send the browser to the login page, then back to `next_url`."""
    next_url: str
    force: bool
    login_hint: str | None
    ui_locales: str | None


@dataclass(frozen=True)
class AskConsent:
    client: BrandClient
    scopes: list[str]
    claims: list[str]
    params: dict  # the request, to post back with the decision


@dataclass(frozen=True)
class AuthRequest:
    client: BrandClient
    redirect_uri: str
    state: str | None
    scopes: list[str]
    nonce: str | None
    prompts: set[str]
    max_age: int | None
    auth_after: int | None
    code_challenge: str | None
    claims: dict[str, list[str]]
    login_hint: str | None
    ui_locales: str | None
    id_token_hint: dict | None
    params: dict

    def error(self, error: str, description: str) -> Redirect:
        query = {"error": error, "error_description": description}
        if self.state is not None:
            query["state"] = self.state
        return Redirect(with_query(self.redirect_uri, query))


class _Refused(Exception):
    def __init__(self, error: str, description: str):
        super().__init__(description)
        self.error, self.description = error, description


def with_query(uri: str, query: dict) -> str:
    """The URI with these parameters added to its query (a registered URI may have one)."""
    return uri + ("&" if "?" in uri else "?") + urlencode(query)


def _parse(session: Session, keys: KeyStore, issuer: str, params: dict,
           repeated: frozenset = frozenset(), secret_key: str | None = None) -> AuthRequest | ErrorPage:
    if any("\x00" in value for value in params.values()):
        return ErrorPage("malformed request")  # no database (PostgreSQL) stores a NUL
    if repeated & {"client_id", "redirect_uri"}:
        return ErrorPage("client_id or redirect_uri given more than once")
    client_id = params.get("client_id")
    client = clients.find(session, client_id) if client_id else None
    if client is None:
        return ErrorPage("unknown client")
    redirect_uri = params.get("redirect_uri")
    if not redirect_uri:
        return ErrorPage("the request names no redirect_uri")
    if redirect_uri not in client.redirect_uris:  # exact string match (RFC 9700 2.1)
        return ErrorPage("the redirect_uri is not registered for this client")
    req = AuthRequest(client=client, redirect_uri=redirect_uri, state=params.get("state"),
                      scopes=[], nonce=None, prompts=set(), max_age=None, auth_after=None,
                      code_challenge=None, claims={}, login_hint=None, ui_locales=None,
                      id_token_hint=None, params=params)
    try:
        if repeated:  # RFC 6749 3.1: no parameter more than once
            raise _Refused("invalid_request", f"{', '.join(sorted(repeated))} given more than once")
        return _checked(session, req, keys, issuer, secret_key)
    except _Refused as refused:
        return req.error(refused.error, refused.description)


def _checked(session: Session, req: AuthRequest, keys: KeyStore, issuer: str,
             secret_key: str | None) -> AuthRequest:
    p = req.params
    if p.get("request"):
        raise _Refused("request_not_supported", "request objects are not supported")
    if p.get("request_uri"):
        raise _Refused("request_uri_not_supported", "request_uri is not supported")
    if p.get("response_type") != "code":
        raise _Refused("unsupported_response_type", "only response_type=code is supported")
    if p.get("response_mode", "query") != "query":
        raise _Refused("invalid_request", "only response_mode=query is supported")
    scopes = list(dict.fromkeys((p.get("scope") or "").split()))
    if "openid" not in scopes:
        raise _Refused("invalid_scope", "the openid scope is required")
    if not set(scopes) <= set(req.client.scopes):
        raise _Refused("invalid_scope", "this client may not ask for that scope")
    challenge, method = p.get("code_challenge"), p.get("code_challenge_method")
    if challenge or method:
        if method != "S256":
            raise _Refused("invalid_request", "code_challenge_method must be S256")
        if not challenge or not CODE_CHALLENGE_PATTERN.match(challenge):
            raise _Refused("invalid_request", "invalid code_challenge")
    elif req.client.public:
        raise _Refused("invalid_request", "a public client must send a PKCE code_challenge (S256)")
    prompts = set((p.get("prompt") or "").split())
    if not prompts <= set(PROMPTS) or ("none" in prompts and len(prompts) > 1):
        raise _Refused("invalid_request", "invalid prompt")
    max_age = _non_negative(p.get("max_age"), "max_age")
    auth_after = _marker(secret_key, p, time.time())
    try:
        claims = claim_sets.within(claim_sets.parse_request(p.get("claims")), req.client.scopes)
    except claim_sets.ClaimsRequestError as exc:
        raise _Refused("invalid_request", str(exc)) from exc
    hint = None
    if p.get("id_token_hint"):
        hint = jwts.read_id_token(session, keys, p["id_token_hint"], issuer)
        if hint is None:
            raise _Refused("invalid_request", "id_token_hint is not an ID token of this provider")
    nonce = p.get("nonce") or None
    if nonce is not None and len(nonce) > NONCE_MAX:
        raise _Refused("invalid_request", f"nonce is longer than {NONCE_MAX} characters")
    return AuthRequest(
        client=req.client, redirect_uri=req.redirect_uri, state=req.state, scopes=scopes,
        nonce=nonce, prompts=prompts, max_age=max_age, auth_after=auth_after,
        code_challenge=challenge, claims=claims, login_hint=p.get("login_hint"),
        ui_locales=p.get("ui_locales"), id_token_hint=hint, params=p,
    )


def _non_negative(value: str | None, name: str) -> int | None:
    if value is None or value == "":
        return None
    if not re.fullmatch(r"[0-9]{1,10}", value):
        raise _Refused("invalid_request", f"{name} must be a non-negative integer")
    return int(value)


def _marker_mac(secret_key: str, ms: int, params: dict) -> str:
    bound = [ms] + [params.get(name) for name in ("client_id", "redirect_uri", "state", "nonce")]
    message = ("oidc-auth-after:" + json.dumps(bound)).encode()
    return hmac.new(secret_key.encode(), message, hashlib.sha256).hexdigest()


def _marker(secret_key: str | None, params: dict, now: float) -> int | None:
    """The time (ms) a genuine, recent return-trip marker of this request says, else None."""
    value = params.get(AUTH_AFTER)
    if not value or secret_key is None:
        return None
    ms, _, mac = value.partition(".")
    if not re.fullmatch(r"[0-9]{1,15}", ms) or not hmac.compare_digest(
            mac.encode(), _marker_mac(secret_key, int(ms), params).encode()):
        return None
    return int(ms) if 0 <= now * 1000 - int(ms) <= AUTH_AFTER_TTL * 1000 else None


def _needs_login(req: AuthRequest, login: Login | None, secret_key: str, now: float) -> bool:
    if login is None:
        return True
    auth_time = login.auth_time.timestamp()
    if req.id_token_hint is not None:
        # The hint names who the client believes is logged in; someone else must log in again
        # (on the return trip from a forced login too).
        expected = subjects.derive(secret_key, req.client.sector, login.member_id)
        if req.id_token_hint.get("sub") != expected:
            return True
    if req.auth_after is not None:  # a genuine marker (see AUTH_AFTER)
        return auth_time * 1000 < req.auth_after
    if "login" in req.prompts:
        return True
    if req.max_age is not None and now - auth_time > req.max_age:
        return True
    return False


def _return_url(req: AuthRequest, secret_key: str, now: float) -> str:
    """Where the login page sends the browser back: this request, minus what forced the
    login, plus a signed marker that the login must be newer than now."""
    params = {k: v for k, v in req.params.items() if k not in ("prompt", "max_age", AUTH_AFTER)}
    prompts = req.prompts - {"login"}
    if prompts:
        params["prompt"] = " ".join(sorted(prompts))
    ms = int(now * 1000)
    params[AUTH_AFTER] = f"{ms}.{_marker_mac(secret_key, ms, params)}"
    return "/oauth/authorize?" + urlencode(params)


def decide(session: Session, keys: KeyStore, issuer: str, secret_key: str, params: dict,
           login: Login | None, *, consent_given: bool = False, repeated: frozenset = frozenset()):
    """What to answer to an authorization request. `consent_given`: the member has just said
    yes on the consent page (and its form was checked by the caller). `repeated`: the names
    of parameters the request gave more than once (`params` holds their first values)."""
    req = _parse(session, keys, issuer, params, repeated, secret_key)
    if not isinstance(req, AuthRequest):
        return req
    now = time.time()
    if _needs_login(req, login, secret_key, now):
        if "none" in req.prompts:
            return req.error("login_required", "the member must log in")
        return NeedLogin(_return_url(req, secret_key, now), login is not None, req.login_hint, req.ui_locales)
    if not login.email_verified:
        # A brand learns the member's email and trusts the hub's account: not before the
        # member has proved the address (the link mailed at sign-up). An OAuth error, with or
        # without prompt=none, so the brand can tell the member; no code, no consent recorded.
        return req.error("access_denied", "the member has not confirmed their email address")
    wanted_claims = sorted(claim_sets.requested(req.scopes, req.claims))
    sector = req.client.sector
    if consent_given:
        consent.grant(session, login.member_id, sector, req.scopes, wanted_claims)
    elif "consent" in req.prompts or consent.missing(session, login.member_id, sector, req.scopes,
                                                     wanted_claims):
        if "none" in req.prompts:
            return req.error("consent_required", "the member has not agreed to share this")
        return AskConsent(req.client, req.scopes, wanted_claims, req.params)
    return _issue(session, req, login, secret_key)


def refuse(session: Session, keys: KeyStore, issuer: str, params: dict):
    """The member said no on the consent page."""
    req = _parse(session, keys, issuer, params)
    if not isinstance(req, AuthRequest):
        return req
    return req.error("access_denied", "the member did not agree")


def _issue(session: Session, req: AuthRequest, login: Login, secret_key: str) -> Redirect:
    sector = req.client.sector
    grant: Grant = grants.create(
        session, client_id=req.client.client_id, sector=sector, member_id=login.member_id,
        account_id=login.account_id, session_id=login.session_id,
        subject=subjects.subject_for(session, secret_key, sector, login.member_id),
        scope=" ".join(req.scopes), claims=req.claims, auth_time=login.auth_time,
        amr=" ".join(login.amr),
    )
    code = grants.issue_code(session, grant, redirect_uri=req.redirect_uri,
                             code_challenge=req.code_challenge, nonce=req.nonce)
    query = {"code": code}
    if req.state is not None:
        query["state"] = req.state
    return Redirect(with_query(req.redirect_uri, query))

