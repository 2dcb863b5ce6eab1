"""Standard Webhooks signing and verification (hub.notify.webhooks), the URL rules for
endpoints, and the retry schedule."""
from __future__ import annotations

import base64
import time
from datetime import timedelta

import pytest

from hub.notify import webhooks
from hub.notify.webhook_delivery import next_delay
from hub.notify.webhook_endpoints import UnsafeUrl, UrlPolicy, check_url

# The spec's test vector (standard-webhooks libraries' test_sign_function).
SPEC_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SPEC_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
SPEC_TIMESTAMP = 1614265330
SPEC_BODY = b'{"test": 2432232314}'
SPEC_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_signature_matches_the_spec_vector():
    assert webhooks.signature(SPEC_SECRET, SPEC_ID, SPEC_TIMESTAMP, SPEC_BODY) == SPEC_SIGNATURE


def test_sign_gives_the_three_headers_with_one_signature_per_secret():
    other = webhooks.new_secret()
    headers = webhooks.sign([SPEC_SECRET, other], SPEC_ID, SPEC_TIMESTAMP, SPEC_BODY)
    assert headers["webhook-id"] == SPEC_ID and headers["webhook-timestamp"] == str(SPEC_TIMESTAMP)
    assert headers["webhook-signature"].split(" ") == [
        SPEC_SIGNATURE, webhooks.signature(other, SPEC_ID, SPEC_TIMESTAMP, SPEC_BODY)]


def test_new_secrets_are_whsec_and_32_random_bytes():
    made = {webhooks.new_secret() for _ in range(20)}
    assert len(made) == 20
    for secret in made:
        assert secret.startswith("whsec_") and len(base64.b64decode(secret.removeprefix("whsec_"))) == 32


def signed(secret=SPEC_SECRET, at=None, body=SPEC_BODY):
    return webhooks.sign([secret], SPEC_ID, int(time.time()) if at is None else at, body)


def test_verify_returns_the_body_and_ignores_header_case():
    headers = {name.title(): value for name, value in signed().items()}
    assert webhooks.verify(SPEC_SECRET, headers, SPEC_BODY) == {"test": 2432232314}


def test_verify_accepts_the_spec_vector_at_its_time():
    headers = {"webhook-id": SPEC_ID, "webhook-timestamp": str(SPEC_TIMESTAMP), "webhook-signature": SPEC_SIGNATURE}
    assert webhooks.verify(SPEC_SECRET, headers, SPEC_BODY, now=SPEC_TIMESTAMP + 10) == {"test": 2432232314}


@pytest.mark.parametrize("offset, ok", [
    (0, True), (-webhooks.TOLERANCE, True), (webhooks.TOLERANCE, True),
    (-webhooks.TOLERANCE - 1, False), (webhooks.TOLERANCE + 1, False), (-86400, False),
])
def test_verify_enforces_the_timestamp_tolerance(offset, ok):
    now = 1_800_000_000
    headers = signed(at=now + offset)
    if ok:
        webhooks.verify(SPEC_SECRET, headers, SPEC_BODY, now=now)
    else:
        with pytest.raises(webhooks.WebhookVerificationError, match="tolerance"):
            webhooks.verify(SPEC_SECRET, headers, SPEC_BODY, now=now)


def test_verify_accepts_any_one_of_several_signatures():
    headers = signed()
    headers["webhook-signature"] = " ".join(
        ["v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc=", "v2,whatever", headers["webhook-signature"]])
    assert webhooks.verify(SPEC_SECRET, headers, SPEC_BODY)["test"] == 2432232314


@pytest.mark.parametrize("change", [
    lambda h, b: (h, b + b" "),                                              # body altered
    lambda h, b: ({**h, "webhook-id": "msg_other"}, b),                        # id altered
    lambda h, b: ({**h, "webhook-signature": "v1,AAAA"}, b),                   # wrong signature
    lambda h, b: ({k: v for k, v in h.items() if k != "webhook-signature"}, b),
    lambda h, b: ({k: v for k, v in h.items() if k != "webhook-id"}, b),
    lambda h, b: ({**h, "webhook-timestamp": "soon"}, b),
])
def test_verify_refuses_tampering_and_missing_headers(change):
    headers, body = change(signed(), SPEC_BODY)
    with pytest.raises(webhooks.WebhookVerificationError):
        webhooks.verify(SPEC_SECRET, headers, body)


def test_verify_refuses_another_secret():
    with pytest.raises(webhooks.WebhookVerificationError, match="no signature"):
        webhooks.verify(webhooks.new_secret(), signed(), SPEC_BODY)


def test_the_body_is_stable_json():
    body = webhooks.body_of("tier.changed", "2026-11-24T09:00:00+00:00", {"b": 1, "a": "x"})
    assert body == b'{"data":{"a":"x","b":1},"timestamp":"2026-11-24T09:00:00+00:00","type":"tier.changed"}'


STRICT = UrlPolicy(allow_http=False, allow_private=False)


def resolver(table):
    def resolve(host, port):
        if host not in table:
            raise OSError("Name or service not known")
        return table[host]
    return resolve


DNS = resolver({
    "hooks.partner.com": ["93.184.215.14", "2606:2800:21f:cb07:6820:80da:af6b:8b2c"],
    "rebound.partner.com": ["93.184.215.14", "10.0.0.7"],   # one public, one private: refused
    "metadata.partner.com": ["169.254.169.254"],
    "cgnat.partner.com": ["100.64.0.1"],
    "127.0.0.1": ["127.0.0.1"],
})


@pytest.mark.parametrize("url, policy, refused", [
    ("https://hooks.partner.com/wh", STRICT, None),
    ("https://hooks.partner.com:8443/wh?x=1", STRICT, None),
    ("http://hooks.partner.com/wh", STRICT, "https"),
    ("http://hooks.partner.com/wh", UrlPolicy(allow_http=True, allow_private=False), None),
    ("https://rebound.partner.com/wh", STRICT, "10.0.0.7"),
    ("https://metadata.partner.com/", STRICT, "169.254.169.254"),
    ("https://cgnat.partner.com/", STRICT, "100.64.0.1"),
    ("https://nowhere.partner.com/", STRICT, "does not resolve"),
    ("https://127.0.0.1/wh", STRICT, "127.0.0.1"),
    ("https://127.0.0.1/wh", UrlPolicy(allow_http=False, allow_private=True), None),
    ("http://127.0.0.1/wh", UrlPolicy(allow_http=False, allow_private=True), "https"),
    ("https://u:p@hooks.partner.com/", STRICT, "credentials"),
    ("hooks.partner.com/wh", STRICT, "absolute"),
    ("https://hooks.partner.com:99999/", STRICT, "not a URL"),
])
def test_check_url(url, policy, refused):
    if refused is None:
        check_url(url, policy, DNS)
    else:
        with pytest.raises(UnsafeUrl, match=refused):
            check_url(url, policy, DNS)


def test_retries_span_about_a_day():
    total = sum(webhooks.RETRY_SCHEDULE, timedelta())
    assert timedelta(hours=24) <= total <= timedelta(hours=30)
    assert webhooks.MAX_ATTEMPTS == len(webhooks.RETRY_SCHEDULE) + 1


@pytest.mark.parametrize("attempts", range(1, webhooks.MAX_ATTEMPTS + 2))
def test_next_delay_is_the_schedule_with_ten_percent_jitter(attempts):
    step = webhooks.RETRY_SCHEDULE[min(attempts, len(webhooks.RETRY_SCHEDULE)) - 1]
    for _ in range(20):
        assert step * 0.9 <= next_delay(attempts) <= step * 1.1
