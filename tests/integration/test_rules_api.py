"""Program rules through the API: publish a version, read what is in force and the history,
check a document without saving it; partners manage their own programs, ops any."""
from __future__ import annotations

from datetime import timedelta

import pytest

from hub.db import utcnow
from tests.conftest import Api, assert_problem
from tests.integration.test_member_transfers import member_api
from tests.integration.test_oidc import register

# Wrong twice over: an unknown section, and a multiplier rule without its multiplier.
BAD = {"bogus": 1, "earning": {"rules": [{"id": "double", "kind": "multiplier"}]}}
BAD_PATHS = {"/", "/earning/rules/0"}
# Well-formed, but a multiplier nothing bounds: the section's own check refuses it.
UNBOUNDED = {"earning": {"rules": [{"id": "double", "kind": "multiplier", "multiplier": "2"}]}}
MORNINGS = {"earning": {"timezone": "Asia/Jakarta", "rules": [
    {"id": "morning-pastries", "kind": "multiplier", "multiplier": "2", "description": "Double points on pastries",
     "when": {"categories": ["pastry"], "time": {"from": "06:00", "to": "11:00"}}, "cap": {"per_transaction": 100}}]}}


def put(api: Api, program: str, body: dict, key: str | None = None):
    headers = {**api.headers, **({"Idempotency-Key": key} if key else {})}
    return api.http.put(f"/v1/programs/{program}/rules", json=body, headers=headers)


def iso(delta: timedelta) -> str:
    return (utcnow() + delta).isoformat().replace("+00:00", "Z")


def versions(api: Api, program: str) -> list[int]:
    listed = api.get(f"/v1/programs/{program}/rules/versions")
    assert listed.status_code == 200, listed.text
    return [v["version"] for v in listed.json()["items"]]


def test_a_partner_publishes_and_reads_its_rules(partner):
    api, code = partner.api, partner.program
    assert api.get(f"/v1/programs/{code}/rules").json() == {"program": code, "in_force": None, "scheduled": []}

    first = put(api, code, {"document": {}})
    assert first.status_code == 201, first.text
    body = first.json()
    assert (body["program"], body["version"], body["document"]) == (code, 1, {})
    assert body["created_by"] == f"client:{partner.client_id}"
    later = put(api, code, {"document": {}, "effective_from": iso(timedelta(days=7))})
    assert later.status_code == 201 and later.json()["version"] == 2

    now = api.get(f"/v1/programs/{code}/rules").json()
    assert now["in_force"]["version"] == 1 and [v["version"] for v in now["scheduled"]] == [2]
    assert versions(api, code) == [2, 1]
    one = api.get(f"/v1/programs/{code}/rules/versions/1")
    assert one.status_code == 200 and one.json() == body
    assert_problem(api.get(f"/v1/programs/{code}/rules/versions/3"), 404, "rules-version-not-found")


def test_a_bad_document_is_refused_with_every_path_and_nothing_saved(partner):
    api, code = partner.api, partner.program
    problem = assert_problem(put(api, code, {"document": BAD}), 422, "invalid-rules")
    paths = {e["path"] for e in problem["errors"]}
    assert paths == BAD_PATHS, problem
    assert all(e["message"] for e in problem["errors"])
    assert versions(api, code) == []

    checked = api.post(f"/v1/programs/{code}/rules/check", {"document": BAD})
    assert checked.status_code == 200
    assert not checked.json()["valid"] and {f["path"] for f in checked.json()["findings"]} == paths
    good = api.post(f"/v1/programs/{code}/rules/check", {"document": MORNINGS})
    assert good.json() == {"valid": True, "findings": []}
    assert versions(api, code) == []  # checking saves nothing


def test_rules_a_schema_allows_but_a_section_check_refuses_are_refused_too(partner):
    api, code = partner.api, partner.program
    problem = assert_problem(put(api, code, {"document": UNBOUNDED}), 422, "invalid-rules")
    assert [e["path"] for e in problem["errors"]] == ["/earning/rules/0"] and "unbounded" in problem["detail"]
    checked = api.post(f"/v1/programs/{code}/rules/check", {"document": UNBOUNDED}).json()
    assert not checked["valid"] and checked["findings"] == problem["errors"]
    assert versions(api, code) == []
    published = put(api, code, {"document": MORNINGS})
    assert published.status_code == 201 and published.json()["document"] == MORNINGS


@pytest.mark.parametrize("delta, slug", [(timedelta(hours=-1), "rules-backdated"),
                                         (timedelta(days=1), "rules-out-of-order")])
def test_a_version_cannot_take_effect_in_the_past_or_before_the_newest(partner, delta, slug):
    api, code = partner.api, partner.program
    assert put(api, code, {"document": {}, "effective_from": iso(timedelta(days=3))}).status_code == 201
    assert_problem(put(api, code, {"document": {}, "effective_from": iso(delta)}), 422, slug)
    assert versions(api, code) == [1]


def test_a_retried_publish_with_its_key_publishes_once(partner):
    api, code = partner.api, partner.program
    first = put(api, code, {"document": {}}, key="rules-1")
    again = put(api, code, {"document": {}}, key="rules-1")
    assert (first.status_code, again.status_code) == (201, 201)
    assert again.headers["Idempotent-Replayed"] == "true" and again.json() == first.json()
    assert versions(api, code) == [1]


def test_ops_manage_any_programs_rules(partner, ops):
    published = put(ops, partner.program, {"document": {}})
    assert published.status_code == 201 and published.json()["created_by"].startswith("client:")
    assert ops.get(f"/v1/programs/{partner.program}/rules").json()["in_force"]["version"] == 1
    assert_problem(put(ops, "NOSUCHPROGRAM", {"document": {}}), 404, "program-not-found")


def test_another_partners_program_is_not_found(partner, other_partner):
    api, code = other_partner.api, partner.program
    assert_problem(put(api, code, {"document": {}}), 404, "program-not-found")
    for path in ("rules", "rules/versions", "rules/versions/1"):
        assert_problem(api.get(f"/v1/programs/{code}/{path}"), 404, "program-not-found")
    assert_problem(api.post(f"/v1/programs/{code}/rules/check", {"document": {}}), 404, "program-not-found")
    assert versions(partner.api, code) == []


def test_a_partner_hosted_program_has_no_rules_to_publish(make_partner):
    hosted = make_partner(hosted_by="lcp")
    assert_problem(put(hosted.api, hosted.program, {"document": {}}), 422, "program-hosted")


def test_members_tokens_cannot_manage_rules(app, http, db, ops, partner):
    brand = register(ops, partner.code, scopes=["openid", "me:read", "me:points"])
    member = member_api(app, http, db, brand, partner.enrol(), scope="openid me:read me:points")
    assert_problem(put(member, partner.program, {"document": {}}), 403, "insufficient-scope")
    assert_problem(member.get(f"/v1/programs/{partner.program}/rules"), 403, "insufficient-scope")
    assert versions(partner.api, partner.program) == []


def test_versions_page_newest_first(partner):
    api, code = partner.api, partner.program
    for _ in range(3):
        assert put(api, code, {"document": {}}).status_code == 201
    first = api.get(f"/v1/programs/{code}/rules/versions", limit=2).json()
    assert [v["version"] for v in first["items"]] == [3, 2] and first["next_cursor"]
    rest = api.get(f"/v1/programs/{code}/rules/versions", limit=2, cursor=first["next_cursor"]).json()
    assert [v["version"] for v in rest["items"]] == [1] and rest["next_cursor"] is None
    assert_problem(api.get(f"/v1/programs/{code}/rules/versions", cursor="bm9wZQ"), 422, "invalid-cursor")


def test_the_body_must_hold_a_document(partner):
    assert_problem(put(partner.api, partner.program, {"document": []}), 400, "invalid-request")
    assert_problem(put(partner.api, partner.program, {}), 400, "invalid-request")
    assert versions(partner.api, partner.program) == []


def test_text_postgresql_cannot_store_is_refused_not_a_server_error(partner):
    api, code = partner.api, partner.program
    document = {"earning": {"rules": [{**MORNINGS["earning"]["rules"][0], "description": "pastries\u0000"}]}}
    problem = assert_problem(put(api, code, {"document": document}), 422, "invalid-rules")
    assert problem["errors"] == [{"path": "/earning/rules/0/description", "message": "text cannot hold a NUL character"}]
    assert api.post(f"/v1/programs/{code}/rules/check", {"document": document}).json()["findings"] == problem["errors"]
    assert versions(api, code) == []


def test_a_promotions_budget_cannot_change_once_published(partner):
    """Its spending is counted against the first budget: a new figure under the same id would
    not bind, so it is refused; a new id starts a new budget."""
    from tests.integration.test_rated_earning import promotion

    api, code = partner.api, partner.program
    assert put(api, code, {"document": {"promotions": [promotion("weekend", bonus=5, budget_points=1000)]}}).status_code == 201
    changed = {"document": {"promotions": [promotion("weekend", bonus=5, budget_points=5000)]}}
    refused = put(api, code, changed)
    assert_problem(refused, 422, "invalid-rules")
    assert [e["path"] for e in refused.json()["errors"]] == ["/promotions/0/budget_points"]
    checked = api.post(f"/v1/programs/{code}/rules/check", changed).json()
    assert checked["valid"] is False and checked["findings"][0]["path"] == "/promotions/0/budget_points"
    assert versions(api, code) == [1]
    renamed = {"document": {"promotions": [promotion("weekend-2", bonus=5, budget_points=5000)]}}
    assert put(api, code, renamed).status_code == 201
