"""Open N TLS connections that finish the handshake and then send nothing.

    python idle.py PORT --n 2000 --dial-concurrency 32

Protocol with the runner: a few warm-up connections, then ``ready``; on a line from
stdin open ``--n`` connections (at most ``--dial-concurrency`` handshakes in flight,
so no listen backlog overflows) and print ``{"open", "failed", "seconds"}``; on the
next line close them all and exit.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time

from gevent import socket, ssl
from gevent.pool import Pool

parser = argparse.ArgumentParser()
parser.add_argument("port", type=int)
parser.add_argument("--n", type=int, default=2000)
parser.add_argument("--dial-concurrency", type=int, default=32)
args = parser.parse_args()

soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
if soft < args.n + 100:
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(hard, args.n + 100) if hard != resource.RLIM_INFINITY else args.n + 100, hard))

ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
held: list[ssl.SSLSocket] = []
failed = [0]


def dial() -> None:
    try:
        raw = socket.create_connection(("127.0.0.1", args.port), timeout=20)
        held.append(ctx.wrap_socket(raw))
    except OSError:
        failed[0] += 1


for _ in range(5):
    dial()
for tls in held:
    tls.close()
held.clear()
failed[0] = 0
print("ready", flush=True)
sys.stdin.readline()
start = time.perf_counter()
pool = Pool(args.dial_concurrency)
for _ in range(args.n):
    pool.spawn(dial)
pool.join()
print(json.dumps({"open": len(held), "failed": failed[0], "seconds": time.perf_counter() - start}), flush=True)
sys.stdin.readline()
for tls in held:
    tls.close()
