"""GlobalGiving API connector defaults: the local sandbox (hub.sandbox). Override any key with
HUB_PROVIDER_GLOBALGIVING_<KEY>; the real host is https://api.globalgiving.org/api."""

DEFAULTS = {
    "base_url": "http://127.0.0.1:8090/globalgiving/api",
    "api_key": "sandbox-api-key",       # query parameter on every call
    "api_token": "sandbox-api-token",   # access token from /userservice/tokens, for /secure/ calls
    # GlobalGiving's own test mode: validated but not processed. Off by default so that a
    # production base_url never silently makes test donations; the sandbox ignores it.
    "is_test": "false",
    "timeout_connect": "3.05",
    "timeout_read": "15",
    "webhook_secret": "",               # GlobalGiving sends no webhooks
}
