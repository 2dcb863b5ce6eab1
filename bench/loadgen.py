"""A light HTTP/1.1 load generator for bench/earn.py, run in its own process.

asyncio (uvloop when installed) with raw sockets and keep-alive connections: each client
renders its next request from a byte template (a format of a few fields), writes it, and
reads the response with minimal parsing (status line, Content-Length or chunked body). It
keeps as little CPU as it can away from the server under test.

Reads a JSON config on stdin, prints one JSON result on stdout:
  {"mode": "single"|"batch"|"convert", "host", "port", "token", "program", "members": [[kind, value], ...],
   "extras": [",\"channel\":\"online\"", ...] (optional: purchase fields, one picked per purchase),
   "clients", "seconds", "warmup", "stagger", "batch_size", "occurred_at", "seed",
   "programs": [code, code] (convert)}
In "convert" mode one unit of work is a member's conversion as a client makes it: a quote
(POST /v1/conversions/quotes) and its execution (POST /v1/conversions), in either direction
between the two programs at random. In "execute" mode it is the execution alone, of quotes
signed ahead ("quotes": a list per client).
Result: {"ok", "errors", "statuses", "latencies_ms" percentiles, "purchases", ...}.
Only requests that finish after the warm-up and before the end are counted.
"""
from __future__ import annotations

import asyncio
import json
import os
import random
import re
import sys
import time

_CREATED = re.compile(rb'"created":\s*(\d+)')
_QUOTE = re.compile(rb'"quote":\s*"([A-Za-z0-9_.-]+)"')


def _head(path: str, host: str, port: int, token: str) -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nAuthorization: Bearer {token}\r\n"
        "Content-Type: application/json\r\nAccept: application/json\r\nContent-Length: "
    ).encode()


class Body:
    """Purchase bodies with unique transaction ids, rendered by %-formatting one template."""

    def __init__(self, cfg: dict, client: int):
        self.rng = random.Random(cfg.get("seed", 1) * 1000 + client)
        # Pre-render every member's `"member":{...}` fragment once.
        self.members = [
            f'"member":{{"{kind}":"{value}"}}'.encode() for kind, value in cfg["members"]
        ]
        self.template = (
            b'{"program":"' + cfg["program"].encode() + b'",%s,"transaction_id":"%s",'
            b'"amount":"%d","currency":"IDR","occurred_at":"' + cfg["occurred_at"].encode() + b'"%s}'
        )
        # Optional fragments (`,"channel":..`) of which each purchase takes one at random.
        self.extras = [e.encode() for e in cfg.get("extras", [""])]
        self.prefix = f"{cfg.get('run', 'b')}-{os.getpid()}-{client}-".encode()
        self.n = 0

    def one(self) -> bytes:
        self.n += 1
        return self.template % (
            self.rng.choice(self.members),
            self.prefix + str(self.n).encode(),
            self.rng.randrange(1000, 1_000_000),
            self.rng.choice(self.extras),
        )


class Conversions:
    """Quote bodies: a random member, direction and amount (in steps of 100)."""

    def __init__(self, cfg: dict, client: int):
        self.rng = random.Random(cfg.get("seed", 1) * 1000 + client)
        self.members = [value.encode() for kind, value in cfg["members"] if kind == "member_id"]
        a, b = (code.encode() for code in cfg["programs"])
        self.directions = [(a, b), (b, a)]

    def quote(self) -> bytes:
        source, target = self.rng.choice(self.directions)
        return b'{"from":"%s","to":"%s","points":%d,"member":{"member_id":"%s"}}' % (
            source, target, 100 * self.rng.randrange(1, 11), self.rng.choice(self.members))


async def _exchange(reader, writer, head: bytes, body: bytes, timeout: float) -> tuple[int, bytes]:
    writer.write(head + str(len(body)).encode() + b"\r\n\r\n" + body)
    return await asyncio.wait_for(_read_response(reader), timeout)


async def _convert(reader, writer, heads: tuple[bytes, bytes], bodies: Conversions, timeout: float):
    """A quote, then its execution: the execution's answer (or the quote's refusal)."""
    status, resp = await _exchange(reader, writer, heads[0], bodies.quote(), timeout)
    m = _QUOTE.search(resp) if status == 201 else None
    if m is None:
        return status, resp
    return await _exchange(reader, writer, heads[1], b'{"quote":"%s"}' % m.group(1), timeout)


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    lower = head.lower()
    i = lower.find(b"content-length:")
    if i >= 0:
        j = lower.index(b"\r\n", i)
        body = await reader.readexactly(int(lower[i + 15:j]))
    elif b"transfer-encoding: chunked" in lower:
        parts = []
        while True:
            size = int((await reader.readuntil(b"\r\n"))[:-2].split(b";")[0], 16)
            data = await reader.readexactly(size + 2)
            if size == 0:
                break
            parts.append(data[:-2])
        body = b"".join(parts)
    else:
        body = b""
    if b"connection: close" in lower:
        raise ConnectionResetError("server closed the connection")
    return status, body


async def _client(cfg: dict, index: int, start: float, measure_from: float, end: float, out: dict):
    mode = cfg["mode"]
    if mode == "execute":
        head = _head("/v1/conversions", cfg["host"], cfg["port"], cfg["token"])
        quotes = iter(cfg["quotes"][index])
    elif mode == "convert":
        heads = tuple(_head(p, cfg["host"], cfg["port"], cfg["token"]) for p in ("/v1/conversions/quotes",
                                                                                  "/v1/conversions"))
        bodies = Conversions(cfg, index)
    else:
        path = "/v1/transactions" if mode == "single" else "/v1/transactions/batch"
        head = _head(path, cfg["host"], cfg["port"], cfg["token"])
        bodies = Body(cfg, index)
    batch_size = cfg.get("batch_size", 1000)
    reader = writer = None
    # Clients arrive one after another (as tills do), not in one burst: a burst is accepted
    # whole by whichever server worker wakes first, and keep-alive pins it there.
    await asyncio.sleep(index * cfg.get("stagger", 0.05))
    while True:
        now = time.perf_counter()
        if now >= end:
            break
        if writer is None:
            reader, writer = await asyncio.open_connection(cfg["host"], cfg["port"])
        if mode == "single":
            body = bodies.one()
        elif mode == "batch":
            body = b'{"items":[' + b",".join(bodies.one() for _ in range(batch_size)) + b"]}"
        elif mode == "execute":
            quote = next(quotes, None)
            if quote is None:
                out["exceptions"]["QuotesExhausted"] = out["exceptions"].get("QuotesExhausted", 0) + 1
                break
            body = b'{"quote":"%s"}' % quote.encode()
        t0 = time.perf_counter()
        try:
            if mode == "convert":
                status, resp = await _convert(reader, writer, heads, bodies, cfg.get("timeout", 30))
            else:
                status, resp = await _exchange(reader, writer, head, body, cfg.get("timeout", 30))
        except (OSError, asyncio.IncompleteReadError, asyncio.TimeoutError, ValueError) as exc:
            out["exceptions"][type(exc).__name__] = out["exceptions"].get(type(exc).__name__, 0) + 1
            writer.close()
            reader = writer = None
            status, resp = None, b""
        t1 = time.perf_counter()
        out["total"] += 1
        # Counted by completion time: steady-state throughput even for long (batch) requests.
        if t1 < measure_from or t1 > end:
            if status in (200, 201):
                out["unmeasured_ok"] += 1
                if mode == "batch":
                    m = _CREATED.search(resp, 0, 200)
                    out["unmeasured_purchases"] += int(m.group(1)) if m else 0
            continue
        key = str(status)
        out["statuses"][key] = out["statuses"].get(key, 0) + 1
        if mode in ("single", "convert", "execute"):
            if status == 201:
                out["latencies"].append(t1 - t0)
            elif len(out["error_samples"]) < 5:
                out["error_samples"].append(resp[:300].decode(errors="replace"))
        else:
            m = _CREATED.search(resp, 0, 200) if status == 200 else None
            if m:
                out["purchases"] += int(m.group(1))
                out["latencies"].append(t1 - t0)
            elif len(out["error_samples"]) < 5:
                out["error_samples"].append(resp[:300].decode(errors="replace"))
    if writer is not None:
        writer.close()


def _pct(sorted_values: list[float], p: float) -> float:
    if not sorted_values:
        return 0.0
    k = min(len(sorted_values) - 1, max(0, int(round(p / 100 * len(sorted_values) + 0.5)) - 1))
    return sorted_values[k] * 1000


async def run(cfg: dict) -> dict:
    out = {"total": 0, "statuses": {}, "latencies": [], "purchases": 0, "exceptions": {},
           "error_samples": [], "unmeasured_ok": 0, "unmeasured_purchases": 0}
    start = time.perf_counter()
    measure_from = start + cfg.get("warmup", 0)
    end = measure_from + cfg["seconds"]
    await asyncio.gather(
        *(_client(cfg, i, start, measure_from, end, out) for i in range(cfg["clients"]))
    )
    lat = sorted(out.pop("latencies"))
    ok_status = "200" if cfg["mode"] == "batch" else "201"
    ok = len(lat)
    errors = sum(n for s, n in out["statuses"].items() if s != ok_status) + (
        out["statuses"].get(ok_status, 0) - ok
    )
    return {
        **out,
        "ok": ok,
        "errors": errors,
        "seconds": cfg["seconds"],
        "p50_ms": _pct(lat, 50),
        "p90_ms": _pct(lat, 90),
        "p99_ms": _pct(lat, 99),
        "max_ms": lat[-1] * 1000 if lat else 0.0,
    }


def main() -> None:
    cfg = json.load(sys.stdin)
    try:
        import uvloop
    except ImportError:
        print(json.dumps(asyncio.run(run(cfg))))
    else:
        print(json.dumps(uvloop.run(run(cfg))))


if __name__ == "__main__":
    main()
