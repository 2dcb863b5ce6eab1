"""What every reward-provider connector shares: config, money and the HTTP-outcome mapping.

The relay's safety rests on one distinction (see hub.rewards.providers.Status): a request that
surely never reached the provider (RETRY) versus one that may have been acted on (UNKNOWN).
This module is the only place that draws that line, so the three connectors cannot drift apart.
"""
from __future__ import annotations

import email.utils
import os
import re
import time
from decimal import Decimal
from typing import Any, Callable, Mapping

import requests
from requests.adapters import HTTPAdapter
from urllib3.exceptions import NewConnectionError

from hub import money
from hub.observability import context
from hub.rewards.providers import CatalogUnavailable, Outcome, Status

# Errors that can only happen before a single byte of the request left this process.
_NEVER_CONNECTED = (NewConnectionError, ConnectionRefusedError)


def settings(defaults: Mapping[str, str], config: Mapping[str, str]) -> dict[str, str]:
    """The connector's defaults (the local sandbox) overlaid with the hub's HUB_PROVIDER_* values.
    Values are strings because they come from the environment."""
    merged = {**defaults, **{k: v for k, v in config.items() if v is not None}}
    missing = [key for key in ("base_url", "timeout_connect", "timeout_read") if not merged.get(key)]
    if missing:
        raise ValueError(f"connector config lacks {', '.join(missing)}")
    return merged


def flag(value: str | bool | None) -> bool:
    return str(value).strip().lower() in ("1", "true", "yes", "on")


def major(amount_minor: int, currency: str) -> float:
    """Minor units to the JSON number providers expect (25.5 for 2550 USD). A float's shortest
    repr round-trips any amount with at most 15 significant digits, so nothing is lost."""
    return float(money.to_major(amount_minor, currency))


def minor(amount: Any, currency: str) -> int:
    """A provider's number (a catalog value, say) back to minor units."""
    return int(Decimal(str(amount)).scaleb(money.exponent(currency)).to_integral_value())


class Client:
    """HTTP to one provider: every call carries the (connect, read) timeout, follows no
    redirect, and is never retried by urllib3 behind the relay's back.

    One Client serves a whole worker process, its threads included. Calls go straight to one
    requests HTTPAdapter: its urllib3 pool is thread-safe and keeps up to `pool_size`
    (config, default 64) idle keep-alive connections, shared by every thread, where a Session
    per thread kept a pool per thread (hundreds of connections with the relay's thread pool).
    No Session: its per-call merging of settings, cookie jar and hooks cost more CPU than
    the adapter's send, and none of it is used (no cookies, no redirects, no hooks). The
    request carries what a Session would send: its default headers, the connector's, and
    its auth. The proxy and CA-bundle environment variables are read once, here, rather than
    on every call (trust_env; that also skips ~/.netrc, which no connector relies on)."""

    def __init__(self, cfg: Mapping[str, str], *, auth=None, headers: Mapping[str, str] | None = None,
                 params: Mapping[str, str] | None = None):
        self.base_url = cfg["base_url"].rstrip("/")
        self.timeout = (float(cfg["timeout_connect"]), float(cfg["timeout_read"]))
        self.params = dict(params or {})  # sent on every call (GlobalGiving's api_key in the query)
        self._auth = auth
        self._headers = {**requests.utils.default_headers(), "Accept": "application/json", **(headers or {})}
        self._adapter = HTTPAdapter(max_retries=0, pool_maxsize=int(cfg.get("pool_size") or 64))
        self._proxies = requests.utils.get_environ_proxies(self.base_url)
        self._verify = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True

    def send(self, method: str, path: str, *, params: Mapping[str, str] | None = None,
             json: Any = None) -> requests.Response | Outcome:
        """The provider's response, or the Outcome of not getting one."""
        try:
            request_id = context.current()  # the API request behind this call, for the provider's logs
            headers = self._headers if request_id is None else {**self._headers, context.HEADER: request_id}
            request = requests.Request(
                method, self.base_url + path, headers=headers, params={**self.params, **(params or {})},
                json=json, auth=self._auth,
            ).prepare()
            return self._adapter.send(request, timeout=self.timeout, verify=self._verify, proxies=self._proxies)
        except requests.RequestException as exc:
            return transport_outcome(exc)


def transport_outcome(exc: requests.RequestException) -> Outcome:
    """No HTTP answer. Only a failure to connect proves the provider never saw the request;
    anything later (read timeout, reset, a half-read body) may follow a placed order."""
    if isinstance(exc, requests.ConnectTimeout) or (
        isinstance(exc, requests.ConnectionError) and _never_connected(exc)
    ):
        return Outcome(Status.RETRY, detail=f"not sent: {_short(exc)}")
    if isinstance(exc, requests.ReadTimeout):
        return Outcome(Status.UNKNOWN, detail=f"no answer in time: {_short(exc)}")
    return Outcome(Status.UNKNOWN, detail=f"sent, answer lost: {_short(exc)}")


def _never_connected(exc: BaseException) -> bool:
    # requests wraps urllib3 wraps socket errors: walk args, reason, cause and context.
    seen, stack = set(), [exc]
    while stack:
        err = stack.pop()
        if err is None or id(err) in seen:
            continue
        seen.add(id(err))
        if isinstance(err, _NEVER_CONNECTED):
            return True
        stack += [err.__cause__, err.__context__, getattr(err, "reason", None)]
        stack += [arg for arg in getattr(err, "args", ()) if isinstance(arg, BaseException)]
    return False


def error_outcome(resp: requests.Response, describe: Callable[[Any], str] | None = None) -> Outcome:
    """A non-success HTTP answer to a request that may place an order. 429 asks us to come
    back; 5xx may hide a placed order (Tango says a 500 can still fulfil); 408/409/425 mean the
    provider may still be working on it, and a redirect (we follow none) is no answer at all;
    any other 4xx is a refusal, so nothing was placed."""
    code = resp.status_code
    text = f"HTTP {code}: {describe_body(resp, describe)}"
    if code == 429:
        return Outcome(Status.RETRY, detail=text, retry_after=retry_after(resp))
    if code in (408, 409, 425) or code >= 500 or code < 400:
        return Outcome(Status.UNKNOWN, detail=text)
    return Outcome(Status.FAILED, detail=text)


def lookup_error(resp: requests.Response, describe: Callable[[Any], str] | None = None) -> Outcome:
    """A lookup that was not answered. A refused question (401, 404 of an unknown route...)
    says nothing about the order, so it can never be FAILED: only 429 stays RETRY."""
    outcome = error_outcome(resp, describe)
    if outcome.status is Status.FAILED:
        return Outcome(Status.UNKNOWN, detail=f"lookup refused: {outcome.detail}")
    return outcome


def body(resp: requests.Response) -> Any | None:
    try:
        return resp.json()
    except ValueError:
        return None


def unreadable(resp: requests.Response) -> Outcome:
    """A success status with a body we cannot read: it may well be a placed order."""
    return Outcome(Status.UNKNOWN, detail=f"HTTP {resp.status_code} with an unreadable body")


def describe_body(resp: requests.Response, describe: Callable[[Any], str] | None) -> str:
    data = body(resp)
    text = describe(data) if describe and data is not None else ""
    return (text or resp.text or resp.reason or "")[:300]


def retry_after(resp: requests.Response, now: float | None = None) -> float | None:
    """Retry-After in seconds, given as delta-seconds or as an HTTP date."""
    value = resp.headers.get("Retry-After", "").strip()
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError):
        return None
    return max(0.0, when - (time.time() if now is None else now))


# urllib3 puts the URL in its messages, and GlobalGiving's credentials ride in the query.
_SECRET_PARAM = re.compile(r"([?&][^=&\s]*(?:key|token|secret)[^=&\s]*=)[^&\s'\")]*", re.IGNORECASE)


def _short(exc: BaseException) -> str:
    return _SECRET_PARAM.sub(r"\1***", f"{type(exc).__name__}: {exc}")[:300]


def fetch(client: Client, path: str, params: Mapping[str, str] | None = None) -> dict[str, Any]:
    """GET for catalog(): the JSON body, or CatalogUnavailable (never an empty list by mistake)."""
    resp = client.send("GET", path, params=params)
    if isinstance(resp, Outcome):
        raise CatalogUnavailable(resp.detail)
    data = body(resp)
    if resp.status_code != 200 or not isinstance(data, dict):
        raise CatalogUnavailable(f"HTTP {resp.status_code}: {resp.text[:200]}")
    return data
