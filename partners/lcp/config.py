"""LCP-shaped hosted points program: connector defaults, which point at the local sandbox
(hub.sandbox mounts partners.lcp.sandbox at /lcp). Override any key with HUB_PROVIDER_LCP_<KEY>;
a real partner's base_url is whatever it publishes for its LCP partner-program API."""

DEFAULTS = {
    "base_url": "http://127.0.0.1:8090/lcp",
    # Basic auth, as LCP's lp-reference recommends for partner-program calls.
    "username": "hub-sandbox",
    "password": "sandbox-lcp-password",
    # Product Identification Code sent with every posting (LCP: "can be any string").
    "pic": "HUBEXCHANGE",
    "timeout_connect": "3.05",
    "timeout_read": "10",
    "pool_size": "16",
}
