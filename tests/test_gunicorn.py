"""greenhttps.gunicorn.Worker under a real gunicorn arbiter (subprocesses).

Each test starts ``gunicorn -k greenhttps.gunicorn.Worker`` on 127.0.0.1 port 0 (the
arbiter logs the port it got), serving a small Flask app, and talks to it with
stdlib TLS sockets that verify the certificate.  Signals go to the arbiter, as an
operator (or systemd) would send them.
"""

from __future__ import annotations

import json
import os
import re
import signal
import ssl
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gevent
import gevent.socket
import gevent.subprocess
import pytest

from helpers import REPO_ROOT, raw_connect, read_response, read_until_eof

pytest.importorskip("gunicorn")
pytest.importorskip("flask")

pytestmark = [pytest.mark.timeout(30), pytest.mark.slow]

APP = '''
import os, time
from flask import Flask, request

app = Flask(__name__)

@app.route("/")
def index():
    env = request.environ
    return {"pid": os.getpid(), "scheme": request.scheme, "multiprocess": env["wsgi.multiprocess"],
            "software": env["SERVER_SOFTWARE"], "remote": env["REMOTE_ADDR"]}

@app.route("/slow")
def slow():
    time.sleep(float(request.args.get("s", "1")))  # cooperative: the worker is patched
    return "slept in %d" % os.getpid()

@app.route("/fixed")
def fixed():
    return "twelve bytes"

@app.route("/close")
def close():
    return "twelve bytes", 200, {"Connection": "close"}  # a framing field: not the fast path

@app.route("/stream")
def stream():
    return app.response_class((b"x" * n for n in (3, 4, 5)), mimetype="text/plain")  # no length: chunked

@app.route("/spin")
def spin():
    end = time.monotonic() + float(request.args.get("s", "3"))
    while time.monotonic() < end:  # blocks the event loop: no heartbeat
        pass
    return "spun"
'''


def _control_socket_args() -> list[str]:
    """Recent gunicorn opens a control socket in ~/.gunicorn; tests run several
    arbiters at once, so turn it off where the option exists."""
    from gunicorn.config import KNOWN_SETTINGS

    return ["--no-control-socket"] if any(s.name == "control_socket_disable" for s in KNOWN_SETTINGS) else []


class Gunicorn:
    def __init__(self, directory: Path, args: list[str], tls: bool) -> None:
        self.log = directory / f"gunicorn-{time.monotonic_ns()}.log"
        self.tls = tls
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT), str(directory), env.get("PYTHONPATH", "")])
        cmd = [sys.executable, "-m", "gunicorn", "-b", "127.0.0.1:0", "--log-level", "debug",
               "--error-logfile", str(self.log), *_control_socket_args(), *args, "app:app"]
        self.proc = gevent.subprocess.Popen(cmd, cwd=str(directory), env=env, start_new_session=True,
                                            stdout=gevent.subprocess.DEVNULL, stderr=gevent.subprocess.DEVNULL)
        self.port = 0

    def text(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""

    def wait_for(self, pattern: str, count: int = 1, timeout: float = 10) -> list[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = re.findall(pattern, self.text())
            if len(found) >= count:
                return found
            if self.proc.poll() is not None:
                break
            gevent.sleep(0.05)
        raise AssertionError(f"no {count}x {pattern!r} in the gunicorn log:\n{self.text()[-3000:]}")

    def worker_pids(self) -> list[int]:
        return [int(p) for p in re.findall(r"Booting worker with pid: (\d+)", self.text())]

    def signal(self, signum: int) -> None:
        os.kill(self.proc.pid, signum)

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait(5)


@pytest.fixture
def gunicorn(tmp_path: Path, server_cert_files: dict[str, str]) -> Iterator[Any]:
    (tmp_path / "app.py").write_text(APP)
    started: list[Gunicorn] = []

    def start(*args: str, workers: int = 2, tls: bool = True, worker: str = "greenhttps.gunicorn.Worker",
              probe: bool = True) -> Gunicorn:
        more = ["--certfile", server_cert_files["cert"], "--keyfile", server_cert_files["key"]] if tls else []
        g = Gunicorn(tmp_path, ["-k", worker, "-w", str(workers), *more, *args], tls)
        started.append(g)
        scheme = "https" if tls else "http"
        g.port = int(g.wait_for(rf"Listening at: {scheme}://127\.0\.0\.1:(\d+)")[0])
        # Every worker must be serving (its signal handlers installed) before a test
        # signals the arbiter: a worker still booting would miss a SIGTERM.
        if worker.startswith("greenhttps."):
            g.wait_for(r"greenhttps worker serving", workers)
        deadline = time.monotonic() + 10
        while probe:  # (without: a worker that wants a PROXY header first)
            try:
                request(g, "/", timeout=2)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                gevent.sleep(0.1)
        return g

    yield start
    for g in started:
        g.stop()


def connect(g: Gunicorn, ctx: ssl.SSLContext | None = None, timeout: float = 5) -> Any:
    if not g.tls:
        return raw_connect(g.port, timeout=timeout)
    return raw_connect(g.port, tls=True, ssl_context=ctx or _verifying_context(), timeout=timeout)


_CTX: list[ssl.SSLContext] = []


def _verifying_context() -> ssl.SSLContext:
    return _CTX[0]


@pytest.fixture(autouse=True)
def _client_ctx(client_ssl_context: ssl.SSLContext) -> Iterator[None]:
    _CTX[:] = [client_ssl_context]  # verifies the chain and the name "localhost"
    yield
    _CTX.clear()


def request(g: Gunicorn, path: str, *, timeout: float = 5, close: bool = True) -> Any:
    sock = connect(g, timeout=timeout)
    try:
        extra = b"Connection: close\r\n" if close else b""
        sock.sendall(b"GET " + path.encode() + b" HTTP/1.1\r\nHost: localhost\r\n" + extra + b"\r\n")
        return read_response(sock, timeout=timeout)
    finally:
        sock.close()


def test_flask_over_tls_with_two_workers(gunicorn: Any) -> None:
    g = gunicorn(workers=2)
    pids = set(g.worker_pids())
    assert len(pids) == 2
    seen = set()
    for _ in range(10):
        resp = request(g, "/")
        assert resp.status == 200
        body = json.loads(resp.body)
        assert body["scheme"] == "https"
        assert body["multiprocess"] is True
        assert body["software"].startswith("greenhttps/")
        assert body["remote"] == "127.0.0.1"
        seen.add(body["pid"])
    assert seen <= pids
    # Keep-alive: several requests on one connection, served by one worker.
    sock = connect(g)
    answers = []
    for _ in range(3):
        sock.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        answers.append(json.loads(read_response(sock).body)["pid"])
    sock.close()
    assert len(set(answers)) == 1


def test_unpatched_worker(gunicorn: Any) -> None:
    g = gunicorn(workers=1, worker="greenhttps.gunicorn.UnpatchedWorker")
    body = json.loads(request(g, "/").body)
    assert body["scheme"] == "https" and body["pid"] == g.worker_pids()[0]
    g.signal(signal.SIGTERM)
    assert g.proc.wait(10) == 0
    assert "Traceback" not in g.text()


def test_plain_http_without_certfile(gunicorn: Any) -> None:
    g = gunicorn(workers=1, tls=False)
    body = json.loads(request(g, "/").body)
    assert body["scheme"] == "http"
    assert body["multiprocess"] is False


def test_sigterm_lets_the_request_in_flight_finish(gunicorn: Any) -> None:
    g = gunicorn("--graceful-timeout", "5", "--keep-alive", "30", workers=2)
    idle = connect(g, timeout=10)  # an idle keep-alive connection is closed at once
    idle.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
    assert read_response(idle).status == 200
    sock = connect(g, timeout=10)
    sock.sendall(b"GET /slow?s=1 HTTP/1.1\r\nHost: localhost\r\n\r\n")
    gevent.sleep(0.3)  # the request is in a worker now
    started = time.monotonic()
    g.signal(signal.SIGTERM)
    assert read_until_eof(idle, timeout=0.9, reset_ok=True) == b""
    idle.close()
    resp = read_response(sock, timeout=10)
    sock.close()
    assert resp.status == 200
    assert resp.body.startswith(b"slept in ")
    assert resp.get("connection") == b"close"  # the worker is going away
    assert g.proc.wait(10) == 0
    assert time.monotonic() - started < 6
    log = g.text()
    assert "Worker graceful timeout" not in log
    assert "Traceback" not in log, log


def test_graceful_timeout_cuts_off_slow_requests(gunicorn: Any) -> None:
    g = gunicorn("--graceful-timeout", "1", workers=1)
    sock = connect(g, timeout=10)
    sock.sendall(b"GET /slow?s=8 HTTP/1.1\r\nHost: localhost\r\n\r\n")
    gevent.sleep(0.3)
    started = time.monotonic()
    g.signal(signal.SIGTERM)
    with pytest.raises((OSError, AssertionError)):  # closed without a response
        read_response(sock, timeout=8)
    sock.close()
    assert g.proc.wait(10) == 0
    # Cut off after about graceful_timeout: by the worker itself or, if the arbiter's
    # own clock for the same timeout runs out first, by its SIGKILL.
    assert time.monotonic() - started < 5


def test_sigquit_exits_at_once(gunicorn: Any) -> None:
    g = gunicorn(workers=2)
    sock = connect(g, timeout=10)
    sock.sendall(b"GET /slow?s=8 HTTP/1.1\r\nHost: localhost\r\n\r\n")
    gevent.sleep(0.3)
    started = time.monotonic()
    g.signal(signal.SIGQUIT)
    g.proc.wait(8)
    assert time.monotonic() - started < 4
    sock.close()


def test_max_requests_restarts_the_worker(gunicorn: Any) -> None:
    g = gunicorn("--max-requests", "3", "--max-requests-jitter", "0", workers=1)
    first = g.worker_pids()[0]
    # start() already made one request.
    pids = []
    for _ in range(2):
        pids.append(json.loads(request(g, "/").body)["pid"])
    assert pids == [first, first]
    g.wait_for(r"Booting worker with pid", 2)
    g.wait_for(r"Autorestarting worker after current request")
    deadline = time.monotonic() + 10
    while True:  # the new worker answers once it is up
        try:
            pid = json.loads(request(g, "/").body)["pid"]
            break
        except (OSError, AssertionError):
            if time.monotonic() > deadline:
                raise
            gevent.sleep(0.1)
    assert pid != first
    assert pid == g.worker_pids()[1]
    assert "Traceback" not in g.text()


def test_sighup_replaces_workers_cleanly(gunicorn: Any) -> None:
    g = gunicorn(workers=2)
    old = set(g.worker_pids())
    g.signal(signal.SIGHUP)
    g.wait_for(r"greenhttps worker serving", 4)
    new = set(g.worker_pids()) - old
    assert len(new) == 2
    g.wait_for(r"Worker exiting \(pid: \d+\)", 2)
    deadline = time.monotonic() + 10
    while True:
        pid = json.loads(request(g, "/").body)["pid"]
        if pid in new:
            break
        assert time.monotonic() < deadline, "old workers still serving"
        gevent.sleep(0.1)
    assert "Traceback" not in g.text()


def test_heartbeat_keeps_a_busy_but_cooperative_worker_alive(gunicorn: Any) -> None:
    g = gunicorn("--timeout", "1", workers=1)
    pid = g.worker_pids()[0]
    resp = request(g, "/slow?s=2.5", timeout=10)  # longer than --timeout, but yielding
    assert resp.status == 200
    assert resp.body == b"slept in %d" % pid
    assert "WORKER TIMEOUT" not in g.text()
    # A worker that blocks its event loop stops notifying: the arbiter kills it.
    with pytest.raises((OSError, AssertionError)):
        request(g, "/spin?s=4", timeout=8)
    g.wait_for(r"WORKER TIMEOUT \(pid:%d\)" % pid)


def test_tls_options_from_gunicorn_settings(server_cert_files: dict[str, str], ca_file: str) -> None:
    """gunicorn's TLS settings become greenhttps options that create_server accepts."""
    from gunicorn.config import Config

    import greenhttps
    from greenhttps.gunicorn import tls_options

    cfg = Config()
    assert tls_options(cfg) is None  # no certfile: plain HTTP
    cfg.set("certfile", server_cert_files["cert"])
    cfg.set("keyfile", server_cert_files["key"])
    opts = tls_options(cfg)
    assert opts == {"cert": server_cert_files["cert"], "key": server_cert_files["key"]}
    cfg.set("ca_certs", ca_file)
    cfg.set("cert_reqs", int(ssl.CERT_REQUIRED))
    cfg.set("ciphers", "ECDHE+AESGCM")
    opts = tls_options(cfg)
    assert opts is not None
    assert opts["ca"] == ca_file and opts["ciphers"] == "ECDHE+AESGCM"
    assert opts["request_cert"] is True and opts["reject_unauthorized"] is True
    greenhttps.create_server(opts)  # loads: the mapping is complete and valid
    cfg.set("cert_reqs", int(ssl.CERT_OPTIONAL))
    opts = tls_options(cfg)
    assert opts is not None and opts["reject_unauthorized"] is False


def test_unix_socket_listener(gunicorn: Any, tmp_path: Path) -> None:
    """A worker serves every socket the arbiter gives it, Unix ones included."""
    import socket as stdlib_socket

    from helpers import wrap_client

    path = str(tmp_path / "g.sock")
    g = gunicorn("-b", f"unix:{path}", workers=1)
    raw = gevent.socket.socket(stdlib_socket.AF_UNIX, stdlib_socket.SOCK_STREAM)
    raw.settimeout(5)
    raw.connect(path)
    sock = wrap_client(raw, _verifying_context(), "localhost")
    sock.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
    body = json.loads(read_response(sock).body)
    sock.close()
    assert body["scheme"] == "https"
    assert body["pid"] == g.worker_pids()[0]


# ------------------------------------------------------ behind a proxy


def ask(g: Gunicorn, extra: bytes = b"", *, sock: Any = None) -> dict[str, Any]:
    """GET / with the ``extra`` header lines; the app's JSON answer."""
    own = sock is None
    sock = connect(g) if own else sock
    try:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n" + extra + b"Connection: close\r\n\r\n")
        resp = read_response(sock)
    finally:
        if own:
            sock.close()
    assert resp.status == 200, resp
    return json.loads(resp.body)  # type: ignore[no-any-return]


FORWARDED = b"X-Forwarded-For: 198.51.100.7\r\nX-Forwarded-Proto: http\r\n"


def test_forwarded_allow_ips(gunicorn: Any) -> None:
    """``--forwarded-allow-ips``: a listed peer's X-Forwarded-For/-Proto are believed
    (REMOTE_ADDR, wsgi.url_scheme); anyone else's are not."""
    trusting = gunicorn("--forwarded-allow-ips", "127.0.0.1", workers=1)
    body = ask(trusting, FORWARDED)
    assert (body["remote"], body["scheme"]) == ("198.51.100.7", "http")
    assert ask(trusting)["remote"] == "127.0.0.1"  # no header: the peer
    wary = gunicorn("--forwarded-allow-ips", "10.0.0.0/8", workers=1)
    body = ask(wary, FORWARDED)
    assert (body["remote"], body["scheme"]) == ("127.0.0.1", "https")


def test_secure_scheme_headers(gunicorn: Any, tmp_path: Path) -> None:
    """``secure_scheme_headers`` (config file only): plain HTTP behind a TLS-terminating
    proxy is https when the proxy says so in the named header."""
    config = tmp_path / "conf.py"
    config.write_text('secure_scheme_headers = {"X-SCHEME": "https"}\nforwarded_allow_ips = "*"\n')
    g = gunicorn("-c", str(config), workers=1, tls=False)
    assert ask(g)["scheme"] == "http"
    assert ask(g, b"X-Scheme: https\r\n")["scheme"] == "https"
    assert ask(g, b"X-Forwarded-Proto: https\r\n")["scheme"] == "http"  # not a scheme header here
    resp = request(g, "/")  # and a conflicting pair would be a 400, as in gunicorn
    assert resp.status == 200


def _proxied(g: Gunicorn, header: bytes) -> Any:
    from helpers import wrap_client

    raw = gevent.socket.create_connection(("127.0.0.1", g.port), timeout=5)
    raw.sendall(header)
    return wrap_client(raw, _verifying_context(), "localhost")


def test_proxy_protocol(gunicorn: Any) -> None:
    """``--proxy-protocol v2``: the header (before TLS) names the client; a peer in
    ``proxy_allow_ips`` (gunicorn's default 127.0.0.1) must send one."""
    from test_proxy_protocol import V1, v2

    g = gunicorn("--proxy-protocol", "v2", workers=1, probe=False)
    assert ask(g, sock=_proxied(g, v2(src="203.0.113.9", sport=4444)))["remote"] == "203.0.113.9"
    with pytest.raises(OSError):
        connect(g)  # no header from a trusted peer: no TLS either
    raw = gevent.socket.create_connection(("127.0.0.1", g.port), timeout=5)
    raw.sendall(V1)  # a version 1 header where v2 was asked for
    assert read_until_eof(raw, timeout=5, reset_ok=True) == b""
    raw.close()
    assert "Traceback" not in g.text()


def test_proxy_allow_ips(gunicorn: Any) -> None:
    """``--proxy-allow-from``: a header from any other peer closes the connection
    with nothing served; that peer without a header is served as itself."""
    from test_proxy_protocol import V1

    g = gunicorn("--proxy-protocol", "--proxy-allow-from", "10.0.0.0/8", workers=1)  # the probe got in
    assert ask(g)["remote"] == "127.0.0.1"
    raw = gevent.socket.create_connection(("127.0.0.1", g.port), timeout=5)
    raw.sendall(V1)
    assert read_until_eof(raw, timeout=5, reset_ok=True) == b""
    raw.close()
    star = gunicorn("--proxy-protocol", "v1", "--proxy-allow-from", "*", workers=1, probe=False)
    assert ask(star, sock=_proxied(star, V1))["remote"] == "203.0.113.7"


@pytest.mark.needs_haproxy
def test_behind_haproxy(gunicorn: Any, tmp_path: Path) -> None:
    """The README's production setup: HAProxy (``send-proxy-v2``, health checks with
    ``check-send-proxy``) in front of two workers, TLS end to end, gunicorn's access
    log naming the client."""
    from test_proxy_protocol_haproxy import CLIENT_ADDRESS, _client, haproxy

    access = tmp_path / "access.log"
    g = gunicorn("--proxy-protocol", "v2", "--access-logfile", str(access), "--access-logformat", "%(h)s %(r)s %(s)s",
                 workers=2, probe=False)
    backend = f"127.0.0.1:{g.port} send-proxy-v2 check check-send-proxy inter 200ms"
    with haproxy(tmp_path, backend) as port:
        seen = set()
        for _ in range(6):
            sock = _client(port, _verifying_context())
            body = ask(g, sock=sock)
            sock.close()
            assert body["remote"] == CLIENT_ADDRESS and body["scheme"] == "https"
            seen.add(body["pid"])
        assert seen <= set(g.worker_pids())
    deadline = time.monotonic() + 5  # a line is written once its response is out
    while len(access.read_text().splitlines()) < 6 and time.monotonic() < deadline:
        gevent.sleep(0.05)
    assert access.read_text().splitlines() == [f"{CLIENT_ADDRESS} GET / HTTP/1.1 200"] * 6
    assert "Traceback" not in g.text()


# ------------------------------------------------------ gunicorn's other settings


def test_keepalive(gunicorn: Any) -> None:
    """``--keep-alive N``: an idle connection is closed after N seconds (and the
    response says so); ``--keep-alive 0``: no keep-alive at all, as in gunicorn."""
    g = gunicorn("--keep-alive", "1", workers=1)
    sock = connect(g, timeout=10)
    sock.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
    resp = read_response(sock)
    assert resp.get("connection") == b"keep-alive" and resp.get("keep-alive") == b"timeout=1"
    started = time.monotonic()
    assert read_until_eof(sock, timeout=8, reset_ok=True) == b""
    assert 0.8 < time.monotonic() - started < 4
    sock.close()
    off = gunicorn("--keep-alive", "0", workers=1)
    sock = connect(off)
    sock.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
    assert read_response(sock).get("connection") == b"close"
    assert read_until_eof(sock, timeout=2, reset_ok=True) == b""
    sock.close()


def _status(g: Gunicorn, request_bytes: bytes) -> int:
    sock = connect(g)
    try:
        sock.sendall(request_bytes)
        return int(read_response(sock).status)
    finally:
        sock.close()


def test_limit_request_line(gunicorn: Any) -> None:
    """``--limit-request-line``: a longer request line is refused with 414, as gunicorn."""
    g = gunicorn("--limit-request-line", "100", workers=1)
    line = b"GET /?" + b"a" * 70 + b" HTTP/1.1\r\n"
    assert len(line) - 2 <= 100
    assert _status(g, line + b"Host: localhost\r\n\r\n") == 200
    assert _status(g, b"GET /?" + b"a" * 100 + b" HTTP/1.1\r\nHost: localhost\r\n\r\n") == 414


def test_limit_request_fields(gunicorn: Any) -> None:
    """``--limit-request-fields``: more header fields than that are refused (431)."""
    g = gunicorn("--limit-request-fields", "5", workers=1)
    fields = b"".join(b"X-%d: 1\r\n" % i for i in range(3))
    assert _status(g, b"GET / HTTP/1.1\r\nHost: localhost\r\n" + fields + b"\r\n") == 200
    fields = b"".join(b"X-%d: 1\r\n" % i for i in range(8))
    assert _status(g, b"GET / HTTP/1.1\r\nHost: localhost\r\n" + fields + b"\r\n") == 431


def test_limit_request_field_size(gunicorn: Any) -> None:
    """``--limit-request-field_size``: a longer field is refused (431); a limit above
    the server's own 16 KiB head bound raises that bound too."""
    g = gunicorn("--limit-request-field_size", "100", workers=1)
    assert _status(g, b"GET / HTTP/1.1\r\nHost: localhost\r\nX-A: " + b"a" * 90 + b"\r\n\r\n") == 200
    assert _status(g, b"GET / HTTP/1.1\r\nHost: localhost\r\nX-A: " + b"a" * 100 + b"\r\n\r\n") == 431
    big = gunicorn("--limit-request-field_size", "30000", workers=1)
    assert _status(big, b"GET / HTTP/1.1\r\nHost: localhost\r\nCookie: " + b"a" * 20000 + b"\r\n\r\n") == 200
    assert _status(big, b"GET / HTTP/1.1\r\nHost: localhost\r\nCookie: " + b"a" * 30000 + b"\r\n\r\n") == 431


def test_worker_connections(gunicorn: Any) -> None:
    """``--worker-connections 2``: a third connection waits (in the listen backlog,
    as with gunicorn's gevent pool) until one of the two open ones closes."""
    g = gunicorn("--worker-connections", "2", "--keep-alive", "30", workers=1)
    held = []
    for _ in range(2):
        sock = connect(g, timeout=10)
        sock.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        assert read_response(sock).status == 200
        held.append(sock)
    third = gevent.spawn(ask, g)
    gevent.sleep(1.0)
    assert not third.ready()  # not served: not even accepted
    held.pop().close()
    assert third.get(timeout=5)["remote"] == "127.0.0.1"
    held.pop().close()


def test_access_log_format(gunicorn: Any, tmp_path: Path) -> None:
    """gunicorn's access log, through its own logger and ``access_log_format``."""
    access = tmp_path / "access.log"
    g = gunicorn("--access-logfile", str(access), "--access-logformat",
                 '%(h)s|%(r)s|%(s)s|%(b)s|%(a)s|%({x-test}i)s|%(m)s|%(U)s|%(q)s', workers=1)
    sock = connect(g)
    sock.sendall(b"GET /?x=1 HTTP/1.1\r\nHost: localhost\r\nUser-Agent: tester/1\r\nX-Test: yes\r\n"
                 b"Connection: close\r\n\r\n")
    resp = read_response(sock)
    sock.close()
    deadline = time.monotonic() + 5
    while "tester/1" not in access.read_text() and time.monotonic() < deadline:
        gevent.sleep(0.05)
    line = [entry for entry in access.read_text().splitlines() if "tester/1" in entry]
    assert line == [f"127.0.0.1|GET /?x=1 HTTP/1.1|200|{len(resp.body)}|tester/1|yes|GET|/|x=1"]


def _access_lines(g: Gunicorn, access: Path) -> list[str]:
    sock = connect(g)
    for method, path in (("GET", "/stream"), ("HEAD", "/stream"), ("GET", "/fixed"), ("HEAD", "/fixed"),
                         ("GET", "/close")):
        sock.sendall(f"{method} {path} HTTP/1.1\r\nHost: localhost\r\nUser-Agent: bytes-test\r\n\r\n".encode())
        assert read_response(sock, method).status == 200
    sock.close()
    deadline = time.monotonic() + 5
    while access.read_text().count("bytes-test") < 5 and time.monotonic() < deadline:
        gevent.sleep(0.05)
    return [line.split("|", 1)[1] for line in access.read_text().splitlines() if "bytes-test" in line]


def test_access_log_bytes_as_gunicorn_counts_them(gunicorn: Any, tmp_path: Path) -> None:
    """``%(b)s`` and ``%(B)s`` are the body bytes sent, as gunicorn's own ``resp.sent``:
    a chunked body counts what went out (not ``-``), HEAD counts 0.  Compared line by
    line with gunicorn's gevent worker serving the same requests."""
    pytest.importorskip("gevent")
    lines = {}
    for worker in ("gevent", "greenhttps.gunicorn.Worker"):
        access = tmp_path / f"access-{worker}.log"
        g = gunicorn("--access-logfile", str(access), "--access-logformat", "%(a)s|%(r)s|%(s)s|%(b)s|%(B)s",
                     workers=1, worker=worker)
        lines[worker] = _access_lines(g, access)
        g.stop()
    assert lines["greenhttps.gunicorn.Worker"] == [
        "GET /stream HTTP/1.1|200|12|12", "HEAD /stream HTTP/1.1|200|0|0",
        "GET /fixed HTTP/1.1|200|12|12", "HEAD /fixed HTTP/1.1|200|0|0",
        "GET /close HTTP/1.1|200|12|12",  # counted before 'finish' writes the line (was 0)
    ]
    assert lines["greenhttps.gunicorn.Worker"] == lines["gevent"]
