"""Which claims a client gets: those of its granted scopes (OIDC Core 5.4) and those it named
in a `claims` request (5.5), from what the account holds (hub.identity.login.account_claims).

Scope claims go to userinfo only: the ID token carries identity and session claims, plus
profile claims only when the `claims` request asks for them there (never the whole userinfo).
"""
from __future__ import annotations

import json

SCOPE_CLAIMS = {
    "profile": ("name", "given_name", "family_name", "locale"),
    "email": ("email", "email_verified"),
    "phone": ("phone_number", "phone_number_verified"),
}
SUPPORTED = tuple(c for claims in SCOPE_CLAIMS.values() for c in claims)
TARGETS = ("userinfo", "id_token")


class ClaimsRequestError(ValueError):
    """The `claims` parameter is not the JSON object OIDC Core 5.5 describes."""


def parse_request(text: str | None) -> dict[str, list[str]]:
    """{"userinfo": [...], "id_token": [...]}: the supported claims a `claims` parameter names
    (unknown ones are ignored, as 5.5 says; values and `essential` do not change what we hold)."""
    if not text:
        return {}
    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise ClaimsRequestError("claims is not JSON") from exc
    if not isinstance(doc, dict) or not all(isinstance(doc.get(t, {}), dict) for t in TARGETS):
        raise ClaimsRequestError("claims must be an object of userinfo and id_token objects")
    named = {t: [c for c in doc.get(t, {}) if c in SUPPORTED] for t in TARGETS}
    return {t: names for t, names in named.items() if names}


def within(claims_request: dict[str, list[str]], scopes) -> dict[str, list[str]]:
    """The claims of a request that the client's registered `scopes` cover: a client may not
    get through `claims` what it may not ask for by scope (the rest is ignored, as 5.5 allows
    for claims the provider will not return)."""
    allowed = for_scopes(scopes)
    kept = {t: [c for c in names if c in allowed] for t, names in claims_request.items()}
    return {t: names for t, names in kept.items() if names}


def for_scopes(scopes) -> set[str]:
    return {c for s in scopes for c in SCOPE_CLAIMS.get(s, ())}


def requested(scopes, claims_request: dict[str, list[str]]) -> set[str]:
    """Every claim the member is asked to share: the consent page lists these."""
    return for_scopes(scopes) | {c for names in claims_request.values() for c in names}


def select(held: dict, names) -> dict:
    """The claims among `names` that the account holds."""
    return {name: held[name] for name in sorted(names) if name in held}
