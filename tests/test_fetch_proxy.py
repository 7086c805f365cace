"""Proxies: fetch() and Agent(proxy=...) through real HTTP proxies, and curl's environment rules.

Two real proxies, each run as a child process, and every proxy test runs against
both: ``pproxy`` (PyPI, in the test extra) and ``tinyproxy`` (the Debian package
``tinyproxy-bin``; skipped with a reason where it is not installed, failed in CI).  HTTP
``CONNECT`` tunnels for https: origins (TLS to the origin inside the tunnel) and
absolute-form forwarding for http: origins, with and without credentials.  Their
logs name each upstream connection or request, which is how a test knows the
request really went through the proxy.  Origins are greenhttps servers on 127.0.0.1.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import gevent
import gevent.socket
import gevent.subprocess
import pytest

import greenhttps
import helpers
from greenhttps import _fetch, _proxy, errors

pytest.importorskip("pproxy")

pytestmark = pytest.mark.timeout(60)


class Proxy:
    """A running proxy: its kind, its URL (with credentials when it wants them), its log."""

    def __init__(self, kind: str, url: str, log: Path) -> None:
        self.kind = kind
        self.url = url
        self.log = log

    def tunnels_to(self, port: int) -> int:
        """How often the proxy went to the origin at ``port`` so far: pproxy logs
        each upstream connection (``... -> host:port``), tinyproxy each request it
        relays (``Request (...): CONNECT host:port`` or ``GET http://host:port/``)."""
        gevent.sleep(0.1)  # the proxy writes its log line after it has connected
        text = self.log.read_text(errors="replace")
        if self.kind == "pproxy":
            pattern = rf" -> \S+:{port}$"
        else:
            pattern = rf"Request \(file descriptor \d+\): (CONNECT \S+:{port} |[A-Z]+ http://[^/]+:{port}/)"
        return sum(1 for line in text.splitlines() if re.search(pattern, line))


def _start_pproxy(port: int, credentials: str | None, log: Path) -> gevent.subprocess.Popen[bytes]:
    listen = f"http://127.0.0.1:{port}" + (f"#{credentials}" if credentials else "")
    with open(log, "wb") as out:
        # --auth 0: ask every connection for credentials (by default pproxy trusts
        # an address that authenticated once for 30 days).
        return gevent.subprocess.Popen([sys.executable, "-u", "-m", "pproxy", "-l", listen, "-v", "--auth", "0"],
                                       stdout=out, stderr=out)


def _start_tinyproxy(port: int, credentials: str | None, log: Path) -> gevent.subprocess.Popen[bytes]:
    conf = log.with_suffix(".conf")
    lines = [f"Port {port}", "Listen 127.0.0.1", "Timeout 30", "LogLevel Connect", f'LogFile "{log}"',
             "MaxClients 100", "Allow 127.0.0.1"]
    if credentials:
        lines.append("BasicAuth " + " ".join(credentials.split(":", 1)))
    conf.write_text("\n".join(lines) + "\n")
    log.touch()
    return gevent.subprocess.Popen(["tinyproxy", "-d", "-c", str(conf)], stdout=gevent.subprocess.DEVNULL,
                                   stderr=gevent.subprocess.DEVNULL)


@pytest.fixture(params=["pproxy", "tinyproxy"])
def start_proxy(request: pytest.FixtureRequest) -> Iterator[Callable[..., Proxy]]:
    """``start_proxy(credentials=None) -> Proxy``: the proxy on 127.0.0.1, HTTP only."""
    kind: str = request.param
    if kind == "tinyproxy" and helpers.which("tinyproxy") is None:
        reason = "tinyproxy not installed (Debian: apt-get install tinyproxy-bin)"
        if os.environ.get("CI"):
            pytest.fail(reason + ": CI must have every peer the tests talk to")
        pytest.skip(reason)
    launch = _start_pproxy if kind == "pproxy" else _start_tinyproxy
    procs: list[gevent.subprocess.Popen[bytes]] = []
    tmp = tempfile.TemporaryDirectory(prefix=f"greenhttps-{kind}-")

    def start(credentials: str | None = None) -> Proxy:
        for attempt in range(5):  # a port free a moment ago may be taken: try another
            port = helpers.free_port()
            log = Path(tmp.name, f"proxy-{len(procs)}-{attempt}.log")
            proc = launch(port, credentials, log)
            procs.append(proc)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and proc.poll() is None:
                try:
                    gevent.socket.create_connection(("127.0.0.1", port), timeout=1).close()
                except OSError:
                    gevent.sleep(0.05)
                    continue
                auth = f"{credentials}@" if credentials else ""
                return Proxy(kind, f"http://{auth}127.0.0.1:{port}", log)
        raise helpers.PeerError(f"{kind} did not start: {log.read_text()[-2000:]}")

    yield start
    for agent in [*_fetch._TUNNEL_AGENTS.values(), *_fetch._FORWARD_AGENTS.values()]:
        agent.destroy()
    _fetch._TUNNEL_AGENTS.clear()
    _fetch._FORWARD_AGENTS.clear()
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(timeout=5)
    tmp.cleanup()


@pytest.fixture
def no_env_proxies(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("https_proxy", "http_proxy", "all_proxy", "no_proxy", "REQUEST_METHOD"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)


def _echo(req: Any, res: Any) -> None:
    res.end(f"{req.method} {req.url} host={req.headers.get('host')} "
            f"proxy-auth={req.headers.get('proxy-authorization')}")


# ------------------------------------------------------------------ https: through CONNECT


def test_https_origin_through_connect_tunnel(start_proxy: Any, serve: Callable[..., int], ca_pem: bytes,
                                             no_env_proxies: None) -> None:
    """TLS to the origin inside the tunnel (verified against the origin's certificate,
    SNI ``localhost``); the tunnel is pooled: three fetches, one CONNECT."""
    proxy = start_proxy()
    port = serve(_echo)
    for _ in range(3):
        res = greenhttps.fetch(f"https://localhost:{port}/a?b=1", proxy=proxy.url, ca=ca_pem)
        assert res.text() == f"GET /a?b=1 host=localhost:{port} proxy-auth=None"
    assert proxy.tunnels_to(port) == 1
    assert res.timings.reused


def test_tunnel_certificate_is_the_origins(start_proxy: Any, serve: Callable[..., int], other_ca: Any,
                                           no_env_proxies: None) -> None:
    """A CA that did not sign the origin's certificate is refused through the tunnel too."""
    proxy = start_proxy()
    port = serve(_echo)
    with pytest.raises(errors.CertificateError):
        greenhttps.fetch(f"https://localhost:{port}/", proxy=proxy.url, ca=other_ca.cert_pem.bytes())


def test_proxy_credentials_and_407(start_proxy: Any, serve: Callable[..., int], ca_pem: bytes,
                                   no_env_proxies: None) -> None:
    proxy = start_proxy("alice:s3cret")
    port = serve(_echo)
    ok = greenhttps.fetch(f"https://127.0.0.1:{port}/", proxy=proxy.url, ca=ca_pem)
    assert ok.text().startswith("GET / ") and "proxy-auth=None" in ok.text()  # not leaked to the origin
    bare = proxy.url.replace("alice:s3cret@", "")
    with pytest.raises(errors.ProxyError) as info:
        greenhttps.fetch(f"https://127.0.0.1:{port}/", proxy=bare, ca=ca_pem)
    assert info.value.status == 407 and info.value.code == "ERR_PROXY_AUTH_REQUIRED"
    assert info.value.proxy == bare and bare in str(info.value) and "s3cret" not in str(info.value)
    with pytest.raises(errors.ProxyError):
        greenhttps.fetch(f"https://127.0.0.1:{port}/", proxy=proxy.url.replace("s3cret", "wrong"), ca=ca_pem)


def test_refused_proxy_names_the_proxy(serve: Callable[..., int], ca_pem: bytes, no_env_proxies: None) -> None:
    closed = helpers.free_port()
    port = serve(_echo)
    with pytest.raises(errors.ConnectionRefusedError) as info:
        greenhttps.fetch(f"https://127.0.0.1:{port}/", proxy=f"http://127.0.0.1:{closed}", ca=ca_pem)
    assert info.value.code == "ECONNREFUSED" and f"proxy http://127.0.0.1:{closed}" in str(info.value)
    with pytest.raises(errors.InvalidArgumentError, match="socks5"):
        greenhttps.fetch(f"https://127.0.0.1:{port}/", proxy="socks5://127.0.0.1:1080")


def test_tunnel_to_an_origin_that_is_not_there(start_proxy: Any, ca_pem: bytes, no_env_proxies: None) -> None:
    """A proxy that cannot reach the origin: tinyproxy answers 500 (a ProxyError with
    that status), pproxy closes the connection (a reset); either names the proxy, and
    no fd is left behind."""
    proxy = start_proxy()
    closed = helpers.free_port()
    fds = helpers.open_fds()
    for _ in range(3):
        expected = errors.ProxyError if proxy.kind == "tinyproxy" else errors.ConnectionResetError
        with pytest.raises(expected) as info:
            greenhttps.fetch(f"https://127.0.0.1:{closed}/", proxy=proxy.url, ca=ca_pem)
        assert proxy.url in str(info.value)
        if proxy.kind == "tinyproxy":
            assert info.value.status == 500 and info.value.code == "ERR_PROXY_TUNNEL"
    helpers.settle()
    assert helpers.open_fds() <= fds


# ------------------------------------------------------------------ http: in absolute-form


def test_http_origin_in_absolute_form(start_proxy: Any, make_server: Any, no_env_proxies: None) -> None:
    """A plain origin is asked through the proxy with the whole URL as the target; the
    origin sees its own Host, and the proxy's credentials stop at the proxy."""
    proxy = start_proxy("bob:pw")
    plain = make_server(_echo, tls=False)
    port = plain.address()["port"]
    res = greenhttps.fetch(f"http://localhost:{port}/p?q=1", proxy=proxy.url)
    assert res.text() == f"GET /p?q=1 host=localhost:{port} proxy-auth=None"
    assert proxy.tunnels_to(port) >= 1
    bare = greenhttps.fetch(f"http://localhost:{port}/p", proxy=proxy.url.replace("bob:pw@", ""))
    assert bare.status == 407  # a forwarding proxy's refusal is an HTTP response


def test_forwarded_connections_are_pooled_per_origin(start_proxy: Any, make_server: Any,
                                                     no_env_proxies: None) -> None:
    """pproxy turns a forwarding connection into a pipe to its first request's origin:
    a pooled proxy connection must never carry a request for another origin."""
    proxy = start_proxy()
    a = make_server(lambda req, res: res.end("A"), tls=False).address()["port"]
    b = make_server(lambda req, res: res.end("B"), tls=False).address()["port"]
    answers = [greenhttps.fetch(f"http://127.0.0.1:{port}/", proxy=proxy.url).text() for port in (a, b, a, b)]
    assert answers == ["A", "B", "A", "B"]
    if proxy.kind == "pproxy":  # one upstream connection each: each pool reused its own
        assert proxy.tunnels_to(a) == 1 and proxy.tunnels_to(b) == 1
    else:  # tinyproxy logs requests: two each
        assert proxy.tunnels_to(a) == 2 and proxy.tunnels_to(b) == 2


# ------------------------------------------------------------------ Agent(proxy=...)


def test_agent_with_a_proxy_tunnels_every_connection(start_proxy: Any, serve: Callable[..., int],
                                                     ca_pem: bytes) -> None:
    """``Agent(proxy=...)``: request()/get() through the tunnel, pooled per agent."""
    proxy = start_proxy()
    port = serve(_echo)
    agent = greenhttps.Agent(keep_alive=True, proxy=proxy.url, ca=ca_pem)
    try:
        for _ in range(2):
            res = greenhttps.get(f"https://localhost:{port}/via-agent", agent=agent)
            assert res.read().startswith(b"GET /via-agent")
        assert proxy.tunnels_to(port) == 1 and agent.total_socket_count == 1
        res = greenhttps.fetch(f"https://localhost:{port}/f", agent=agent, proxy=False)
        assert res.text().startswith("GET /f") and proxy.tunnels_to(port) == 1  # the agent's pool
    finally:
        agent.destroy()


def test_plain_agent_with_a_proxy_tunnels_too(start_proxy: Any, make_server: Any) -> None:
    """``greenhttps.http.Agent(proxy=...)``: plain HTTP inside a CONNECT tunnel (curl's
    ``--proxytunnel``; absolute-form is fetch()'s way, see README)."""
    proxy = start_proxy("u:p")
    port = make_server(_echo, tls=False).address()["port"]
    agent = greenhttps.http.Agent(keep_alive=True, proxy=proxy.url)
    try:
        res = greenhttps.http.get(f"http://localhost:{port}/plain", agent=agent)
        assert res.read() == f"GET /plain host=localhost:{port} proxy-auth=None".encode()
        assert proxy.tunnels_to(port) == 1
    finally:
        agent.destroy()


# ------------------------------------------------------------------ the environment


def test_fetch_honours_env_proxies_and_no_proxy(start_proxy: Any, serve: Callable[..., int], ca_pem: bytes,
                                                no_env_proxies: None, monkeypatch: pytest.MonkeyPatch) -> None:
    proxy = start_proxy()
    port = serve(_echo)
    url = f"https://localhost:{port}/env"
    monkeypatch.setenv("HTTPS_PROXY", proxy.url)
    assert greenhttps.fetch(url, ca=ca_pem).status == 200
    assert proxy.tunnels_to(port) == 1
    for agent in _fetch._TUNNEL_AGENTS.values():
        agent.destroy()
    monkeypatch.setenv("NO_PROXY", "example.org, .localhost")
    assert greenhttps.fetch(url, ca=ca_pem).status == 200
    assert greenhttps.fetch(url, ca=ca_pem, proxy=False).status == 200
    assert proxy.tunnels_to(port) == 1  # both direct
    monkeypatch.delenv("NO_PROXY")
    assert greenhttps.fetch(url, ca=ca_pem).status == 200
    assert proxy.tunnels_to(port) == 2
    # request()/get() do not read the environment (Node's https.request does not either).
    greenhttps.get(url, ca=ca_pem).read()
    assert proxy.tunnels_to(port) == 2


@pytest.mark.parametrize("host, no_proxy, direct", [
    ("example.com", "example.com", True),
    ("www.example.com", "example.com", True),
    ("www.example.com", ".example.com", True),
    ("example.com", ".example.com", True),  # curl >= 7.86 strips the dot
    ("notexample.com", "example.com", False),
    ("example.com.", "EXAMPLE.com", True),
    ("anything", "*", True),
    ("anything", "a, *.b", False),
    ("10.1.2.3", "10.0.0.0/8", True),
    ("11.1.2.3", "10.0.0.0/8", False),
    ("127.0.0.1", "127.0.0.1", True),
    ("[::1]", "::1", True),
    ("::1", "[::1]", True),
    ("host", "", False),
    ("host", "a b\thost", True),
])
def test_no_proxy_rules_are_curls(host: str, no_proxy: str, direct: bool) -> None:
    """curl's lib/noproxy.c: suffix matches on a label boundary, ``*``, IPs and CIDR."""
    assert _proxy.no_proxy_matches(host, no_proxy) is direct


def test_env_proxy_variables() -> None:
    env = {"https_proxy": "http://s:1", "HTTP_PROXY": "http://up:2", "all_proxy": "http://all:3"}
    assert _proxy.env_proxy("https://x/", env) == "http://s:1"
    assert _proxy.env_proxy("http://x/", env) == "http://up:2"
    # Under CGI, HTTP_PROXY comes from the client's Proxy: header (httpoxy): ignored.
    assert _proxy.env_proxy("http://x/", {**env, "REQUEST_METHOD": "GET"}) == "http://all:3"
    assert _proxy.env_proxy("http://x/", {"http_proxy": "http://low:4", "HTTP_PROXY": "http://up:2"}) \
        == "http://low:4"
    assert _proxy.env_proxy("https://x/", {**env, "NO_PROXY": "x"}) is None
    assert _proxy.env_proxy("https://x/", {}) is None
    assert _proxy.parse_proxy("proxy.local:3128").display == "http://proxy.local:3128"
    assert _proxy.parse_proxy("http://u%40x:p%3A@h").authorization == "Basic dUB4OnA6"  # u@x:p:
