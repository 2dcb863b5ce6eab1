"""Security headers on every response, through the ASGI app as a server runs it
(hub/hardening/headers.py): every HTML page of the Flask url_map, the API (connexion's path,
the lean path, problems raised by connexion's middleware), the OAuth endpoints."""
from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest

from hub.hardening.headers import SecurityHeaders, headers_for
from tests.integration import oidc_support as oidc
from tests.integration.test_account_pages import flask_app  # noqa: F401  (fixture)

COMMON = {
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
}
ROOT = Path(__file__).resolve().parents[2]
TEMPLATES = [ROOT / "hub/web/templates", ROOT / "hub/web/templates/ops", ROOT / "hub/api/templates/oidc"]


def _assert_common(response):
    for name, value in COMMON.items():
        assert response.headers.get(name) == value, (response.url, name)
    assert "camera=()" in response.headers["permissions-policy"]
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
    assert "strict-transport-security" not in response.headers  # the test issuer is plain http


def _assert_page(response):
    _assert_common(response)
    csp = response.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "unsafe-inline" not in csp and "script-src" not in csp
    assert response.headers["cache-control"] == "no-store"


def _sample_path(rule) -> str:
    values = {name: "hub.css" if name == "filename" else "x" for name in rule.arguments}
    return re.sub(r"<(?:[^:>]+:)?([^>]+)>", lambda m: values[m.group(1)], rule.rule)


def test_every_html_page_of_the_url_map_has_the_page_headers(app, db, flask_app):
    _, cookie = oidc.log_in(db)
    member = oidc.Browser(app, cookie)
    pages = []
    for rule in flask_app.url_map.iter_rules():
        if "GET" not in rule.methods or rule.rule.startswith("/v1"):
            continue  # the API's routes: test_api_responses_...
        path = _sample_path(rule)
        for browser in (member, oidc.Browser(app)):  # logged in, and not
            response = browser.get(path)
            _assert_common(response)
            if response.headers.get("content-type", "").startswith("text/html"):
                _assert_page(response)
                pages.append(path)
    # The member's pages (dashboard, history, security, link, login, sign-up, reset, verify) and
    # the provider's error page at least: the loop saw them.
    for path in ("/account/", "/account/history", "/account/security", "/account/link", "/account/login",
                 "/account/signup", "/account/reset", "/account/verify", "/oauth/authorize"):
        assert path in pages


def test_templates_have_no_inline_script_or_style_so_the_strict_csp_keeps_them_working():
    templates = [t for folder in TEMPLATES for t in folder.glob("*.html")]
    assert len(templates) > 20
    for template in templates:
        text = template.read_text()
        assert not re.search(r"<script(?![^>]*\bsrc=)", text), template
        assert not re.search(r"<style|\sstyle=|\son[a-z]+=|javascript:", text, re.I), template


def test_api_responses_have_the_api_headers_and_are_not_cached(http, partner):
    member_id = partner.enrol()
    responses = [
        partner.api.get(f"/v1/members/{member_id}"),  # connexion's path
        partner.api.post("/v1/transactions", partner.purchase_body(member_id, "10000")),  # the lean path
        http.get("/v1/members"),  # 401 from connexion's security middleware
        http.get("/v1/nowhere"),  # 404
        http.post("/oauth/token", data={"grant_type": "client_credentials"},
                  auth=(partner.client_id, partner.secret)),
        http.get("/healthz"),
    ]
    for response in responses:
        _assert_common(response)
        assert response.headers["content-security-policy"] == "default-src 'none'; frame-ancestors 'none'"
        assert response.headers["cache-control"] == "no-store", response.url


def test_public_documents_keep_their_own_caching(http):
    for path in ("/.well-known/openid-configuration", "/oauth/jwks"):
        response = http.get(path)
        _assert_common(response)
        assert response.headers["cache-control"].startswith("public")


def test_swagger_ui_gets_its_inline_script_and_nothing_else(http):
    response = http.get("/v1/ui/")
    assert response.status_code == 200
    _assert_common(response)
    assert "script-src 'self' 'unsafe-inline'" in response.headers["content-security-policy"]


@pytest.mark.parametrize("https", [True, False])
def test_hsts_only_when_the_issuer_is_https(https):
    sent = []

    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/html"), (b"x-frame-options", b"SAMEORIGIN")]})

    async def send(message):
        sent.append(message)

    asyncio.run(SecurityHeaders(app, https=https)({"type": "http", "path": "/account/"}, None, send))
    headers = dict(sent[0]["headers"])
    assert (b"strict-transport-security" in headers) is https
    assert headers[b"x-frame-options"] == b"DENY"  # the route's own is replaced
    assert headers[b"cache-control"] == b"no-store"


def test_the_csp_of_a_page_a_document_and_an_answer():
    assert "style-src 'self'" in headers_for("/account/", "text/html; charset=utf-8", False)["content-security-policy"]
    assert headers_for("/v1/members", "application/json", False)["content-security-policy"].startswith(
        "default-src 'none'")
