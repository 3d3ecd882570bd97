"""Every HTTP route of the bot's web app fed generated hostile requests over raw sockets:
wrong methods, huge, truncated and mis-encoded bodies, odd headers, path tricks, repeated and
huge query keys, deeply nested JSON. Holds when no request gets a 5xx, the process keeps
answering /healthz, nothing logs a traceback or an error, and memory stays flat.

    python -m bench.reliability.fuzz [--requests N] [--seed S]

Requests come from a seeded generator (the same seed sends the same requests), so a failure
is reproduced by its seed and index.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import hashlib
import json
import logging
import random
import tempfile
import time
import tracemalloc
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from urllib.parse import quote

from bot.app import BotApp
from bot.demo import sandbox_settings
from sandbox import registry
from sandbox.base import FakeServer

PROVIDERS = ("redoya", "payture", "ktwidget", "pocket", "erp", "stars", "nobody")
WEBHOOK_SECRET = "fuzz-webhook-secret-0123456789"
TOO_BIG = 300 * 1024  # past the app's client_max_size (256 KiB)
METHODS = ("GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "TRACE", "BREW", "G\x00T")


@dataclass
class Report:
    """What a run saw: statuses by route, answers that never came, log lines that failed."""

    requests: int = 0
    statuses: Counter[int] = field(default_factory=Counter)  # 0: no answer, -1: we hung up
    by_route: dict[str, Counter[int]] = field(default_factory=dict)
    no_answer: int = 0
    server_errors: list[str] = field(default_factory=list)
    bad_logs: list[str] = field(default_factory=list)
    health_failures: int = 0
    rss_kib: tuple[int, int] = (0, 0)
    traced_kib: tuple[int, int] = (0, 0)
    seconds: float = 0.0
    grew: list[str] = field(default_factory=list)  # where traced memory grew most
    log_records: int = 0

    def as_dict(self) -> dict[str, object]:
        return {
            "requests": self.requests,
            "routes": sorted(self.by_route),
            "statuses": dict(sorted(self.statuses.items())),
            "no_answer": self.no_answer,
            "server_errors": self.server_errors[:20],
            "bad_logs": self.bad_logs[:20],
            "health_failures": self.health_failures,
            "rss_kib_before_after": list(self.rss_kib),
            "traced_kib_before_after": list(self.traced_kib),
            "seconds": round(self.seconds, 1),
            "grew_most": self.grew,
            "log_records": self.log_records,
        }

    @property
    def held(self) -> bool:
        return not (self.server_errors or self.bad_logs or self.health_failures)


def routes(webhook_path: str) -> list[tuple[str, str]]:
    """(route name, path template): `{p}` a provider, `{t}` a token."""
    return [
        ("callback", "/callbacks/{p}"),
        ("return", "/return/{p}/{t}"),
        ("bridge", "/pay/{p}/{t}"),
        ("card", "/cards/{p}/{t}"),
        ("healthz", "/healthz"),
        ("readyz", "/readyz"),
        ("webhook", webhook_path),
    ]


def _nested(rng: random.Random) -> bytes:
    depth = rng.choice((50, 1000, 5000, 100_000))
    opener, closer = rng.choice(((b"[", b"]"), (b'{"a":', b"}")))
    tail = closer * depth if rng.random() < 0.7 else b""  # sometimes never closed
    return opener * depth + b"1" + tail


def _update(rng: random.Random) -> bytes:
    """Something shaped like a Telegram update, often wrong in one field."""
    update: object = {"update_id": rng.choice((1, -1, 2**70, "x", None))}
    if rng.random() < 0.5:
        user = {"id": rng.choice((7, 2**65, "x")), "is_bot": False, "first_name": "F"}
        chat = {"id": rng.choice((7, -1, 2**65)), "type": rng.choice(("private", "weird"))}
        message = {"message_id": 1, "date": rng.choice((0, -5, "now")), "chat": chat}
        update = {**update, "message": {**message, "from": user, "text": "/start"}}  # type: ignore[dict-item]
    if rng.random() < 0.2:
        update = rng.choice(([], [update], "update", 12, None))
    return json.dumps(update).encode()


def body(rng: random.Random) -> tuple[bytes, str]:
    """A body and the content type it claims."""
    kind = rng.randrange(12)
    if kind == 0:
        return b"", rng.choice(("", "application/json"))
    if kind == 1:
        return _nested(rng), "application/json"
    if kind == 2:
        return bytes(rng.randrange(256) for _ in range(rng.randrange(1, 300))), "text/plain"
    if kind == 3:
        return b'{"a": "\xff\xfe\xc3\x28"}', "application/json; charset=utf-8"
    if kind == 4:
        return b"x" * TOO_BIG, "application/octet-stream"
    if kind == 5:
        keys = "&".join(f"OrderId={rng.randrange(10**30)}" for _ in range(rng.randrange(1, 50)))
        return f"Notification=EnginePaySuccess&{keys}&Amount=1e999".encode(), (
            "application/x-www-form-urlencoded"
        )
    if kind == 6:
        return b"%zz=%%&&=&a=%ff%fe" * rng.randrange(1, 20), "application/x-www-form-urlencoded"
    if kind == 7:
        return _update(rng), "application/json"
    if kind == 8:
        return b'{"order_id": "' + b"9" * 5000 + b'", "amount": -1}', "application/json"
    if kind == 9:
        return b"--b\r\nContent-Disposition: form-data; name=x\r\n\r\n", "multipart/form-data"
    if kind == 10:
        return json.dumps({"x": "\u0000\ud800".encode("utf-8", "surrogatepass").hex()}).encode(), (
            "application/json; charset=latin-1"
        )
    return b"\x1f\x8b\x08\x00garbage", "application/json"  # claimed gzip below, sometimes


def token(rng: random.Random) -> str:
    choices = (
        lambda: "..",
        lambda: "%2e%2e",
        lambda: "%2e%2e%2f%2e%2e%2fetc%2fpasswd",
        lambda: "a" * rng.choice((10, 300, 5000)),
        lambda: quote("ürün-🛒-\u202e", safe=""),
        lambda: "%00",
        lambda: "%ff%fe",
        lambda: "9" * 40,
        lambda: "x/../../y",
        lambda: "-".join(str(rng.randrange(10**25)) for _ in range(3)),
        lambda: rng.choice(("", "%", "%zz", "%25", ";x=1", "t?", "t#f")),
    )
    return rng.choice(choices)()


def query(rng: random.Random) -> str:
    if rng.random() < 0.4:
        return ""
    key = rng.choice(("o", "k", "result", "order_id", "id", "status", "x", "%00", ""))
    repeats = rng.choice((1, 2, 100))
    value = rng.choice(("1", "%00", "a" * rng.choice((10, 3000, 9000)), "%ff", "=", "&&"))
    return "?" + "&".join(f"{key}={value}" for _ in range(repeats))


def path(rng: random.Random, template: str) -> str:
    p = template.replace("{p}", rng.choice(PROVIDERS)).replace("{t}", token(rng))
    trick = rng.randrange(8)
    if trick == 0:
        p = "/" + p  # //callbacks/...
    elif trick == 1:
        p = p.replace("/", "/./", 1)
    elif trick == 2:
        p = p + "/.."
    elif trick == 3:
        p = p.upper()
    elif trick == 4:
        p = p.replace("/", "%2f")
    return p + query(rng)


def request(rng: random.Random, template: str, secret: str) -> tuple[bytes, bool]:
    """One raw HTTP/1.1 request, malformed in some way or none, and whether to wait for its
    answer (not when it promises more body than it sends: the sender hangs up instead)."""
    method = rng.choice(("POST", "GET")) if rng.random() < 0.7 else rng.choice(METHODS)
    content, content_type = body(rng)
    headers = [("Host", "127.0.0.1"), ("Connection", "close")]
    if content_type:
        headers.append(("Content-Type", content_type))
    if template.startswith("/telegram/") and rng.random() < 0.7:
        headers.append(("X-Telegram-Bot-Api-Secret-Token", secret))
    length = str(len(content))
    odd = rng.randrange(14)
    if odd == 0:
        length = rng.choice(("abc", "-1", "1e3", "99999999999999999999", " 5", "0x10"))
    elif odd == 1:
        length = str(max(0, len(content) - rng.randrange(1, 50)))  # truncated: the rest is junk
    elif odd == 2:
        length = str(len(content) + rng.randrange(1, 10_000))  # more promised than sent
    elif odd == 3:
        headers.append(("Content-Length", "1"))  # two lengths
    elif odd == 4:
        headers.append(("X-Huge", "h" * rng.choice((5000, 9000, 70_000))))
    elif odd == 5:
        headers.append(("Content-Encoding", rng.choice(("gzip", "deflate", "br", "zstd", "x"))))
    elif odd == 6:
        headers.append(("Content-Type", "text/html"))  # two content types
    elif odd == 7:
        headers += [(f"X-H{i}", "v") for i in range(rng.choice((50, 200)))]
    elif odd == 8:
        headers.append(("Transfer-Encoding", "chunked"))
        content = b"zz\r\n" + content[:100] + b"\r\n"
        length = ""
    elif odd == 9:
        headers.append(("Bad Header\x01", "\xff"))
    elif odd == 10:
        headers.append(("Expect", "100-continue"))
    if length:
        headers.append(("Content-Length", length))
    head = f"{method} {path(rng, template)} HTTP/1.1\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in headers)
    return head.encode("utf-8", "surrogateescape") + b"\r\n" + content, odd != 2


async def send_raw(
    host: str, port: int, raw: bytes, *, answer: bool = True, timeout: float = 10.0
) -> int | None:
    """The status the server answered, or None when it closed without one (fine for garbage:
    aiohttp may drop a connection it cannot parse)."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        async with asyncio.timeout(timeout):
            try:
                writer.write(raw)
                await writer.drain()
                if not answer:  # more body promised than sent: hang up, read nothing
                    return None
            except (ConnectionError, OSError):
                pass  # the server hung up mid-body (413, a bad header): read what it said
            line = await reader.readline()
            while line.split()[1:2] == [b"100"]:  # Expect: 100-continue; the answer follows
                while (await reader.readline()).strip():
                    pass
                line = await reader.readline()
    except (ConnectionError, OSError):
        return None
    finally:
        writer.close()
        with suppress(ConnectionError, OSError):
            await writer.wait_closed()
    parts = line.split()
    return int(parts[1]) if len(parts) >= 2 and parts[1].isdigit() else None


class Collector(logging.Handler):
    """Every log record of every logger (kept, unless `keep` is False: a long run counts
    them, so the fuzzer's memory figure is the bot's); the failing ones (a traceback, ERROR
    and above)."""

    def __init__(self, *, keep: bool = True) -> None:
        super().__init__(logging.DEBUG)
        self.keep = keep
        self.count = 0
        self.lines: list[str] = []
        self.bad: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        text = self.format(record)
        self.count += 1
        if self.keep:
            self.lines.append(text)
        # aiohttp logs a request it cannot parse at DEBUG on purpose (the internet's noise);
        # the bot's log runs at INFO, so a traceback counts from INFO up
        if (record.exc_info and record.levelno >= logging.INFO) or record.levelno >= logging.ERROR:
            cause = text.strip().splitlines()[-1][:200]
            self.bad.append(f"{record.name}: {record.getMessage()[:200]} [{cause}]")


@asynccontextmanager
async def capture_logs(*, keep: bool = True) -> AsyncIterator[Collector]:
    collector = Collector(keep=keep)
    collector.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    level = root.level
    root.addHandler(collector)
    root.setLevel(logging.DEBUG)
    try:
        yield collector
    finally:
        root.removeHandler(collector)
        root.setLevel(level)


def rss_kib() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


@asynccontextmanager
async def emulators() -> AsyncIterator[list[FakeServer]]:
    servers = {name: registry.server_class(name)() for name in registry.emulator_names()}
    try:
        for server in servers.values():
            await server.start()
        yield list(servers.values())
    finally:
        await registry.stop_all(servers)


def webhook_settings(servers: list[FakeServer], database_url: str, port: int) -> object:
    return sandbox_settings(
        *servers,
        database_url=database_url,
        web_port=port,
        webhook_url=f"http://127.0.0.1:{port}",
        webhook_secret=WEBHOOK_SECRET,
        sweep_every=3600,
        admin_ids=frozenset({42}),
    )


def webhook_path(secret: str = WEBHOOK_SECRET) -> str:
    return f"/telegram/{hashlib.sha256(secret.encode()).hexdigest()[:32]}"


def plan(n: int, seed: int) -> Iterator[tuple[str, bytes, bool]]:
    """The n requests of a run, each with its route name."""
    rng = random.Random(seed)
    table = routes(webhook_path())
    for _ in range(n):
        name, template = rng.choice(table)
        yield name, *request(rng, template, WEBHOOK_SECRET)


async def fuzz(
    host: str, port: int, n: int, seed: int, *, concurrency: int = 16, log: Collector
) -> Report:
    """Send the n requests of `seed` (`concurrency` at a time), /healthz between batches."""
    report = Report()
    queue = iter(enumerate(plan(n, seed)))
    health = b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"

    async def worker() -> None:
        for index, (name, raw, answer) in queue:
            status = await send_raw(host, port, raw, answer=answer)
            report.requests += 1
            if not answer:
                status = -1  # we hung up mid-body
            elif status is None:
                report.no_answer += 1
                status = 0
            report.statuses[status] += 1
            report.by_route.setdefault(name, Counter())[status] += 1
            if status >= 500:
                report.server_errors.append(f"#{index} {name} {status}: {raw[:120]!r}")
            if index % 500 == 0 and await send_raw(host, port, health) != 200:
                report.health_failures += 1

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    if await send_raw(host, port, health) != 200:
        report.health_failures += 1
    report.bad_logs = list(log.bad)
    report.log_records = log.count
    return report


async def run(n: int, seed: int, database_url: str, port: int) -> Report:
    """A BotApp in webhook mode on the emulators, fuzzed; memory read before and after."""
    async with (
        emulators() as servers,
        capture_logs(keep=False) as log,
        BotApp(webhook_settings(servers, database_url, port)) as parts,  # type: ignore[arg-type]
    ):
        host, bound = parts.web_url.removeprefix("http://").rsplit(":", 1)
        tracemalloc.start()  # before the warm-up, so its own overhead is in the baseline
        warm = min(2000, n // 10)
        await fuzz(host, int(bound), warm, seed + 1, log=log)  # caches, pools, first imports
        gc.collect()
        rss, traced = rss_kib(), tracemalloc.get_traced_memory()[0]
        before = tracemalloc.take_snapshot()
        started = time.monotonic()
        report = await fuzz(host, int(bound), n, seed, log=log)
        report.seconds = time.monotonic() - started
        gc.collect()
        report.rss_kib = (rss, rss_kib())
        report.traced_kib = (traced // 1024, tracemalloc.get_traced_memory()[0] // 1024)
        growth = tracemalloc.take_snapshot().compare_to(before, "lineno")
        report.grew = [str(stat) for stat in growth[:5]]
        tracemalloc.stop()
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=25)
    parser.add_argument("--database", default="", help="default: a fresh SQLite file")
    parser.add_argument("--port", type=int, default=18095)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        database = args.database or f"sqlite:///{tmp}/bot.db"
        report = asyncio.run(run(args.requests, args.seed, database, args.port))
    print(json.dumps(report.as_dict(), indent=1))
    raise SystemExit(0 if report.held else 1)


if __name__ == "__main__":
    main()
