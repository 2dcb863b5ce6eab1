"""`claims` requests (OIDC Core 5.5) stay within what the client was registered for."""
from __future__ import annotations

from tests.conftest import ISSUER
from tests.integration.oidc_support import RelyingParty
from tests.integration.oidc_support import browser, member  # noqa: F401  (fixtures)
from tests.integration.test_oidc import register


def test_claims_beyond_the_clients_scopes_are_not_given(app, ops, partner, browser):
    """A client registered for `openid` alone cannot get the email or the name through a
    `claims` request: those claims are ignored, so nothing is shared and nothing is asked."""
    narrow = register(ops, partner.code, scopes=["openid"])
    rp = RelyingParty(app, narrow["client_id"], narrow["client_secret"], "https://brand.example/cb",
                      scope="openid")
    answer = browser.get(rp.authorize_url(claims='{"userinfo": {"email": null, "name": null}, '
                                                 '"id_token": {"email": null}}'))
    assert answer.status_code == 302, answer.text  # no consent page: nothing to consent to
    token = rp.exchange(answer.headers["location"])
    assert "email" not in rp.verify_id_token(token["id_token"], None)
    assert rp.session.get(f"{ISSUER}/oauth/userinfo").json().keys() == {"sub"}
