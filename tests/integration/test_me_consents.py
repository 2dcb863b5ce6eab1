"""/v1/me/consents with a brand's member token: a brand sees and withdraws only what the member
shares with its own partner (the member manages every consent on the hub's dashboard)."""
from __future__ import annotations

import pytest

from tests.conftest import Api
from tests.integration.oidc_support import RelyingParty
from tests.integration.oidc_support import browser, member, rp  # noqa: F401  (fixtures)
from tests.integration.test_oidc import register, sign_in


@pytest.fixture
def brand(ops, partner):
    return register(ops, partner.code)


def test_a_brand_sees_and_withdraws_only_its_own_partners_consent(app, http, ops, rp, browser, partner,
                                                                   other_partner):
    mine = sign_in(browser, rp)
    other = register(ops, other_partner.code)
    theirs_rp = RelyingParty(app, other["client_id"], other["client_secret"], "https://brand.example/cb")
    theirs = Api(http, sign_in(browser, theirs_rp)["access_token"])
    # The other brand learns nothing of the member's consent to this partner...
    assert [c["partner"] for c in theirs.get("/v1/me/consents").json()["items"]] == [other_partner.code]
    # ...and cannot withdraw it: answered as if there were none, and this brand's token still works.
    refused = theirs.http.delete(f"/v1/me/consents/{partner.code}", headers=theirs.headers)
    assert refused.status_code == 404 and refused.json()["type"].endswith("/consent-not-found")
    refused = theirs.http.delete(f"/v1/me/consents/{rp.client_id}", headers=theirs.headers)
    assert refused.status_code == 404
    assert Api(http, mine["access_token"]).get("/v1/me").status_code == 200
    # Its own, it can (the member disconnects from within the brand).
    assert theirs.http.delete(f"/v1/me/consents/{other_partner.code}", headers=theirs.headers).status_code == 204
    assert theirs.get("/v1/me").status_code == 401

