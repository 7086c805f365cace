"""Reloads and shutdowns that drop nothing, and certificates rotated by a reload,
under load, with a real gunicorn arbiter (issue 18, items 3 and 4).

Clients that never retry a request loop keep-alive requests through three SIGHUP
reloads and a final SIGTERM while the certificate files are replaced before each
reload.  Every outcome is counted by kind; the test then says which kinds are
allowed, and when.

The clients (tests/keepalive_client.py) never send a request twice; they put
away a pooled connection the server closed before using it, as every pooling
client does, and count every outcome by kind.

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
(``reset in the closing listener's backlog``), allowed only after TERM.
Everything else must be zero.
"""

from __future__ import annotations

import json
import os
import re
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
from keepalive_client import Clients
from test_gunicorn import APP, Gunicorn

pytest.importorskip("gunicorn")
pytest.importorskip("flask")

pytestmark = [pytest.mark.timeout(60), pytest.mark.slow]

CLIENTS = 8
RELOADS = 3


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
    pids: Counter[int] = Counter()
    # (connected at, certificate generation) for every connection made.
    handshakes: list[tuple[float, int]] = []

    def on_connect(sock: Any, started: float) -> None:
        handshakes.append((started, generation_of[sock.getpeercert(binary_form=True)]))

    def on_response(path: str, body: bytes) -> None:
        if path.startswith("/?"):
            pids[json.loads(body)["pid"]] += 1

    # Every tenth request takes 0.1 s, so that the signals find requests in flight.
    def path(n: int, count: int) -> str:
        return f"/slow?s=0.1&c={n}" if count % 10 == 0 else f"/?c={n}"

    clients = None
    try:
        g.port = int(g.wait_for(r"Listening at: https://127\.0\.0\.1:(\d+)")[0])
        g.wait_for(r"greenhttps worker serving", 2)
        clients = Clients(g.port, client_ssl_context, CLIENTS, path=path, on_connect=on_connect,
                          on_response=on_response)
        gevent.sleep(0.6)
        reloads_done: list[float] = []
        for n in range(1, RELOADS + 1):
            install(certs[n])
            g.signal(signal.SIGHUP)
            g.wait_for(r"greenhttps worker serving", 2 * (n + 1), timeout=15)
            g.wait_for(r"Worker exiting \(pid: \d+\)", 2 * n, timeout=15)
            reloads_done.append(time.monotonic())
            gevent.sleep(0.5)
        clients.closed_at = time.monotonic()  # the arbiter closes its listener on TERM
        g.signal(signal.SIGTERM)
        assert g.proc.wait(15) == 0
        gevent.sleep(0.3)  # the clients meet the refusals
        clients.stop()
    finally:
        if clients is not None:
            clients.stop()
        g.stop()
    log = g.text()
    outcomes, report = clients.outcomes, clients.report()
    print(report)
    assert clients.failures() == [], report + "\n" + log[-3000:]
    assert outcomes["ok"] > 200, report
    assert outcomes["refused after close"] > 0, report  # the clients did run past the end
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
