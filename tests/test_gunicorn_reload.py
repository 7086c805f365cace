"""Reloads and shutdowns that drop nothing, and certificates rotated by a reload,
under load, with a real gunicorn arbiter (issue 18, items 3 and 4).

Clients that never retry a request loop keep-alive requests through three SIGHUP
reloads and a final SIGTERM while the certificate files are replaced before each
reload.  Every outcome is counted by kind; the test then says which kinds are
allowed, and when.

What the client does, and why it is fair: like every pooling client (Node's Agent
drops a pooled socket that emitted ``'end'``; urllib3 checks ``is_connection_dropped``
before reuse) it looks at a pooled connection before sending on it, and one the
server has closed (EOF) is put away and a new one opened -- no request was sent on
it, so nothing is retried.  A response with ``Connection: close`` ends its
connection the same way.  A request that was sent is never sent again, whatever
happens to it.

The race no server can close: the server closes an idle keep-alive connection
exactly while the client's next request is on its way.  greenhttps narrows it to
the bytes still on the wire: ``close()`` never closes a connection whose request
has begun to arrive (bytes in the kernel's buffer, in OpenSSL's or in the parser
count), nor one that has not had its first request yet, and it checks again just
before the close -- so a request that reached the server is answered (with
``Connection: close``).  What it cannot see is a request sent after its FIN left:
the client then reads EOF before any byte of a response on a reused connection.
The test counts that as ``idle_race``, separately, and shows the count; RFC 9112
§9.3.1 is why clients may retry exactly that case.  (In runs here it was 0 in most
and 1 in a few; before the narrowing, up to 16, and requests on fresh connections
were dropped outright.)

After SIGTERM, new connections are refused (ECONNREFUSED) once the arbiter and
every worker have closed their copies of the listening socket.  One that the
kernel queued in the few milliseconds between the arbiter's close and the workers'
is reset by the kernel when the last copy closes: it is counted apart from refusals
(``reset in the closing listener's backlog after TERM``), allowed only after TERM.
Everything else must be zero.
"""

from __future__ import annotations

import json
import os
import re
import select
import signal
import ssl
import time
from collections import Counter
from pathlib import Path
from typing import Any

import gevent
import gevent.event
import gevent.socket
import pytest
import trustme
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from test_gunicorn import APP, Gunicorn

from helpers import wrap_client

pytest.importorskip("gunicorn")
pytest.importorskip("flask")

pytestmark = [pytest.mark.timeout(60), pytest.mark.slow]

CLIENTS = 8
RELOADS = 3


class Closed(Exception):
    """The server closed the connection; ``got`` bytes of a response had come."""

    def __init__(self, got: int, why: str) -> None:
        super().__init__(f"closed after {got} bytes: {why}")
        self.got = got


def read_response(sock: Any, timeout: float) -> tuple[int, dict[str, str], bytes]:
    """One response with Content-Length (what Flask sends); raises Closed with the
    count of bytes that had arrived if the connection ends (EOF or reset) first."""
    data = b""
    deadline = time.monotonic() + timeout

    def more() -> None:
        nonlocal data
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            chunk = sock.recv(65536)
        except (ConnectionError, ssl.SSLError) as exc:
            raise Closed(len(data), repr(exc)) from None
        if not chunk:
            raise Closed(len(data), "EOF")
        data += chunk

    while b"\r\n\r\n" not in data:
        more()
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        more()
        body = data.partition(b"\r\n\r\n")[2]
    return int(lines[0].split()[1]), headers, body[:length]


def dropped_by_server(sock: Any) -> bool:
    """True if a pooled connection is readable: the server closed it (EOF or
    close_notify), so it cannot carry a request.  (After the first response, which
    read the TLS 1.3 tickets, nothing else is expected on an idle connection.)"""
    readable, _, _ = select.select([sock.fileno()], [], [], 0)
    if not readable or sock.pending():
        return False
    sock.settimeout(0)
    try:
        return sock.recv(1) == b""
    except (ssl.SSLWantReadError, BlockingIOError):
        return False  # a TLS record without application data
    except OSError:
        return True


def der_of(cert: trustme.LeafCert) -> bytes:
    return x509.load_pem_x509_certificate(cert.cert_chain_pems[0].bytes()).public_bytes(serialization.Encoding.DER)


def test_three_reloads_rotating_the_certificate_then_term_drop_nothing(
    tmp_path: Path, ca: trustme.CA, client_ssl_context: ssl.SSLContext
) -> None:
    (tmp_path / "app.py").write_text(APP)
    certs = [ca.issue_cert("localhost") for _ in range(RELOADS + 1)]
    generation_of = {der_of(c): n for n, c in enumerate(certs)}
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"

    def install(cert: trustme.LeafCert) -> None:
        # As an operator would: new files beside, renamed over the old (a worker
        # booting meanwhile reads a whole pair, old or new).
        for blob, path in ((b"".join(b.bytes() for b in cert.cert_chain_pems), cert_file),
                           (cert.private_key_pem.bytes(), key_file)):
            Path(f"{path}.new").write_bytes(blob)
            os.replace(f"{path}.new", path)

    install(certs[0])
    g = Gunicorn(tmp_path, ["-k", "greenhttps.gunicorn.Worker", "-w", "2", "--certfile", str(cert_file),
                            "--keyfile", str(key_file), "--keep-alive", "30", "--graceful-timeout", "10"], tls=True)
    outcomes: Counter[str] = Counter()
    details: list[str] = []
    pids: Counter[int] = Counter()
    # (connected at, certificate generation) for every connection made.
    handshakes: list[tuple[float, int]] = []
    term_sent = [float("inf")]
    stop = gevent.event.Event()

    def client(n: int) -> None:
        sock: Any = None
        reused = False
        count = 0
        while not stop.is_set():
            if sock is not None and dropped_by_server(sock):
                outcomes["pooled connection closed by the server, put away"] += 1
                sock.close()
                sock = None
            if sock is None:
                started = time.monotonic()
                try:
                    raw = gevent.socket.create_connection(("127.0.0.1", g.port), timeout=10)
                except ConnectionRefusedError:
                    outcomes["refused after TERM" if started >= term_sent[0] else "FAIL refused before TERM"] += 1
                    gevent.sleep(0.05)
                    continue
                try:
                    sock = wrap_client(raw, client_ssl_context, "localhost", timeout=10)
                except (OSError, ssl.SSLError) as exc:
                    raw.close()
                    # A connection queued in the backlog of a listener that then
                    # closed: the kernel resets it.  Only possible once TERM closed it.
                    kind = "reset in the closing listener's backlog after TERM" if started >= term_sent[0] \
                        else "FAIL handshake"
                    outcomes[kind] += 1
                    details.append(f"{kind}: {exc!r}")
                    gevent.sleep(0.05)
                    continue
                handshakes.append((started, generation_of[sock.getpeercert(binary_form=True)]))
                reused = False
            count += 1
            # Every tenth request takes 0.1 s, so that signals find requests in flight.
            path = f"/slow?s=0.1&c={n}" if count % 10 == 0 else f"/?c={n}"
            try:
                sock.sendall(f"GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode())
                status, headers, body = read_response(sock, timeout=15)
            except (Closed, OSError) as exc:
                got = exc.got if isinstance(exc, Closed) else 0
                kind = "idle_race" if reused and got == 0 else "FAIL request dropped"
                outcomes[kind] += 1
                details.append(f"{kind}: {path} reused={reused}: {exc!r}")
                sock.close()
                sock = None
                continue
            if status != 200:
                outcomes[f"FAIL status {status}"] += 1
            else:
                outcomes["ok"] += 1
                if path.startswith("/?"):
                    pids[json.loads(body)["pid"]] += 1
            reused = True
            if headers.get("connection", "").lower() == "close":
                outcomes["Connection: close, put away"] += 1
                sock.close()
                sock = None
        if sock is not None:
            sock.close()

    try:
        g.port = int(g.wait_for(r"Listening at: https://127\.0\.0\.1:(\d+)")[0])
        g.wait_for(r"greenhttps worker serving", 2)
        clients = [gevent.spawn(client, n) for n in range(CLIENTS)]
        gevent.sleep(0.6)
        reloads_done: list[float] = []
        for n in range(1, RELOADS + 1):
            install(certs[n])
            g.signal(signal.SIGHUP)
            g.wait_for(r"greenhttps worker serving", 2 * (n + 1), timeout=15)
            g.wait_for(r"Worker exiting \(pid: \d+\)", 2 * n, timeout=15)
            reloads_done.append(time.monotonic())
            gevent.sleep(0.5)
        term_sent[0] = time.monotonic()
        g.signal(signal.SIGTERM)
        assert g.proc.wait(15) == 0
        gevent.sleep(0.3)  # the clients see the refusals
        stop.set()
        gevent.joinall(clients, timeout=20)
    finally:
        stop.set()
        g.stop()
    log = g.text()
    report = "\n".join([f"{k}: {v}" for k, v in sorted(outcomes.items())] + details[:20])
    print(report)
    assert not [k for k in outcomes if k.startswith("FAIL")], report + "\n" + log[-3000:]
    assert outcomes["ok"] > 200, report
    assert outcomes["refused after TERM"] > 0, report  # the clients did run past the end
    # The unanswerable race is counted, not hidden; each connection can meet it at
    # most once per shutdown (one close of an idle connection), and it is rare.
    assert outcomes["idle_race"] <= CLIENTS, report
    # Every generation of workers served: the traffic went through each reload.
    booted = [int(p) for p in re.findall(r"Booting worker with pid: (\d+)", log)]
    assert len(booted) == 2 * (RELOADS + 1)
    for generation in range(RELOADS + 1):
        assert any(pids[p] for p in booted[2 * generation:2 * generation + 2]), (generation, pids, booted)
    # The certificate: each reload's new workers read the new files; a connection
    # opened after a reload completed presents that certificate or a later one, and
    # each one was seen.
    assert {gen for _, gen in handshakes} == set(range(RELOADS + 1))
    for started, gen in handshakes:
        assert gen >= sum(done <= started for done in reloads_done), (started, gen, reloads_done)
    assert "Traceback" not in log, log[-3000:]
    assert "Worker graceful timeout" not in log
