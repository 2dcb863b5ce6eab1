"""The issue's test: a log capture of a full test run contains no secret or token (issue 7,
item 6). tests/conftest.py puts a LeakScan on the root logger at DEBUG for the whole session,
watches where the hub issues secrets (so that each one issued during the run is looked for by
its exact value), and fails the run at its end if any captured line holds one.

What counts as a leak in a captured line (after the hub's redaction, hub/hardening/redaction.py):
a JWT, a Bearer credential, a whsec_ signing secret, a secret-named query or form field with a
value, or the exact value of a remembered secret (the test HUB_SECRET_KEY, the tests' passwords,
and every client secret, authorization code, refresh token, verification and reset token the
hub issued during the run).
"""
from __future__ import annotations

import functools
import importlib
import logging
import re

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

# Where the hub makes a secret, and how to pick it from the call: (args, kwargs, result) -> values.
ISSUERS = {
    ("hub.identity.clients", "create_client"): lambda a, k, r: [r[1]],
    ("hub.identity.oidc.clients", "register"): lambda a, k, r: [r[1]],
    ("hub.identity.oidc.grants", "issue_code"): lambda a, k, r: [r],
    # (session, grant_id, token, ttl) and (session, token, successor, ttl), called positionally
    ("hub.identity.oidc.grants", "store_refresh_token"): lambda a, k, r: [a[2]],
    ("hub.identity.oidc.grants", "rotate_refresh_token"): lambda a, k, r: [a[2]],
    ("hub.identity.accounts", "sign_up"): lambda a, k, r: [r.verify_token],
    ("hub.identity.accounts", "request_reset"): lambda a, k, r: [r],
}


class LeakScan(logging.Handler):
    """Keeps every record's text (message, traceback) to scan at the end of the run."""

    def __init__(self):
        super().__init__(logging.DEBUG)
        self.lines: list[tuple[str, str]] = []  # (logger name, text)
        self.tokens: set[str] = set()
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
            if isinstance(value, str) and len(value) >= MIN_SECRET:
                (self.tokens if WORD.fullmatch(value) else self.phrases).add(value)

    def watch_issuers(self) -> None:
        """Remember every secret the hub issues from now on (wraps the functions in ISSUERS)."""
        for (module_name, name), pick in ISSUERS.items():
            module = importlib.import_module(module_name)
            setattr(module, name, self._remembering(getattr(module, name), pick))

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
            leaks += [("a test password or key", text.index(p), p) for p in self.phrases if p in text]
            found += [f"{what} in a record of {logger!r}: ...{text[max(0, at - 60):at]}{value[:8]}..."
                      for what, at, value in leaks]
        return found
