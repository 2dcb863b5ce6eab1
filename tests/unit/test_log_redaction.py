"""Secrets never reach a log (hub/hardening/redaction.py), and the run's log capture
(tests/log_capture.py) flags any that would."""
from __future__ import annotations

import base64
import logging
import re
import uuid

import pytest
from hypothesis import given, settings as hsettings, strategies as st
from uvicorn.logging import AccessFormatter

from hub.hardening import redaction
from hub.hardening.redaction import REDACTED, RedactingFilter, redact
from hub.settings import Settings
from hub.privacy import keyring
from tests.log_capture import ISSUERS, LeakScan, issuer

JWT = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJtZW1iZXIifQ.c2lnbmF0dXJlLXBhcnQ"
KEY_B64 = "q83vASNFZ4mrze8BI0VniavN7wEjRWeJq83vASNFZ4k="  # standard base64 of 32 bytes


@pytest.mark.parametrize("text,secret", [
    ("Authorization: Bearer abcdefghijklmnopqrstuvwxyz", "abcdefghijklmnop"),
    ("{'Authorization': 'Basic Y2xpX2FiYzpzM2NyM3RzM2NyM3Q=', 'Accept': '*/*'}", "Y2xpX2FiYzpz"),
    ("token_type=Bearer&access_token=" + JWT, "eyJhbGci"),
    ('{"refresh_token": "rt0123456789abcdef", "expires_in": 3600}', "rt0123456789abcdef"),
    ('{"password": "correct horse battery", "email": "a@example.com"}', "correct horse"),
    ("grant_type=client_credentials&client_secret=s3cr3tvalue&scope=x", "s3cr3tvalue"),
    ('"GET /account/verify?token=AbC123_-xyz&next=/account/ HTTP/1.1" 200', "AbC123_-xyz"),
    ("GET /cb?code=Zx9_abcdef&state=s1 HTTP/1.1", "Zx9_abcdef"),
    ("GET /account/reset/new?token=tok3n_value HTTP/1.1", "tok3n_value"),
    ("Cookie: __Host-hub_login=l0gin; __Host-hub_csrf=csrfv", "l0gin"),
    ("Set-Cookie: hub_mfa=signed.cookie.value; Path=/", "signed.cookie"),
    ("[(b'cookie', b'hub_login=l0gincookie')]", "l0gincookie"),
    ("otpauth://totp/Hub:a@example.com?secret=JBSWY3DPEHPK3PXP&issuer=Hub", "JBSWY3DPEHPK3PXP"),
    ("endpoint secret whsec_AbCdEf0123456789 rotated", "whsec_AbC"),
    ("{'code': '123456', 'recovery_codes': ['abcd-efgh']}", "123456"),
    ("id_token_hint=" + JWT, "c2lnbmF0"),
    # Keys (names ending in key or keys), a list of them to the end of the word, URL passwords, pins.
    ("HUB_DATA_KEYS=k1:AAAAbbbb+ccc/dd=,k2:EEEEffff+ggg/hh= restarting", "EEEEffff"),
    ("HUB_INDEX_KEY=Zm9vYmFyYmF6+/= set", "Zm9vYmFyYmF6"),
    ("data_keys=k1:AAAAbbbbcccc index_key=Zm9vYmFyYmF6", "Zm9vYmFyYmF6"),
    ("api_key=ak_live_123456 secret_key=sk_654321", "sk_654321"),
    ('{"platform_key": "pk_987654", "customer": "c1"}', "pk_987654"),
    ("Settings(secret_key='s3cr3t-k3y', data_keys='k1:AAAA')", "s3cr3t-k3y"),
    ("Order(card_pin=\"4321\", amount=10)", "4321"),
    ("could not connect to postgresql+psycopg://hub:pgPassw0rd@db:5432/hub", "pgPassw0rd"),
    ("broker redis://:r3d1sPw@127.0.0.1:6379/0 down", "r3d1sPw"),
    ("{'code': 'ABCD-1234-EF56-7890', 'pin': '9876', 'url': 'https://x'}", "9876"),
    ("pin=2468 accepted", "2468"),
    # Lines that only one of the quick check's signs lets through (redaction.redact).
    ("sent Bearer abcdefghijklmnopqrstuvwxyz upstream", "abcdefghijklmnop"),
    ("id " + JWT + " seen", "c2lnbmF0"),
    ("[('token', 'tok3nvalue')]", "tok3nvalue"),
    ("Authorization: Token 0123456789abcdef", "0123456789abcdef"),
])
def test_secrets_are_redacted_whatever_their_form(text, secret):
    cleaned = redact(text)
    assert secret not in cleaned and REDACTED in cleaned


def test_what_is_not_secret_stays_readable():
    line = 'POST /v1/members HTTP/1.1 201 client_id=cli_abc program=G1 Bearer error="invalid_token"'
    assert redact(line) == line


# Pieces of what the patterns look for, and of what they must leave alone, to make lines of.
_PIECES = ["token", "pin", "code", "key", "keys", "secret", "password", "Authorization", "Cookie",
           "Bearer", "basic", "eyJ", "eyJhbGci", ".c2lnbmF0", "whsec_", "AbCdEf0123456789", "://", "user", "@", "=", ":", "'", '"', " ", "&", ",",
           "abc", "Zx9", "0123456789abcdef", "-", "_", ".", "/", "?", "{", "}", "(", ")", "\n", "é"]


@hsettings(deadline=None)  # a busy machine must not fail it on time
@given(st.lists(st.sampled_from(_PIECES) | st.characters(), max_size=40).map("".join))
def test_the_quick_check_never_skips_a_line_the_patterns_would_change(line):
    assert redact(line) == redaction._substitute(line)


def test_the_word_check_folds_every_letter_as_the_patterns_do():
    """A code point that the patterns' case-insensitive matching takes for a letter of one of
    the words is that letter once folded: the word check cannot miss what a pattern matches."""
    letters = sorted({ch for word in redaction._WORDS for ch in word if ch.isalpha()})
    any_letter = re.compile("(?i)[" + "".join(letters) + "]")
    for code_point in range(0x110000):
        char = chr(code_point)
        if any_letter.fullmatch(char):
            for letter in letters:
                if re.fullmatch("(?i)" + letter, char):
                    assert redaction._fold(char) == letter, hex(code_point)


def test_a_long_argument_list_naming_no_secret_skips_the_patterns(monkeypatch):
    """A relay batch's arguments as Celery logs them: quotes and colons, but no secret's name."""
    scanned = []
    substitute = redaction._substitute
    monkeypatch.setattr(redaction, "_substitute", lambda text: scanned.append(text) or substitute(text))
    batch = repr(([str(uuid.uuid4()) for _ in range(40)], {str(uuid.uuid4()): uuid.uuid4().hex for _ in range(40)}))
    assert redact(batch) == batch and scanned == []
    assert redact(batch + " {'Token': 'abc'}") == batch + f" {{'Token': '{REDACTED}'}}" and len(scanned) == 1


def test_a_uuid_argument_is_kept_as_it_is():
    record = logging.LogRecord("t", logging.INFO, __file__, 1, "order %s", (uuid.UUID(int=7),), None)
    RedactingFilter().filter(record)
    assert record.args == (uuid.UUID(int=7),)


def test_only_clean_templates_are_remembered_never_a_message_or_template_with_a_secret():
    redaction._CLEAN_TEMPLATES.clear()
    for secret in ("tok1", "tok2"):
        record = logging.LogRecord("t", logging.INFO, __file__, 1, f"GET /v?token={secret}", None, None)
        RedactingFilter().filter(record)
        assert secret not in record.getMessage()
    record = logging.LogRecord("t", logging.INFO, __file__, 1, "GET /v?token=tok3 for %s", ("a",), None)
    RedactingFilter().filter(record)
    assert "tok3" not in record.getMessage()
    assert redaction._CLEAN_TEMPLATES == set()
    for _ in range(2):
        record = logging.LogRecord("t", logging.INFO, __file__, 1, "order %s: %s", ("o1", "token=tok4"), None)
        RedactingFilter().filter(record)
        assert record.getMessage() == f"order o1: token={REDACTED}"
    assert redaction._CLEAN_TEMPLATES == {"order %s: %s"}


def test_urls_without_a_password_and_words_merely_containing_pin_stay_readable():
    line = "GET https://example.com/a@b mailto:a@example.com http://user@host/ spin=3 shipping=1"
    assert redact(line) == line


def test_a_settings_repr_hides_its_keys_and_passwords():
    settings = Settings(
        database_url="postgresql+psycopg://hub:pgPassw0rd@db/hub", broker_url="redis://:r3d1sPw@r:6379/0",
        secret_key="the-secret-key-value", issuer="https://hub.example", access_token_ttl=3600, db_pool_size=1,
        workers=1, host="h", port=1, providers={"tango": {"platform_key": "pk_987654", "customer": "c1"}},
        data_keys="k1:AAAAbbbbccccdddd", index_key="Zm9vYmFyYmF6")
    shown = repr(settings)
    for secret in ("pgPassw0rd", "r3d1sPw", "the-secret-key-value", "pk_987654", "AAAAbbbb", "Zm9vYmFy"):
        assert secret not in shown
    assert "access_token_ttl=3600" in shown and "'customer': 'c1'" in shown and "hub:[redacted]@db/hub" in shown


def test_the_filter_redacts_message_args_and_traceback_and_keeps_numbers():
    try:
        raise ValueError(f"refused Authorization: Bearer {JWT}")
    except ValueError as exc:
        record = logging.LogRecord("hub", logging.ERROR, __file__, 1, "token %s for %s: %d", (JWT, {"password": "pw12345678"}, 3),
                                   (type(exc), exc, exc.__traceback__))
    assert RedactingFilter().filter(record) is True
    text = record.getMessage() + record.exc_text
    assert "eyJ" not in text and "pw12345678" not in text and text.startswith("token [redacted] for") and ": 3" in text


def test_uvicorns_access_line_keeps_its_shape_and_loses_the_query_secret():
    # uvicorn's formatter unpacks the record's five args: redaction must keep them five.
    record = logging.LogRecord("uvicorn.access", logging.INFO, __file__, 1, '%s - "%s %s HTTP/%s" %d',
                               ("127.0.0.1:5000", "GET", "/account/verify?token=s3cr3t_t0ken", "1.1", 200), None)
    RedactingFilter().filter(record)
    line = AccessFormatter('%(client_addr)s - "%(request_line)s" %(status_code)s').format(record)
    assert "s3cr3t_t0ken" not in line and "/account/verify?token=[redacted]" in line and "200" in line


def test_gunicorns_access_line_with_dict_args_loses_the_query_secret():
    atoms = {"h": "10.0.0.1", "r": "GET /account/reset/new?token=s3cr3t_t0ken HTTP/1.1", "s": "200"}
    record = logging.LogRecord("gunicorn.access", logging.INFO, __file__, 1, '%(h)s "%(r)s" %(s)s', (atoms,), None)
    RedactingFilter().filter(record)
    assert record.getMessage() == '10.0.0.1 "GET /account/reset/new?token=[redacted] HTTP/1.1" 200'


def test_install_redacts_records_of_every_logger_and_handler(caplog):
    redaction.install()
    redaction.install()  # idempotent
    with caplog.at_level(logging.DEBUG, logger="werkzeug"):
        logging.getLogger("werkzeug").info('"GET /cb?code=%s&state=x HTTP/1.1" 302', "c0de_value_123")
    assert "c0de_value_123" not in caplog.text and "code=[redacted]" in caplog.text


@pytest.mark.parametrize("leak", [
    f"issued {JWT}",
    "Authorization: Bearer abcdefghijklmnopqrstuvwxyz0123",
    "secret whsec_AbCdEf0123456789",
    "GET /cb?code=Zx9abcdefgh&state=1",
    "the client's secret is Xy7_remembered-secret-value",
    "password was correct horse battery",
    f"data key {KEY_B64}",
    "link code: 482913 sent",
])
def test_the_capture_flags_a_leaked_secret(leak):
    scan = LeakScan()
    scan.remember("Xy7_remembered-secret-value", "correct horse battery", KEY_B64, "482913")
    scan.handle(logging.makeLogRecord({"name": "leaky", "msg": "%s", "args": (leak,), "levelno": logging.INFO}))
    scan.handle(logging.makeLogRecord({"name": "fine", "msg": "GET /account/verify?token=[redacted] 200"}))
    (finding,) = scan.findings()
    assert "'leaky'" in finding and "Xy7_remembered-secret-value" not in finding


def test_the_capture_remembers_what_an_issuer_returns():
    scan = LeakScan()
    create_client = scan._remembering(lambda name: (name, "issued-s3cret-abcdef"), lambda a, k, r: [r[1]])
    assert create_client("pos") == ("pos", "issued-s3cret-abcdef")
    scan.handle(logging.makeLogRecord({"name": "leaky", "msg": "made issued-s3cret-abcdef"}))
    assert len(scan.findings()) == 1


def test_a_short_code_counts_only_where_a_line_labels_it():
    """A 6-digit link code would match any number by chance: only "code ... 482913" is a leak."""
    scan = LeakScan()
    scan.remember("482913")
    scan.handle(logging.makeLogRecord({"name": "fine", "msg": "took 482913 us for order 1482913"}))
    assert scan.findings() == []


def test_the_capture_watches_every_issuer_including_methods(monkeypatch):
    """Each ISSUERS entry names a real function or method, and a method's pick sees self first."""
    for where in ISSUERS:  # the run's own watchers are put back after the test
        owner, attr = issuer(*where)
        monkeypatch.setattr(owner, attr, getattr(owner, attr))
    scan = LeakScan()
    scan.watch_issuers()
    ring = keyring.Keyring(None, {"k1": bytes(32)}, bytes(32))
    ring.wrap("dek1", bytes(range(32)))
    assert bytes(range(32)).hex() in scan.tokens
    assert base64.b64encode(bytes(range(32))).decode() in scan.keys
