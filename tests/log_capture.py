"""The issue's test: a log capture of a full test run contains no secret or token (issue 7,
item 6). tests/conftest.py puts a LeakScan on the root logger at DEBUG for the whole session,
watches where the hub issues secrets (so that each one issued during the run is looked for by
its exact value), and fails the run at its end if any captured line holds one.

What counts as a leak in a captured line (after the hub's redaction, hub/hardening/redaction.py):
a JWT, a Bearer credential, a whsec_ signing secret, a secret-named query or form field with a
value, or the exact value of a remembered secret (the test HUB_SECRET_KEY, the tests' passwords,
and every client secret, authorization code, refresh token, verification and reset token the
hub issued during the run: client secrets, authorization codes, refresh tokens, verification
and reset tokens, TOTP secrets, recovery codes, link codes, gift-card codes and pins, and the
master, data and index keys, in each encoding a log line could show).
"""
from __future__ import annotations

import base64
import functools
import importlib
import logging
import re
from urllib.parse import parse_qs, urlsplit

PATTERNS = {
    "a JWT": re.compile(r"eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}"),
    "a Bearer credential": re.compile(r"(?i)\bbearer\s+(?!\[redacted\])[A-Za-z0-9._~+/-]{16,}"),
    "a webhook signing secret": re.compile(r"whsec_[A-Za-z0-9]"),
    "a secret in a query string or form": re.compile(
        r"(?i)[?&](?:code|[\w-]*token|[\w-]*secret|password)=(?!\[redacted\])[^&\s\"']+"),
}
# Not the hub's logs: Selenium's wire transcript of what the e2e tests make the browser do
# (the keys the test types into the password field, the URLs it visits with their codes).
TEST_DRIVERS = ("selenium.",)
MIN_SECRET = 8  # shorter remembered values would match by chance
# Issued secrets are URL-safe tokens: looked up as whole words of this alphabet (a set lookup
# per word, fast over a whole run); other remembered values (passphrases) as substrings.
WORD = re.compile(r"[A-Za-z0-9_-]{8,}")
# Keys in standard base64 (+, /, = padding), looked up the same way as whole words.
B64_WORD = re.compile(r"[A-Za-z0-9+/]{8,}={0,2}")
# Short numeric codes (a link code's 6 digits, a card's pin) would match any number by chance:
# they count as leaked only where a line labels them a code or pin ("code=123456", "pin: 1234").
SHORT_CODE = re.compile(r"\d{4,7}")
LABELLED_CODE = re.compile(r"(?i)(?:code|pin)\D{0,12}?(\d{4,7})(?!\d)")


def _key_forms(key: bytes) -> list[str]:
    """A key as a log line could show it: URL-safe or standard base64, or hex."""
    return [base64.urlsafe_b64encode(key).rstrip(b"=").decode(), base64.b64encode(key).decode(), key.hex()]


def _delivery_secrets(delivery: dict) -> list:
    return [delivery.get("code"), delivery.get("pin")]


# Where the hub makes a secret, and how to pick it from the call: (args, kwargs, result) -> values.
# A name may be a class's method ("Keyring.wrap": args start with self).
ISSUERS = {
    ("hub.identity.clients", "create_client"): lambda a, k, r: [r[1]],
    ("hub.identity.oidc.clients", "register"): lambda a, k, r: [r[1]],
    ("hub.identity.oidc.grants", "issue_code"): lambda a, k, r: [r],
    # (session, grant_id, token, ttl) and (session, token, successor, ttl), called positionally
    ("hub.identity.oidc.grants", "store_refresh_token"): lambda a, k, r: [a[2]],
    ("hub.identity.oidc.grants", "rotate_refresh_token"): lambda a, k, r: [a[2]],
    ("hub.identity.accounts", "sign_up"): lambda a, k, r: [r.verify_token],
    ("hub.identity.accounts", "request_reset"): lambda a, k, r: [r],
    ("hub.identity.accounts", "begin_totp"): lambda a, k, r: parse_qs(urlsplit(r).query)["secret"],
    ("hub.identity.accounts", "_new_recovery_codes"): lambda a, k, r: r,
    ("hub.identity.linking", "start"): lambda a, k, r: [r.code],
    # Every redemption's delivery is sealed: an in-house voucher's code, a gift card's code and pin.
    ("hub.rewards.redemptions", "seal"): lambda a, k, r: _delivery_secrets(a[0]),
    # (self, dek_id, key): each data key as it is wrapped; the master and blind-index keys.
    ("hub.privacy.keyring", "Keyring.wrap"): lambda a, k, r: _key_forms(a[2]),
    ("hub.privacy.keyring", "parse_master_keys"): lambda a, k, r: [f for key in r.values() for f in _key_forms(key)],
    ("hub.privacy.keyring", "index_key"): lambda a, k, r: _key_forms(r),
}


def issuer(module_name: str, name: str) -> tuple[object, str]:
    """Where an ISSUERS function lives: (its module or class, its attribute name)."""
    owner = importlib.import_module(module_name)
    *path, attr = name.split(".")
    for part in path:
        owner = getattr(owner, part)
    return owner, attr


class LeakScan(logging.Handler):
    """Keeps every record's text (message, traceback) to scan at the end of the run."""

    def __init__(self):
        super().__init__(logging.DEBUG)
        self.lines: list[tuple[str, str]] = []  # (logger name, text)
        self.tokens: set[str] = set()
        self.keys: set[str] = set()  # standard base64
        self.codes: set[str] = set()  # short numeric codes
        self.phrases: set[str] = set()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = record.getMessage()
        except Exception:  # a record whose args do not fit its message: look at both
            text = f"{record.msg} {record.args}"
        if record.exc_text:
            text += "\n" + record.exc_text
        elif record.exc_info:
            text += "\n" + logging.Formatter().formatException(record.exc_info)
        self.lines.append((record.name, text))

    def remember(self, *values) -> None:
        for value in values:
            if not isinstance(value, str):
                continue
            if SHORT_CODE.fullmatch(value):
                self.codes.add(value)
            elif len(value) >= MIN_SECRET:
                kind = self.tokens if WORD.fullmatch(value) else self.keys if B64_WORD.fullmatch(value) else self.phrases
                kind.add(value)

    def watch_issuers(self) -> None:
        """Remember every secret the hub issues from now on (wraps the functions in ISSUERS)."""
        for where, pick in ISSUERS.items():
            owner, attr = issuer(*where)
            setattr(owner, attr, self._remembering(getattr(owner, attr), pick))

    def _remembering(self, func, pick):
        @functools.wraps(func)
        def wrapper(*args, **kwargs):
            result = func(*args, **kwargs)
            if result is not None:
                self.remember(*pick(args, kwargs, result))
            return result
        return wrapper

    def findings(self) -> list[str]:
        """One line per leak: the kind, the logger, and where in the record (the secret itself
        cut to its first characters, so the report does not spread it further)."""
        found = []
        for logger, text in self.lines:
            if logger.startswith(TEST_DRIVERS):
                continue
            leaks = [(what, m.start(), m.group(0)) for what, pattern in PATTERNS.items()
                     for m in [pattern.search(text)] if m]
            leaks += [("a secret issued or used by the tests", m.start(), m.group(0))
                      for m in WORD.finditer(text) if m.group(0) in self.tokens]
            leaks += [("a key issued or used by the tests", m.start(), m.group(0))
                      for m in B64_WORD.finditer(text) if m.group(0) in self.keys]
            leaks += [("a code issued during the tests", m.start(1), m.group(1))
                      for m in LABELLED_CODE.finditer(text) if m.group(1) in self.codes]
            leaks += [("a test password or key", text.index(p), p) for p in self.phrases if p in text]
            found += [f"{what} in a record of {logger!r}: ...{text[max(0, at - 60):at]}{value[:8]}..."
                      for what, at, value in leaks]
        return found
