"""What every crawl client shares: the plan, the URL list, the body check, the report.

    python CLIENT.py PLAN.json

The plan (written by benchmarks/crawl_bench.py) names the origins' ports, the CA
file, how many pages, how many concurrent workers, the per-origin connection limit,
the decoded page's length and the marker it ends with, and the order of the URLs.
A client crawls every URL once with ``concurrency`` workers pulling from one shared
list, checks every page (status 200, decoded length, marker), counts failures
instead of stopping, and prints one JSON line:

    {"pages", "ok", "failures", "errors": {message: count}, "seconds",
     "cpu_user", "cpu_sys", "maxrss_kib", "bytes"}

``seconds`` and the CPU figures (``getrusage(RUSAGE_SELF)``) cover the crawl only,
not the interpreter's start-up and imports; ``maxrss_kib`` is the process's peak RSS
(``ru_maxrss``, all of its life, which the crawl dominates).
"""

from __future__ import annotations

import gzip
import json
import random
import resource
import sys
import time
from collections import Counter
from typing import Any, Callable

#: Per-request timeout every client is given (seconds): a stuck request becomes a
#: counted failure instead of a hung run.
TIMEOUT_S = 60.0


class Plan:
    def __init__(self, path: str) -> None:
        with open(path) as f:
            raw = json.load(f)
        self.ports: list[int] = raw["ports"]
        self.ca: str = raw["ca"]
        self.pages: int = raw["pages"]
        self.concurrency: int = raw["concurrency"]
        self.per_origin: int = raw["per_origin"]
        self.page_bytes: int = raw["page_bytes"]
        self.marker: bytes = raw["marker"].encode()
        self.urls = urls(self.ports, self.pages, raw["order"], raw["seed"])
        self.errors: Counter[str] = Counter()
        self.ok = 0
        self.bytes = 0

    def check(self, status: int, body: bytes) -> None:
        """Count a page as crawled if it is the page, else as a failure."""
        if status != 200:
            self.errors[f"status {status}"] += 1
        elif len(body) != self.page_bytes:
            self.errors[f"decoded length {len(body)}, want {self.page_bytes}"] += 1
        elif not body.endswith(self.marker):
            self.errors["marker missing"] += 1
        else:
            self.ok += 1
            self.bytes += len(body)

    def failed(self, exc: BaseException) -> None:
        self.errors[f"{type(exc).__name__}: {str(exc)[:120]}"] += 1


def urls(ports: list[int], pages: int, order: str, seed: int) -> list[str]:
    """``pages`` URLs over the origins: round-robin, or that list shuffled (seeded)."""
    out = [f"https://127.0.0.1:{ports[i % len(ports)]}/page/{i}" for i in range(pages)]
    if order == "shuffle":
        random.Random(seed).shuffle(out)
    return out


class Measure:
    """Wall clock and this process's CPU over a ``with`` block."""

    def __enter__(self) -> Measure:
        self._ru = resource.getrusage(resource.RUSAGE_SELF)
        self._t = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self._t
        ru = resource.getrusage(resource.RUSAGE_SELF)
        self.cpu_user = ru.ru_utime - self._ru.ru_utime
        self.cpu_sys = ru.ru_stime - self._ru.ru_stime


def report(plan: Plan, m: Measure) -> None:
    failures = sum(plan.errors.values())
    missing = plan.pages - plan.ok - failures  # a worker that died would leave pages uncounted
    if missing:
        plan.errors["never attempted"] += missing
        failures += missing
    print(json.dumps({
        "pages": plan.pages, "ok": plan.ok, "failures": failures, "errors": dict(plan.errors.most_common(5)),
        "seconds": m.seconds, "cpu_user": m.cpu_user, "cpu_sys": m.cpu_sys,
        "maxrss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, "bytes": plan.bytes,
    }), flush=True)


def crawl_greenlets(plan: Plan, one: Callable[[str], tuple[int, bytes]]) -> None:
    """The crawl with ``plan.concurrency`` greenlets in a gevent Pool, each taking the
    next URL from the shared list; ``one(url)`` returns (status, decoded body)."""
    from gevent.pool import Pool

    todo = iter(plan.urls)

    def worker() -> None:
        for url in todo:  # next() never yields to another greenlet: each URL once
            try:
                status, body = one(url)
            except Exception as exc:
                plan.failed(exc)
                continue
            plan.check(status, body)

    pool = Pool(plan.concurrency)
    with Measure() as m:
        for _ in range(min(plan.concurrency, plan.pages)):
            pool.spawn(worker)
        pool.join()
    report(plan, m)


def plan_from_argv() -> Plan:
    if len(sys.argv) != 2:
        sys.exit(f"usage: {sys.argv[0]} PLAN.json")
    return Plan(sys.argv[1])


def gunzip_if(encoding: Any, raw: bytes) -> bytes:
    """The body decoded by hand, for clients that hand back the bytes as sent."""
    if encoding and encoding.lower() == "gzip":
        return gzip.decompress(raw)
    return raw
