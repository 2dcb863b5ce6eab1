"""Every visible string of the pages (the account pages', the dashboard's and the OpenID provider's) exists in
English and in Bahasa Indonesia."""
from __future__ import annotations

import re
import string
from pathlib import Path

import pytest

import hub.api.oidc_text  # its import adds the provider's texts, as hub/api/oauth.py's does
from hub.identity.oidc import claims, clients
from hub.identity import linking
from hub.web import dashboard, i18n
from hub.web.i18n import MESSAGES

HUB = Path(__file__).resolve().parents[2] / "hub"
WEB = HUB / "web"


def _fields(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name}


def test_both_languages_have_the_same_keys_and_placeholders():
    assert MESSAGES["en"].keys() == MESSAGES["id"].keys()
    for key, english in MESSAGES["en"].items():
        assert _fields(english) == _fields(MESSAGES["id"][key]), key


def test_every_key_the_pages_use_exists():
    used = set()
    for path in [*WEB.glob("templates/**/*.html"), *WEB.glob("*.py"), *HUB.glob("api/templates/**/*.html"),
                 HUB / "api" / "oauth.py"]:
        used |= set(re.findall(r"""\bt\(\s*["']([\w.\-]+)["']""", path.read_text()))
    used |= {f"notice.{slug}" for slug in ("totp-off", *dashboard.NOTICES)}
    # The dashboard's keys made from values: transfer codes, statuses, refusals' slugs.
    used |= {f"dash.code.{code}" for code in ("earn", "bonus", "reversal", "redemption", "conversion", "transfer",
                                              "expiry", "adjustment", "other")}
    used |= {f"dash.state.{status}" for status in ("posted", "pending", "voided")}
    used |= {f"redeem.error.{slug}" for slug in (*dashboard.REDEEM_ERRORS, "insufficient", "other")}
    used |= {f"convert.error.{slug}" for slug in (*dashboard.CONVERT_ERRORS, "other")}
    used |= {"convert.done_title", "convert.pending_title"}  # t(title_key)
    used |= {f"link.error.{status}" for status in (linking.CODE_EXPIRED, linking.TOO_MANY, linking.ALREADY_MEMBER,
                                                   linking.LINKED_ELSEWHERE)}
    # The consent page names each scope and claim it asks for (t("oidc.scope." ~ scope)).
    used = {key for key in used if not key.endswith(".")}
    used |= {f"oidc.scope.{scope}" for scope in clients.MEMBER_SCOPES}
    used |= {f"oidc.claim.{claim}" for claim in claims.SUPPORTED}
    assert "oidc.consent_title" in used
    assert used and used <= MESSAGES["en"].keys(), used - MESSAGES["en"].keys()
    # error.<slug>: every slug hub.identity.accounts raises has a message.
    source = (WEB.parent / "identity" / "accounts.py").read_text() + (WEB.parent / "identity" / "linking.py").read_text()
    slugs = set(re.findall(r'slug="([\w-]+)"', source)) | {"login-wrong", "code-wrong", "password-mismatch"}
    assert {f"error.{slug}" for slug in slugs} <= MESSAGES["en"].keys()


@pytest.mark.parametrize("catalogue", [
    {"en": {"x.new": "New"}},  # a language missing
    {"en": {"x.new": "New"}, "id": {"x.baru": "Baru"}},  # keys differ
    {"en": {"brand": "Another brand"}, "id": {"brand": "Merek lain"}},  # a clash with a key of the pages
])
def test_added_texts_need_every_language_and_no_clash(catalogue):
    before = {language: dict(texts) for language, texts in MESSAGES.items()}
    with pytest.raises(ValueError):
        i18n.add_messages(catalogue)
    assert MESSAGES == before


def test_adding_the_same_texts_again_is_harmless():
    i18n.add_messages(hub.api.oidc_text.MESSAGES)
    assert MESSAGES["id"]["oidc.allow"] == hub.api.oidc_text.MESSAGES["id"]["oidc.allow"]
