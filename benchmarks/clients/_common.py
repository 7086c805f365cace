"""Shared command line and the gevent worker loop for the Python client scripts.

    python CLIENT.py MODE PORT CA --n N --concurrency C [--warmup W]

MODE is ``keepalive`` (small body, pooled connections), ``big`` (1 MiB bodies,
pooled), ``newconn`` (a new connection and a full TLS handshake per request) or
``newconn-resume`` (a new connection per request, resuming the TLS session).  The
script prints one JSON line: ``{"requests", "bytes", "seconds"}``, or ``{"skip": why}``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Callable

MODES = ("keepalive", "big", "newconn", "newconn-resume")


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=MODES)
    parser.add_argument("port", type=int)
    parser.add_argument("ca", help="CA certificate (PEM file)")
    parser.add_argument("--n", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=100)
    args = parser.parse_args()
    args.url = f"https://127.0.0.1:{args.port}/"
    return args


def skip(why: str) -> None:
    print(json.dumps({"skip": why}), flush=True)
    sys.exit(0)


def report(requests: int, nbytes: int, seconds: float) -> None:
    print(json.dumps({"requests": requests, "bytes": nbytes, "seconds": seconds}), flush=True)


def run_greenlets(args: argparse.Namespace, one: Callable[[], int]) -> None:
    """Warm up, then run ``args.n`` calls of ``one()`` (returns body bytes) in
    ``args.concurrency`` greenlets; report the measured part."""
    from gevent.pool import Pool

    def run(n: int) -> tuple[int, float]:
        left = [n]
        total = [0]

        def worker() -> None:
            while left[0] > 0:
                left[0] -= 1
                nbytes = one()  # not `total[0] += one()`: that reads total[0] before one() yields
                total[0] += nbytes

        pool = Pool(args.concurrency)
        start = time.perf_counter()
        for _ in range(min(args.concurrency, n)):
            pool.spawn(worker)
        pool.join(raise_error=True)
        return total[0], time.perf_counter() - start

    if args.warmup:
        run(args.warmup)
    nbytes, seconds = run(args.n)
    report(args.n, nbytes, seconds)
