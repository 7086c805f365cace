"""greenhttps behind a real HAProxy (Debian package ``haproxy``), TLS passing through.

HAProxy listens on 127.0.0.1 in ``mode tcp`` and relays to a greenhttps server with
``send-proxy-v2`` (or ``send-proxy``, v1); the TLS session is between the client and
greenhttps.  The client connects from 127.0.0.2 (any 127/8 address is loopback on
Linux), so the address HAProxy reports differs from HAProxy's own (127.0.0.1), and
the WSGI application must see the client's address and port.  Marked
``needs_haproxy``: skipped without haproxy, failed in CI (``.ci/run`` installs it).
"""

from __future__ import annotations

import contextlib
import json
import ssl
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable

import gevent
import gevent.socket
import gevent.subprocess
import pytest

import helpers
from greenhttps.wsgi import WSGIHandler

pytestmark = [pytest.mark.timeout(30), pytest.mark.needs_haproxy]

CLIENT_ADDRESS = "127.0.0.2"


def _app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    body = json.dumps({key: environ[key] for key in ("REMOTE_ADDR", "REMOTE_PORT", "wsgi.url_scheme")})
    start_response("200 OK", [("Content-Type", "application/json")])
    return [body.encode()]


@contextlib.contextmanager
def haproxy(directory: Path, backend: str, *, mode: str = "tcp", frontend: str = "") -> Iterator[int]:
    """Run ``haproxy -db`` relaying a fresh port to ``backend`` (a ``server`` line's
    address and options); yield the port.  Retries if the port was taken meanwhile."""
    log = directory / "haproxy.log"
    for _ in range(5):
        port = helpers.free_port()
        config = directory / "haproxy.cfg"
        config.write_text(f"""
global
    maxconn 200
defaults
    mode {mode}
    timeout connect 5s
    timeout client 30s
    timeout server 30s
frontend fe
    bind 127.0.0.1:{port}
{frontend}
    default_backend be
backend be
    server s {backend}
""")
        with open(log, "wb") as out:
            proc = gevent.subprocess.Popen(["haproxy", "-db", "-f", str(config)], stdout=out, stderr=out)
        deadline = time.monotonic() + 10
        up = False
        while proc.poll() is None and time.monotonic() < deadline:
            if _listening(port):
                up = True
                break
            gevent.sleep(0.05)
        if up:
            try:
                yield port
            finally:
                proc.kill()
                proc.wait(5)
            return
        proc.kill()
        proc.wait(5)
        if "Address already in use" not in log.read_text(errors="replace"):
            break
    raise AssertionError(f"haproxy did not start:\n{log.read_text(errors='replace')[-2000:]}")


def _listening(port: int) -> bool:
    """Is something listening on 127.0.0.1:``port``?  Read from /proc/net/tcp, not
    probed: a probe connection would reach the backend as a connection of its own."""
    wanted = f"0100007F:{port:04X}"
    with open("/proc/net/tcp") as table:
        return any(line.split()[1] == wanted and line.split()[3] == "0A" for line in list(table)[1:])


def _client(port: int, ctx: ssl.SSLContext | None) -> Any:
    raw = gevent.socket.create_connection(("127.0.0.1", port), timeout=5, source_address=(CLIENT_ADDRESS, 0))
    if ctx is None:
        return raw
    return helpers.wrap_client(raw, ctx, "localhost")


def _get(sock: Any, close: bool = False) -> dict[str, Any]:
    extra = b"Connection: close\r\n" if close else b""
    sock.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n" + extra + b"\r\n")
    resp = helpers.read_response(sock)
    assert resp.status == 200, resp
    return json.loads(resp.body)  # type: ignore[no-any-return]


@pytest.mark.parametrize("send_proxy", ["send-proxy-v2", "send-proxy"])
def test_tls_through_haproxy_gives_the_client_address(
    make_server: Callable[..., Any], tmp_path: Path, client_ssl_context: ssl.SSLContext, send_proxy: str
) -> None:
    srv = make_server(WSGIHandler(_app), proxy_protocol=True)
    errors: list[Any] = []
    srv.on("clientError", lambda err, sock: errors.append(err))
    with haproxy(tmp_path, f"127.0.0.1:{srv.address()['port']} {send_proxy}") as port:
        sock = _client(port, client_ssl_context)  # verifies greenhttps's certificate: TLS is end to end
        local_port = sock.getsockname()[1]
        for _ in range(3):  # keep-alive: the header is read once per connection
            env = _get(sock)
            assert env == {"REMOTE_ADDR": CLIENT_ADDRESS, "REMOTE_PORT": str(local_port), "wsgi.url_scheme": "https"}
        sock.close()
        other = _client(port, client_ssl_context)
        assert _get(other, close=True)["REMOTE_PORT"] == str(other.getsockname()[1])
        other.close()
    assert errors == []


def test_haproxy_health_checks_are_served_as_local(
    make_server: Callable[..., Any], tmp_path: Path, client_ssl_context: ssl.SSLContext
) -> None:
    """HAProxy's health checks with ``check-send-proxy`` carry a v2 LOCAL header: they
    are accepted ('connection' is emitted, the TLS handshake begins), and clients
    still get their own address."""
    srv = make_server(WSGIHandler(_app), proxy_protocol="v2")
    seen: list[Any] = []
    errors: list[Any] = []
    srv.on("connection", lambda sock: seen.append(sock.remote_address))
    srv.on("clientError", lambda err, sock: errors.append(err))
    backend = f"127.0.0.1:{srv.address()['port']} send-proxy-v2 check check-send-proxy inter 100ms"
    with haproxy(tmp_path, backend) as port:
        deadline = time.monotonic() + 5
        while len(seen) < 2 and time.monotonic() < deadline:
            gevent.sleep(0.05)
        sock = _client(port, client_ssl_context)
        assert _get(sock, close=True)["REMOTE_ADDR"] == CLIENT_ADDRESS
        sock.close()
    # The checks (at least two) came in and were accepted; each is closed by HAProxy
    # at once, so its address may be gone (None) by the time 'connection' asks.
    assert len(seen) >= 3 and set(seen) <= {"127.0.0.1", None, CLIENT_ADDRESS}, seen
    # A check closes without TLS: the errors say so, after the header was accepted.
    assert errors and all(err.code != "ERR_PROXY_PROTOCOL" and "TLS handshake" in str(err) for err in errors), errors


def test_haproxy_without_send_proxy_is_refused(
    make_server: Callable[..., Any], tmp_path: Path, client_ssl_context: ssl.SSLContext
) -> None:
    """A proxy that forgot ``send-proxy`` (a trusted peer sending none) gets no
    service: the spec forbids guessing, so the mistake shows at the first client
    instead of every client being logged (and trusted) as the proxy."""
    srv = make_server(WSGIHandler(_app), proxy_protocol=True)
    requests: list[Any] = []
    errors: list[Any] = []
    srv.on("request", lambda req, res: requests.append(req))
    srv.on("clientError", lambda err, sock: errors.append(err.code))
    with haproxy(tmp_path, f"127.0.0.1:{srv.address()['port']}") as port:
        with pytest.raises((OSError, TimeoutError)):
            _client(port, client_ssl_context)
    helpers.settle()
    assert requests == []
    assert errors == ["ERR_PROXY_PROTOCOL"]


def test_haproxy_http_mode_forwarded_headers(make_server: Callable[..., Any], tmp_path: Path) -> None:
    """HAProxy terminating HTTP (``mode http``, ``option forwardfor``, X-Forwarded-Proto
    set) in front of a plain greenhttps server whose WSGI adapter trusts it: the
    application sees the client's address and https, and a client's own
    X-Forwarded-For claim (HAProxy appends to it) is not believed."""
    handler = WSGIHandler(_app, forwarded_allow_ips="127.0.0.1")
    srv = make_server(handler, tls=False)
    frontend = "    option forwardfor\n    http-request set-header X-Forwarded-Proto https"
    with haproxy(tmp_path, f"127.0.0.1:{srv.address()['port']}", mode="http", frontend=frontend) as port:
        sock = _client(port, None)
        sock.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\nX-Forwarded-For: 6.6.6.6\r\n"
                     b"X-Forwarded-Proto: http\r\nConnection: close\r\n\r\n")
        resp = helpers.read_response(sock)
        sock.close()
    assert resp.status == 200
    env = json.loads(resp.body)
    assert env == {"REMOTE_ADDR": CLIENT_ADDRESS, "REMOTE_PORT": "", "wsgi.url_scheme": "https"}
