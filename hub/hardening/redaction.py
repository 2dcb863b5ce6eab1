"""Secrets never reach a log: every log record's message, arguments and traceback are
redacted when the record is made.

WHY A RECORD FACTORY: a filter on the root logger sees only records logged on the root logger
itself, not those propagated from named loggers, and uvicorn's and gunicorn's access loggers do
not propagate at all. Wrapping the record factory redacts every record of every logger before
any handler (ours, the server's, Celery's, a test's capture) sees it. `install()` is idempotent;
the app factory, the Celery worker and the CLI call it.

What is redacted (REDACTED stands in): JWTs (eyJ...), Bearer and Basic credentials, whsec_
signing secrets, Authorization and Cookie headers, URLs' passwords (scheme://user:pw@host),
and the value of any field whose name says secret (password, secret, token, code, otp, pin,
cookie, any name ending in key or keys, the hub's cookies...) written as a query string or
form (name=value), a keyword repr (name='value'), a header (Name: value) or JSON / a Python
dict ("name": "value"). Over-redaction (a program's `code=P12`, an idempotency key) is the
accepted price.
"""
from __future__ import annotations

import logging
import re
import uuid

REDACTED = "[redacted]"

# Field names whose values are secret: *password*, *secret*, *token*, *api_key*, *signature*,
# names ending in key or keys (data_keys, index_key, HUB_DATA_KEYS, platform_key), a card's
# pin, the OAuth code and PKCE verifier, one-time codes, cookies and the hub's cookie names.
_NAMES = (r"[\w-]*(?:password|passwd|secret|token|api[_-]?key|signature)[\w-]*|[\w-]*keys?"
          r"|(?:[\w-]*[_-])?pins?"
          r"|code|code_verifier|otp|totp|recovery_codes?|hub_login|hub_csrf|hub_mfa|session")
_PATTERNS: tuple[tuple[re.Pattern, str], ...] = (
    # Whole header lines: everything after the name is the credential.
    (re.compile(r"(?i)\b((?:proxy-)?authorization|(?:set-)?cookie)(\s*[:=]\s*)(?![\s'\"])[^\r\n'\"]+"),
     rf"\1\2{REDACTED}"),
    # "name": "value" and 'name': 'value' (JSON, dict reprs, header lists).
    (re.compile(rf"(?i)(['\"](?:{_NAMES}|authorization|cookie)['\"]\s*[:,]\s*)(['\"])(?:\\.|(?!\2).)*\2"),
     rf"\1\2{REDACTED}\2"),
    # name='value' (keyword reprs: a dataclass's, Settings(secret_key='...')).
    (re.compile(rf"(?i)(?<![\w-])((?:{_NAMES})=)(['\"])(?:\\.|(?!\2).)*\2"), rf"\1\2{REDACTED}\2"),
    # A URL's password (postgresql://hub:pw@host, redis://:pw@host).
    (re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^\s:/?#@'\"]*:)[^\s/?#@'\"]+@"), rf"\1{REDACTED}@"),
    # name=value lists of keys (HUB_DATA_KEYS=id:key,id:key): to the end of the word.
    (re.compile(r"(?i)(?<![\w-])([\w-]*keys=)(?!['\"])[^&\s'\"]+"), rf"\1{REDACTED}"),
    # name=value (query strings, forms, key=value log lines).
    (re.compile(rf"(?i)(?<![\w-])((?:__Host-)?(?:{_NAMES})=)[^&\s'\",;)]+"), rf"\1{REDACTED}"),
    (re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/-]{16,}=*"), rf"\1 {REDACTED}"),
    (re.compile(r"\beyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}(?:\.[A-Za-z0-9_-]*)?"), REDACTED),
    (re.compile(r"\bwhsec_[A-Za-z0-9_+/=-]+"), REDACTED),
)


# Every pattern above needs one of these: a ':', '=' or quote, a scheme's credential word,
# or a JWT's or signing secret's prefix. Most log arguments (states, ids, amounts) have none,
# and one search costs far less than the nine substitutions (a test holds the two equal).
_MAYBE_SECRET = re.compile(r"""[:='"]|eyJ|whsec_|(?i:bearer|basic)""")


# And every pattern needs one of these words, case aside: a secret's name, a header's, a
# scheme's "://", a credential's prefix. A Celery task's arguments (a relay batch's order ids,
# kilobytes of quotes and colons) pass the check above but name none: the nine substitutions
# cost milliseconds there, this check tens of microseconds.
_WORDS = ("passw", "secret", "token", "key", "signature", "pin", "code", "otp", "session", "hub_",
          "authorization", "cookie", "bearer", "basic", "eyj", "whsec_", "://")


def _fold(text: str) -> str:
    """`text` with each letter that the patterns' (?i) matching takes for an ASCII letter
    made that letter: casefold does it, but for the Turkish dotted capital I (which it makes
    "i" and a combining dot) and dotless i (a test checks every code point)."""
    return text.casefold().replace("\u0307", "").replace("\u0131", "i")


def redact(text: str) -> str:
    if not _MAYBE_SECRET.search(text):
        return text
    folded = _fold(text)
    if not any(word in folded for word in _WORDS):
        return text
    return _substitute(text)


def _substitute(text: str) -> str:
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


# Message templates (messages with arguments) that hold nothing to redact: templates repeat,
# so each is checked once. Only clean ones are kept, so nothing redaction would hide stays in
# memory; cleared when full (a set's add and clear need no lock).
_CLEAN_TEMPLATES: set[str] = set()
_CLEAN_TEMPLATES_MAX = 1024


def _names_a_secret(record: logging.LogRecord) -> bool:
    """Whether the message itself holds something to redact."""
    if record.args and record.msg in _CLEAN_TEMPLATES:
        return False
    if redact(record.msg) != record.msg:
        return True
    if record.args:
        if len(_CLEAN_TEMPLATES) >= _CLEAN_TEMPLATES_MAX:
            _CLEAN_TEMPLATES.clear()
        _CLEAN_TEMPLATES.add(record.msg)
    return False


def _redact_arg(value):
    if isinstance(value, (int, float, bool, uuid.UUID)) or value is None:
        # Nothing secret fits in a number (and %d formats need one); a UUID's text is hex
        # and dashes, which no pattern matches.
        return value
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if isinstance(value, str):
        return redact(value)
    try:
        text = str(value)  # a dict, a request, a tuple of headers: as %s would show it
    except Exception:  # noqa: BLE001  (a broken __str__: logging reports it when formatting)
        return value
    cleaned = redact(text)
    return value if cleaned == text else cleaned


class RedactingFilter(logging.Filter):
    """Redacts a record in place (never drops it)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, dict):
            record.args = {k: _redact_arg(v) for k, v in record.args.items()}
        elif record.args:
            record.args = tuple(_redact_arg(a) for a in record.args)
        if isinstance(record.msg, str) and _names_a_secret(record):
            # The template itself names a secret ("?code=%s"): the value is in the arguments,
            # so redact the whole message once rendered (formatters that read the arguments,
            # like uvicorn's access log, have templates that name none).
            try:
                record.msg, record.args = redact(record.getMessage()), None
            except (TypeError, ValueError, KeyError):  # a record that never rendered anyway
                record.msg, record.args = redact(record.msg), None
        if record.exc_info and not record.exc_text:
            # Formatters print exc_text when it is set: the traceback, redacted (exception
            # messages may quote a request).
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


_FILTER = RedactingFilter()


def install() -> None:
    """Redact every log record this process makes from now on (idempotent)."""
    factory = logging.getLogRecordFactory()
    if getattr(factory, "redacting", False):
        return

    def redacting_factory(*args, **kwargs):
        record = factory(*args, **kwargs)
        _FILTER.filter(record)
        return record

    redacting_factory.redacting = True
    logging.setLogRecordFactory(redacting_factory)
