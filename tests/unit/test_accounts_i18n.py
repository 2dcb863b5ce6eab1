"""Every visible string of the pages exists in English and in Bahasa Indonesia."""
from __future__ import annotations

import re
import string
from pathlib import Path

from hub.web.i18n import MESSAGES

WEB = Path(__file__).resolve().parents[2] / "hub" / "web"


def _fields(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name}


def test_both_languages_have_the_same_keys_and_placeholders():
    assert MESSAGES["en"].keys() == MESSAGES["id"].keys()
    for key, english in MESSAGES["en"].items():
        assert _fields(english) == _fields(MESSAGES["id"][key]), key


def test_every_key_the_pages_use_exists():
    used = set()
    for path in [*WEB.glob("templates/*.html"), *WEB.glob("*.py")]:
        used |= set(re.findall(r"""\bt\(\s*["']([\w.\-]+)["']""", path.read_text()))
    used |= {f"notice.{slug}" for slug in ("totp-off",)}
    assert used and used <= MESSAGES["en"].keys(), used - MESSAGES["en"].keys()
    # error.<slug>: every slug hub.identity.accounts raises has a message.
    source = (WEB.parent / "identity" / "accounts.py").read_text()
    slugs = set(re.findall(r'slug="([\w-]+)"', source)) | {"login-wrong", "code-wrong", "password-mismatch"}
    assert {f"error.{slug}" for slug in slugs} <= MESSAGES["en"].keys()
