"""Signing keys rotate without breaking tokens already issued."""
from __future__ import annotations

import time

from click.testing import CliRunner

from hub.api import runtime
from hub.cli import main
from hub.identity.tokens import jwt_header
from tests.conftest import Api, token_for


def test_rotation_signs_with_the_new_key_and_old_tokens_still_verify(http, partner, settings, monkeypatch):
    member = partner.enrol()
    old_token = partner.api.headers["Authorization"].split()[1]
    old_kid = jwt_header(old_token)["kid"]
    monkeypatch.setenv("HUB_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("HUB_SECRET_KEY", settings.secret_key)
    result = CliRunner().invoke(main, ["keys", "rotate"], catch_exceptions=False)
    assert result.exit_code == 0
    time.sleep(1.1)  # unseen kids reload the keys at most once a second
    runtime.current().keys.expect("a-kid-it-has-not-seen")  # as a token signed elsewhere would
    new_token = token_for(http, partner.client_id, partner.secret)
    assert jwt_header(new_token)["kid"] not in (None, old_kid)
    for token in (old_token, new_token):
        assert Api(http, token).get(f"/v1/members/{member}").status_code == 200
    published = {k["kid"] for k in runtime.current().keys.public_jwks()["keys"]}
    assert {old_kid, jwt_header(new_token)["kid"]} <= published
    assert all("d" not in k for k in runtime.current().keys.public_jwks()["keys"])  # no private parts


def test_garbage_tokens_are_401_not_500(http):
    for junk in ("x", "a.b.c", "!!!.???.***", "eyJhbGciOiJub25lIn0.e30."):
        assert http.get("/v1/partners", headers={"Authorization": f"Bearer {junk}"}).status_code == 401
