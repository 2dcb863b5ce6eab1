"""Shared set-up of the engagement tests (challenges, segments, offers): a signed-in member
with a brand token, whose memberships in several partners' programs are one coalition member."""
from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from sqlalchemy import update

from hub.db import utcnow
from hub.programs.models import Membership
from tests.conftest import Api
from tests.integration.oidc_support import browser, member, rp  # noqa: F401  (fixtures)
from tests.integration.test_oidc import sign_in


def iso(delta: timedelta = timedelta(0)) -> str:
    """Now plus `delta`, as the API writes times."""
    return (utcnow() + delta).isoformat().replace("+00:00", "Z")


def recently(hours: int = 1) -> str:
    return iso(-timedelta(hours=hours))


def join(db, partner, member_id: uuid.UUID) -> None:
    """Enrol the member in the partner's program (a new membership, then moved to this member:
    a partner can only enrol a member it knows already)."""
    enrolled = partner.enrol()
    db.write(lambda s: s.execute(update(Membership).where(
        Membership.member_id == uuid.UUID(enrolled)).values(member_id=member_id)))


def buy(partner, member_id, amount: str = "100000", hours_ago: int = 1) -> dict:
    response = partner.api.post("/v1/transactions", partner.purchase_body(
        str(member_id), amount, occurred_at=recently(hours_ago)))
    assert response.status_code == 201, response.text
    return response.json()


@pytest.fixture
def brand(ops):
    """The app `me` signs in on: the hub's own (a client of no partner), which shows the member
    everything of theirs; a partner's brand app sees less (test_sharing.py)."""
    body = {"name": "shop app", "redirect_uris": ["https://brand.example/cb"],
            "scopes": ["openid", "profile", "email", "offline_access", "me:read", "me:write"]}
    response = ops.post("/v1/clients", body)
    assert response.status_code == 201, response.text
    return response.json()


@pytest.fixture
def me(http, browser, rp, member):  # noqa: F811
    """(member id, the member's own API client)."""
    return member[0].member_id, Api(http, sign_in(browser, rp)["access_token"])
