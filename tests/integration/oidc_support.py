"""Test helpers for the OpenID provider: a relying party driven by an independent client
library (Authlib's requests OAuth2Session, mounted on the in-process app), a browser with a
login cookie, and members logged in through hub.identity.login."""
from __future__ import annotations

import html
import re
import secrets
from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from authlib.common.security import generate_token
from authlib.integrations.requests_client import OAuth2Session
from authlib.oidc.core import CodeIDToken
from joserfc import jwt
from joserfc.jwk import KeySet
from starlette.testclient import TestClient

from hub.db import utcnow
from hub.identity import login
from hub.identity.account_models import MemberAccount
from hub.programs.models import Member
from tests.conftest import ISSUER

SCOPE = "openid profile email offline_access me:read me:write"


class AppAdapter(requests.adapters.BaseAdapter):
    """requests -> the ASGI app in this process (through starlette's test client)."""

    def __init__(self, app):
        super().__init__()
        self.client = TestClient(app, base_url=ISSUER, follow_redirects=False)

    def send(self, request, **kwargs):
        answer = self.client.request(request.method, request.url, headers=dict(request.headers),
                                     content=request.body)
        response = requests.Response()
        response.status_code = answer.status_code
        response.headers = requests.structures.CaseInsensitiveDict(answer.headers)
        response._content = answer.content
        response.url, response.request, response.encoding = request.url, request, "utf-8"
        return response

    def close(self):
        self.client.close()


class RelyingParty:
    """A brand's site, as a standard OIDC client library sees the provider."""

    def __init__(self, app, client_id: str, secret: str | None, redirect_uri: str, scope: str = SCOPE):
        self.client_id, self.redirect_uri = client_id, redirect_uri
        self.session = OAuth2Session(
            client_id, secret, scope=scope, redirect_uri=redirect_uri, code_challenge_method="S256",
            token_endpoint_auth_method="client_secret_basic" if secret else "none")
        self.session.mount(ISSUER, AppAdapter(app))
        self.verifier = self.nonce = self.state = None

    def authorize_url(self, **extra) -> str:
        self.verifier, self.nonce = generate_token(48), generate_token(16)
        url, self.state = self.session.create_authorization_url(
            f"{ISSUER}/oauth/authorize", code_verifier=self.verifier, nonce=self.nonce, **extra)
        return url

    def exchange(self, callback: str, **extra) -> dict:
        return self.session.fetch_token(f"{ISSUER}/oauth/token", authorization_response=callback,
                                        code_verifier=self.verifier, **extra)

    def jwks(self) -> dict:
        return self.session.get(f"{ISSUER}/oauth/jwks", withhold_token=True).json()

    def verify_id_token(self, id_token: str, access_token: str | None) -> dict:
        """Signature against the published JWKS, then iss, aud, exp, iat, auth_time, nonce
        and at_hash with Authlib's CodeIDToken."""
        decoded = jwt.decode(id_token, KeySet.import_key_set(self.jwks()), algorithms=["RS256"])
        options = {"iss": {"essential": True, "value": ISSUER},
                   "aud": {"essential": True, "value": self.client_id}, "auth_time": {"essential": True}}
        if self.nonce:
            options["nonce"] = {"essential": True}
        claims = CodeIDToken(
            decoded.claims, decoded.header, options=options,
            params={"nonce": self.nonce, "access_token": access_token})
        claims.validate(leeway=5)
        return dict(claims)


class Browser:
    """A member's browser: its own cookie jar, redirects not followed."""

    def __init__(self, app, cookie: str | None = None):
        self.client = TestClient(app, base_url=ISSUER, follow_redirects=False)
        if cookie:
            self.client.cookies.set("hub_login", cookie)

    def get(self, url: str, **kwargs):
        return self.client.get(url, **kwargs)

    def post(self, url: str, data: dict):
        return self.client.post(url, data=data)

    def submit(self, page, button: str | None = None):
        """Post the page's (only) form with its hidden fields and the button's name=value."""
        action = html.unescape(re.search(r'<form method="post" action="([^"]+)"', page.text).group(1))
        fields = {html.unescape(n): html.unescape(v)
                  for n, v in re.findall(r'<input type="hidden" name="([^"]*)" value="([^"]*)">', page.text)}
        if button:
            name, value = button.split("=", 1)
            fields[name] = value
        return self.post(action, fields)


def log_in(db, amr=("pwd",), member_id=None, verified=True) -> tuple[login.Login, str]:
    """A member (new, or this one) with an account (its email verified unless `verified` is
    False), logged in: (login, cookie value)."""
    def work(s):
        if member_id is None:
            member = Member()
            s.add(member)
            s.flush()
        account = MemberAccount(member_id=member_id or member.id, email=f"m{secrets.token_hex(5)}@example.com",
                                email_verified_at=utcnow() if verified else None, password_hash="unused in these tests",
                                given_name="Siti", family_name="Rahayu", locale="id")
        s.add(account)
        s.flush()
        return login.start(s, account, tuple(amr), ttl=timedelta(hours=1))
    return db.write(work)


def log_in_again(db, previous: login.Login, amr=("pwd",)) -> tuple[login.Login, str]:
    """The same account logging in again on its browser (a forced re-authentication): the
    session is renewed in place, with a fresh auth_time and a new cookie."""
    def work(s):
        account = s.get(MemberAccount, previous.account_id)
        return login.start(s, account, tuple(amr), ttl=timedelta(hours=1), replacing=previous.session_id)
    return db.write(work)


def query(url: str) -> dict:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


# Fixtures shared by the OIDC test modules, which import them (each defines its own `brand`).

@pytest.fixture
def rp(app, brand):
    return RelyingParty(app, brand["client_id"], brand["client_secret"], "https://brand.example/cb")


@pytest.fixture
def member(db):
    return log_in(db)


@pytest.fixture
def browser(app, member):
    return Browser(app, member[1])
