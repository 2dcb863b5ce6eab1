"""Tremendous API v2 connector defaults: the local sandbox (hub.sandbox). Override any key with
HUB_PROVIDER_TREMENDOUS_<KEY>; real hosts are https://testflight.tremendous.com/api/v2 (sandbox)
and https://api.tremendous.com/api/v2."""

DEFAULTS = {
    "base_url": "http://127.0.0.1:8090/tremendous/api/v2",
    "api_key": "TEST_sandbox-api-key",        # sent as Authorization: Bearer
    "funding_source_id": "balance",           # pay from the organisation's balance
    "timeout_connect": "3.05",
    "timeout_read": "15",
    # The webhook's private key (returned by POST /webhooks): signs every event body.
    "webhook_secret": "sandbox-tremendous-webhook-secret",
}
