"""Full-handshake load generator: each request on a new TLS connection, no resumption.

    python handshakes.py PORT --n 1500 --concurrency 8 --warmup 50

Every connection uses a fresh ``wrap_socket`` without ``session=``, so it is a full
handshake (ECDHE + the server's ECDSA signature); each one is checked with
``session_reused``.  One HTTP/1.1 ``GET /`` with ``Connection: close`` per
connection, read to EOF.  Protocol with the runner: after the warm-up connections
print ``ready`` and wait for a line on stdin; then run ``--n`` connections and print
one JSON line ``{"connections", "seconds", "reused", "errors"}``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import gevent
from gevent import socket, ssl
from gevent.pool import Pool

parser = argparse.ArgumentParser()
parser.add_argument("port", type=int)
parser.add_argument("--n", type=int, default=1500)
parser.add_argument("--concurrency", type=int, default=8)
parser.add_argument("--warmup", type=int, default=50)
args = parser.parse_args()

ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE  # spare the load generator's core; the server's cost is what we measure
REQUEST = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
stats = {"reused": 0, "errors": 0}


def one() -> None:
    raw = socket.create_connection(("127.0.0.1", args.port), timeout=10)
    try:
        tls = ctx.wrap_socket(raw)
        if tls.session_reused:
            stats["reused"] += 1
        tls.sendall(REQUEST)
        data = b""
        while True:
            try:
                chunk = tls.recv(65536)
            except (ssl.SSLEOFError, ConnectionResetError):
                break
            if not chunk:
                break
            data += chunk
        if not data.startswith(b"HTTP/1.1 200"):
            stats["errors"] += 1
        tls.close()
    except OSError:
        stats["errors"] += 1
    finally:
        raw.close()


def run(n: int) -> float:
    left = [n]

    def worker() -> None:
        while left[0] > 0:
            left[0] -= 1
            one()

    pool = Pool(args.concurrency)
    start = time.perf_counter()
    for _ in range(args.concurrency):
        pool.spawn(worker)
    pool.join(raise_error=True)
    return time.perf_counter() - start


run(args.warmup)
stats.update(reused=0, errors=0)
print("ready", flush=True)
sys.stdin.readline()
seconds = run(args.n)
print(json.dumps({"connections": args.n, "seconds": seconds, **stats}), flush=True)
gevent.sleep(0)
