"""Tango Card RaaS v2 connector defaults: the local sandbox (hub.sandbox). Override any key with
HUB_PROVIDER_TANGO_<KEY>; real hosts are https://integration-api.tangocard.com/raas/v2 (Tango's
sandbox) and https://api.tangocard.com/raas/v2."""

DEFAULTS = {
    "base_url": "http://127.0.0.1:8090/tango/raas/v2",
    # Basic auth: the platform name and platform key.
    "platform_name": "hub-sandbox",
    "platform_key": "sandbox-platform-key",
    # The customer and account that pay for orders (externalRefID is unique per account).
    "customer_identifier": "hubcustomer",
    "account_identifier": "hubaccount",
    # We hand the card to the member ourselves; Tango's own e-mail is opt-in.
    "send_email": "false",
    "timeout_connect": "3.05",
    "timeout_read": "15",
    # hmacSharedSecretKey of the POST /webhooks subscription (payloadVerificationMethod HMAC).
    "webhook_secret": "sandbox-tango-webhook-secret",
}
