#!/usr/bin/env python3
"""Soak: a bounded mixed workload against a local greenhttps TLS server (HARDENING #6).

The server runs in a subprocess (so its RSS, descriptors and greenlets are its own) and
reports them at ``GET /stats``. The load is ~80% good requests (the greenhttps client
with a keep-alive agent, and raw TLS sockets) and ~20% catalog faults: binary garbage
and plain HTTP to the TLS port, RST in the middle of a request, RST mid-handshake,
oversized heads (431), malformed heads (400), slowloris header trickles (cut at
headers_timeout), and clients that never read a 4 MiB response (cut by the write
timeout). At the end it prints the server's counts at start and end (after a settle
period) and the outcomes by class for each kind of traffic.

    python3 benchmarks/soak.py --seconds 60            # the check run
    python3 benchmarks/soak.py --seconds 300 --concurrency 40

Only loopback; certificates come from trustme in a temporary directory.
"""

from __future__ import annotations

import argparse
import collections
import gc
import json
import os
import random
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

SERVER = r"""
import gc, json, os, sys
import greenlet
import greenhttps

BIG = b"b" * (4 * 1024 * 1024)

def counts():
    with open("/proc/self/status") as f:
        rss = next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
    gc.collect()
    glets = sum(1 for o in gc.get_objects() if isinstance(o, greenlet.greenlet) and not o.dead)
    return {"rss_kib": rss, "fds": len(os.listdir("/proc/self/fd")), "greenlets": glets,
            "connections": srv.connections}

def handler(req, res):
    req.read()
    if req.url == "/stats":
        res.set_header("Content-Type", "application/json")
        res.end(json.dumps(counts()))
    elif req.url == "/big":
        res.end(BIG)
    else:
        res.end("ok")

srv = greenhttps.create_server({
    "key": open(sys.argv[1], "rb").read(), "cert": open(sys.argv[2], "rb").read(),
    "headers_timeout": 2000, "request_timeout": 5000, "timeout": 2000,
    "keep_alive_timeout": 2000, "handshake_timeout": 2000}, handler)
srv.on("clientError", lambda err, sock: None if not sock.writable else sock.end(
    b"HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
    if err.code not in ("HPE_HEADER_OVERFLOW", "ERR_HTTP_REQUEST_TIMEOUT") else
    b"HTTP/1.1 %d X\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
    % (431 if err.code == "HPE_HEADER_OVERFLOW" else 408)))
srv.listen(0, "127.0.0.1")
print(srv.address()["port"], flush=True)
srv.serve_forever()
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--concurrency", type=int, default=20, help="client greenlets (default 20)")
    ap.add_argument("--settle", type=float, default=5, help="seconds to wait before the final counts")
    args = ap.parse_args()

    import gevent
    import gevent.pool
    import gevent.socket
    import gevent.ssl
    import trustme

    sys.path.insert(0, str(REPO))
    import greenhttps

    ca = trustme.CA()
    leaf = ca.issue_cert("localhost", "127.0.0.1")
    tmp = tempfile.TemporaryDirectory(prefix="greenhttps-soak-")
    key, cert = Path(tmp.name, "key.pem"), Path(tmp.name, "cert.pem")
    leaf.private_key_pem.write_to_path(key)
    cert.write_bytes(b"".join(b.bytes() for b in leaf.cert_chain_pems))
    ca_pem = ca.cert_pem.bytes()
    client_ctx = gevent.ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # cooperative sockets
    ca.configure_trust(client_ctx)

    proc = subprocess.Popen(
        [sys.executable, "-c", SERVER, str(key), str(cert)],
        stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert proc.stdout is not None
    port = int(proc.stdout.readline())

    def tls_connect(timeout: float = 5, rcvbuf: int = 0) -> gevent.ssl.SSLSocket:
        raw = gevent.socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        raw.settimeout(timeout)
        raw.connect(("127.0.0.1", port))
        return client_ctx.wrap_socket(raw, server_hostname="localhost")

    def status_of(sock: socket.socket, timeout: float = 5) -> str:
        sock.settimeout(timeout)
        data = b""
        while b"\r\n" not in data:
            chunk = sock.recv(4096)
            if not chunk:
                return "closed" if not data else "truncated"
            data += chunk
        return data.split(b" ", 2)[1].decode()

    def rst(sock: socket.socket) -> None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()

    def stats() -> dict[str, int]:
        sock = tls_connect()
        try:
            sock.sendall(b"GET /stats HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            data = b""
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                data += chunk
        finally:
            sock.close()
        return json.loads(data.split(b"\r\n\r\n", 1)[1])

    agent = greenhttps.Agent(keep_alive=True, max_sockets=10)

    def good_client() -> str:
        return str(greenhttps.get(f"https://localhost:{port}/", ca=ca_pem, agent=agent, timeout=5000).read() == b"ok")

    def good_raw() -> str:
        sock = tls_connect()
        try:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            return status_of(sock)
        finally:
            sock.close()

    def garbage() -> str:
        sock = gevent.socket.create_connection(("127.0.0.1", port), timeout=5)
        try:
            sock.sendall(os.urandom(random.randint(1, 2000)))
            return status_of(sock)
        finally:
            sock.close()

    def plain_http_to_tls() -> str:
        sock = gevent.socket.create_connection(("127.0.0.1", port), timeout=5)
        try:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            return status_of(sock)
        finally:
            sock.close()

    def rst_mid_request() -> str:
        sock = tls_connect()
        sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\npartial")
        rst(sock)
        return "rst"

    def rst_mid_handshake() -> str:
        sock = gevent.socket.create_connection(("127.0.0.1", port), timeout=5)
        sock.sendall(b"\x16\x03\x01\x00\xc8\x01\x00\x00\xc4\x03\x03" + os.urandom(16))
        rst(sock)
        return "rst"

    def oversized_head() -> str:
        sock = tls_connect()
        try:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nCookie: " + b"c" * 20000 + b"\r\n\r\n")
            return status_of(sock)
        finally:
            sock.close()

    def malformed_head() -> str:
        sock = tls_connect()
        try:
            sock.sendall(random.choice([
                b"GET / HTTP/1.1\r\nHost : x\r\n\r\n",
                b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n",
                b"GET / HTTP/1.1\r\nHost: x\r\nX: a\x00b\r\n\r\n",
            ]))
            return status_of(sock)
        finally:
            sock.close()

    def slowloris() -> str:
        sock = tls_connect()
        try:
            start = time.monotonic()
            for b in b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"s" * 100:
                sock.sendall(bytes([b]))
                sock.settimeout(0.5)
                try:
                    data = sock.recv(4096)
                except (socket.timeout, TimeoutError):
                    continue
                return f"{data.split(b' ', 2)[1].decode() if data else 'closed'} after {time.monotonic() - start:.0f}s"
            return "never cut"
        finally:
            sock.close()

    def non_reader() -> str:
        sock = tls_connect(rcvbuf=4096)
        try:
            sock.sendall(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
            gevent.sleep(3.5)  # the server's write timeout is 2 s
            got = 0
            sock.settimeout(2)
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                got += len(chunk)
            return "cut" if got < 4 * 1024 * 1024 else "complete"
        except OSError:
            return "cut (reset)"
        finally:
            sock.close()

    good = [good_client] * 5 + [good_raw] * 3
    faults = [garbage, plain_http_to_tls, rst_mid_request, rst_mid_handshake, oversized_head, malformed_head]
    outcomes: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)

    def run(kind: object) -> None:
        name = kind.__name__  # type: ignore[attr-defined]
        try:
            outcomes[name][kind()] += 1  # type: ignore[operator]
        except Exception as exc:  # noqa: BLE001  (counted by class, the point of a soak)
            outcomes[name][type(exc).__name__] += 1

    try:
        # Warm up, then the baseline.
        for _ in range(20):
            run(good_client)
            run(garbage)
        gevent.sleep(3)
        start_stats = stats()
        outcomes.clear()
        print(f"soak: {args.seconds:.0f}s against port {port} (pid {proc.pid}), concurrency {args.concurrency}")
        print("start:", start_stats, flush=True)
        pool = gevent.pool.Pool(args.concurrency)
        slow = gevent.pool.Pool(max(2, args.concurrency // 4))  # slowloris / non-readers
        t0 = time.monotonic()
        last_report = t0
        while time.monotonic() - t0 < args.seconds:
            if slow.free_count():
                slow.spawn(run, random.choice([slowloris, non_reader]))
            pool.spawn(run, random.choice(good) if random.random() < 0.8 else random.choice(faults))
            if time.monotonic() - last_report >= 15:
                last_report = time.monotonic()
                print(f"  {last_report - t0:5.0f}s", stats(), flush=True)
        pool.join(timeout=30)
        slow.join(timeout=30)
        agent.destroy()
        gevent.sleep(args.settle)
        gc.collect()
        end_stats = stats()
        print("end:  ", end_stats)
        drift = {k: end_stats[k] - start_stats[k] for k in start_stats}
        print("drift:", drift)
        total = sum(sum(c.values()) for c in outcomes.values())
        print(f"outcomes ({total} operations, {total / args.seconds:.0f}/s):")
        for name in sorted(outcomes):
            print(f"  {name:20s} " + ", ".join(f"{k}: {v}" for k, v in outcomes[name].most_common()))
    finally:
        proc.terminate()
        proc.wait(timeout=5)
        tmp.cleanup()


if __name__ == "__main__":
    main()
