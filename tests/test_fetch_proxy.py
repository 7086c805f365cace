"""Proxies: fetch() and Agent(proxy=...) through real proxies, and curl's environment rules.

Two real HTTP proxies, each run as a child process, and every proxy test runs against
both: ``pproxy`` (PyPI, in the test extra) and ``tinyproxy`` (the Debian package
``tinyproxy-bin``; skipped with a reason where it is not installed, failed in CI).  HTTP
``CONNECT`` tunnels for https: origins (TLS to the origin inside the tunnel) and
absolute-form forwarding for http: origins, with and without credentials.  Their
logs name each upstream connection or request, which is how a test knows the
request really went through the proxy.  Origins are greenhttps servers on 127.0.0.1.

https:// proxies (TLS to the proxy, the origin's TLS inside it) are two real ones
too: pproxy listening ``http+ssl``, and HAProxy terminating TLS in front of
tinyproxy; their certificate comes from a CA of their own (``proxy_ca``), so a test
shows which CA checked which certificate.  SOCKS5 is pproxy's.  Node 20 has no
proxy support to compare with (Node 24's, test/client-proxy/test-https-proxy-request-https-proxy.mjs,
is what the https:// proxy tests follow: TLS to the proxy, CONNECT, TLS to the origin).
"""

from __future__ import annotations

import hashlib
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
import trustme

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


def _start_pproxy(port: int, credentials: str | None, log: Path, *, scheme: str = "http",
                  pem: Path | None = None) -> gevent.subprocess.Popen[bytes]:
    listen = f"{scheme}://127.0.0.1:{port}" + (f"#{credentials}" if credentials else "")
    ssl = ["--ssl", str(pem)] if pem is not None else []
    with open(log, "wb") as out:
        # --auth 0: ask every connection for credentials (by default pproxy trusts
        # an address that authenticated once for 30 days).
        return gevent.subprocess.Popen([sys.executable, "-u", "-m", "pproxy", "-l", listen, "-v", "--auth", "0", *ssl],
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


def _start_haproxy_tls(port: int, credentials: str | None, log: Path, *, pem: Path,
                       procs: list[gevent.subprocess.Popen[bytes]]) -> gevent.subprocess.Popen[bytes]:
    """HAProxy terminating TLS on ``port`` in front of a tinyproxy (its log is ``log``)."""
    inner = helpers.free_port()
    procs.append(_start_tinyproxy(inner, credentials, log))
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # up before HAProxy sends it anything
        try:
            gevent.socket.create_connection(("127.0.0.1", inner), timeout=1).close()
            break
        except OSError:
            gevent.sleep(0.05)
    config = log.with_suffix(".haproxy.cfg")
    config.write_text(f"""
global
    maxconn 200
defaults
    mode tcp
    timeout connect 5s
    timeout client 30s
    timeout server 30s
frontend fe
    bind 127.0.0.1:{port} ssl crt {pem}
    default_backend be
backend be
    server tinyproxy 127.0.0.1:{inner}
""")
    with open(log.with_suffix(".haproxy.log"), "wb") as out:
        return gevent.subprocess.Popen(["haproxy", "-db", "-f", str(config)], stdout=out, stderr=out)


def _require(tool: str, package: str) -> None:
    if helpers.which(tool) is None:
        reason = f"{tool} not installed (Debian: apt-get install {package})"
        if os.environ.get("CI"):
            pytest.fail(reason + ": CI must have every peer the tests talk to")
        pytest.skip(reason)


class _Proxies:
    """Starts proxies (child processes) and stops them all, and fetch()'s pools, at the end."""

    def __init__(self, label: str) -> None:
        self.procs: list[gevent.subprocess.Popen[bytes]] = []
        self.tmp = tempfile.TemporaryDirectory(prefix=f"greenhttps-{label}-")

    def start(self, kind: str, scheme: str, launch: Callable[[int, Path], gevent.subprocess.Popen[bytes]],
              credentials: str | None, host: str = "127.0.0.1") -> Proxy:
        for attempt in range(5):  # a port free a moment ago may be taken: try another
            port = helpers.free_port()
            log = Path(self.tmp.name, f"proxy-{len(self.procs)}-{attempt}.log")
            proc = launch(port, log)
            self.procs.append(proc)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and proc.poll() is None:
                try:
                    gevent.socket.create_connection(("127.0.0.1", port), timeout=1).close()
                except OSError:
                    gevent.sleep(0.05)
                    continue
                auth = f"{credentials}@" if credentials else ""
                return Proxy(kind, f"{scheme}://{auth}{host}:{port}", log)
        raise helpers.PeerError(f"{kind} did not start: {log.read_text()[-2000:]}")

    def stop(self) -> None:
        for agent in [*_fetch._TUNNEL_AGENTS.values(), *_fetch._FORWARD_AGENTS.values()]:
            agent.destroy()
        _fetch._TUNNEL_AGENTS.clear()
        _fetch._FORWARD_AGENTS.clear()
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
                proc.wait(timeout=5)
        self.tmp.cleanup()


@pytest.fixture(params=["pproxy", "tinyproxy"])
def start_proxy(request: pytest.FixtureRequest) -> Iterator[Callable[..., Proxy]]:
    """``start_proxy(credentials=None) -> Proxy``: the proxy on 127.0.0.1, HTTP only."""
    kind: str = request.param
    if kind == "tinyproxy":
        _require("tinyproxy", "tinyproxy-bin")
    launch = _start_pproxy if kind == "pproxy" else _start_tinyproxy
    proxies = _Proxies(kind)
    yield lambda credentials=None: proxies.start(
        kind, "http", lambda port, log: launch(port, credentials, log), credentials)
    proxies.stop()


@pytest.fixture(scope="session")
def proxy_ca() -> trustme.CA:
    """The CA of the https:// proxies' certificate (not the origins' ``ca``)."""
    return trustme.CA()


@pytest.fixture(scope="session")
def proxy_pem(proxy_ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The https:// proxies' key and certificate, for ``localhost`` only (so that
    ``https://127.0.0.1:port`` is a name mismatch)."""
    path = tmp_path_factory.mktemp("proxy-tls") / "proxy.pem"
    proxy_ca.issue_cert("localhost").private_key_and_cert_chain_pem.write_to_path(str(path))
    return path


@pytest.fixture(params=["pproxy", "haproxy+tinyproxy"])
def start_tls_proxy(request: pytest.FixtureRequest, proxy_pem: Path) -> Iterator[Callable[..., Proxy]]:
    """``start_tls_proxy(credentials=None) -> Proxy``: an https:// proxy, ``https://localhost:port``."""
    label: str = request.param
    proxies = _Proxies(label.replace("+", "-"))
    if label == "pproxy":
        def start(credentials: str | None = None) -> Proxy:
            return proxies.start("pproxy", "https", lambda port, log: _start_pproxy(
                port, credentials, log, scheme="http+ssl", pem=proxy_pem), credentials, "localhost")
    else:
        _require("haproxy", "haproxy")
        _require("tinyproxy", "tinyproxy-bin")

        def start(credentials: str | None = None) -> Proxy:
            return proxies.start("tinyproxy", "https", lambda port, log: _start_haproxy_tls(
                port, credentials, log, pem=proxy_pem, procs=proxies.procs), credentials, "localhost")
    yield start
    proxies.stop()


@pytest.fixture
def start_socks_proxy() -> Iterator[Callable[..., Proxy]]:
    """``start_socks_proxy(credentials=None, scheme='socks5h') -> Proxy``: pproxy speaking SOCKS5."""
    proxies = _Proxies("socks")
    yield lambda credentials=None, scheme="socks5h": proxies.start(
        "pproxy", scheme, lambda port, log: _start_pproxy(port, credentials, log, scheme="socks5"), credentials)
    proxies.stop()


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
    assert info.value.proxy == f"http://127.0.0.1:{closed}"
    for scheme in ("https", "socks5", "socks5h"):
        with pytest.raises(errors.ConnectionRefusedError, match=f"proxy {scheme}://127.0.0.1:{closed}"):
            greenhttps.fetch(f"https://127.0.0.1:{port}/", proxy=f"{scheme}://127.0.0.1:{closed}", ca=ca_pem)
    with pytest.raises(errors.InvalidArgumentError, match="ftp"):
        greenhttps.fetch(f"https://127.0.0.1:{port}/", proxy="ftp://127.0.0.1:1080")


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


# ------------------------------------------------------------------ https:// proxies


def _servername(req: Any, res: Any) -> None:
    res.end(f"{req.method} {req.url} sni={req.socket.servername} host={req.headers.get('host')} "
            f"proxy-auth={req.headers.get('proxy-authorization')}")


def test_https_proxy_tls_inside_tls(start_tls_proxy: Any, serve: Callable[..., int], ca_pem: bytes,
                                    proxy_ca: trustme.CA, no_env_proxies: None) -> None:
    """TLS to the proxy (its certificate checked with ``proxy_ca``), CONNECT, then the
    origin's TLS inside that TLS: the origin's certificate checked with ``ca``, its
    name sent as SNI.  Pooled: three fetches, one tunnel, the inner connection reused."""
    proxy = start_tls_proxy()
    port = serve(_servername)
    for _ in range(3):
        res = greenhttps.fetch(f"https://localhost:{port}/t", proxy=proxy.url, proxy_ca=proxy_ca.cert_pem.bytes(),
                               ca=ca_pem)
        assert res.text() == f"GET /t sni=localhost host=localhost:{port} proxy-auth=None"
    assert proxy.tunnels_to(port) == 1
    assert res.timings.reused
    assert res.timings.tls is None  # reused: no handshake this time


def test_https_proxy_with_an_agent(start_tls_proxy: Any, serve: Callable[..., int], ca_pem: bytes,
                                   proxy_ca: trustme.CA, no_env_proxies: None) -> None:
    """``Agent(proxy='https://...', proxy_ca=...)``: request()/get() through it, one
    pooled connection (its liveness check at checkout runs through both TLS layers);
    the socket the response names is the origin's TLS (its peer certificate)."""
    proxy = start_tls_proxy("u:p")
    port = serve(_servername)
    agent = greenhttps.Agent(keep_alive=True, proxy=proxy.url, proxy_ca=proxy_ca.cert_pem.bytes(), ca=ca_pem)
    fds = helpers.open_fds()
    try:
        for index in range(3):
            res = greenhttps.get(f"https://localhost:{port}/a{index}", agent=agent)
            assert res.read() == f"GET /a{index} sni=localhost host=localhost:{port} proxy-auth=None".encode()
            assert res.socket.encrypted and res.socket.authorized
            assert res.socket.get_peer_certificate()["subject"] != ()
            gevent.sleep(0.05)
        assert proxy.tunnels_to(port) == 1 and agent.total_socket_count == 1
        name = next(iter(agent.free_sockets))  # the proxy, its credentials and its CA by digest
        assert f":proxy=https://localhost:{proxy.url.rsplit(':', 1)[1]}#" in name and "#ca=" in name
        assert "u:p" not in name
    finally:
        agent.destroy()
    helpers.settle()
    assert helpers.open_fds() <= fds


def test_cli_get_through_an_https_proxy_with_its_own_ca(start_tls_proxy: Any, serve: Callable[..., int],
                                                        ca_file: str, proxy_ca: trustme.CA, tmp_path: Path,
                                                        no_env_proxies: None) -> None:
    """``python -m greenhttps get --proxy https://... --proxy-cacert FILE --ca FILE``: the
    proxy's certificate is checked against ``--proxy-cacert`` and the origin's against
    ``--ca`` (curl's split of the two).  Without ``--proxy-cacert`` the proxy's
    certificate (not in the default roots) fails, and the error names the proxy."""
    proxy = start_tls_proxy()
    port = serve(_servername)
    proxy_cafile = tmp_path / "proxy-ca.pem"
    proxy_ca.cert_pem.write_to_path(str(proxy_cafile))
    env = {k: v for k, v in os.environ.items() if k.lower() not in ("https_proxy", "http_proxy", "all_proxy")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(helpers.REPO_ROOT), env.get("PYTHONPATH")]))
    env["XDG_CACHE_HOME"] = str(tmp_path)

    def get(*extra: str) -> gevent.subprocess.CompletedProcess[str]:
        return gevent.subprocess.run(
            [sys.executable, "-m", "greenhttps", "get", f"https://localhost:{port}/cli", "--ca", ca_file,
             "--proxy", proxy.url, *extra],
            stdout=gevent.subprocess.PIPE, stderr=gevent.subprocess.PIPE, env=env, cwd=str(tmp_path),
            timeout=60, universal_newlines=True, check=False)

    proc = get("--proxy-cacert", str(proxy_cafile))
    assert proc.returncode == 0, proc
    assert proc.stdout == f"GET /cli sni=localhost host=localhost:{port} proxy-auth=None"
    assert proxy.tunnels_to(port) == 1
    proc = get()
    assert proc.returncode == 1, proc
    assert "proxy" in proc.stderr.lower() and proxy.url.rsplit(":", 1)[1] in proc.stderr, proc.stderr
    assert "CERTIFICATE_VERIFY_FAILED" in proc.stderr or "certificate" in proc.stderr.lower(), proc.stderr
    assert proxy.tunnels_to(port) == 1  # the proxy refused at its own TLS: no second tunnel


def test_https_proxy_inner_tls_answers_for_the_origin(start_tls_proxy: Any, serve: Callable[..., int],
                                                      proxy_ca: trustme.CA, no_env_proxies: None) -> None:
    """The origin's TLS inside the proxy's never answers a TLS question with the
    proxy's layer: with ``reject_unauthorized=False`` and ``ca`` the *proxy's* CA
    (which does not vouch for the origin), ``authorized``/``authorization_error`` are
    what a direct connection says (the chain check reads the origin's chain, not the
    proxy's, which that CA would accept); the certificate chain is the origin's; a
    TLS attribute the inner layer does not define is refused rather than taken from
    the proxy's TLS below it."""
    proxy = start_tls_proxy()
    port = serve(_servername)
    seen = {}
    for label, via in (("direct", False), ("proxied", proxy.url)):
        agent = greenhttps.Agent(keep_alive=True, proxy=via, proxy_ca=proxy_ca.cert_pem.bytes(),
                                 ca=proxy_ca.cert_pem.bytes(), reject_unauthorized=False)
        try:
            res = greenhttps.get(f"https://localhost:{port}/c", agent=agent)
            res.read()
            seen[label] = (res.socket.authorized, res.socket.authorization_error)
            if label == "proxied":
                inner = res.socket._sock
                outer = inner._raw  # the proxy's TLS
                leaf = inner.getpeercert(binary_form=True)
                assert leaf != outer.getpeercert(binary_form=True)
                chain = inner.get_unverified_chain()
                assert chain and chain[0] == leaf
                assert inner.get_verified_chain()[:1] == [leaf]  # what OpenSSL holds, unverified here
                assert inner.compression() is None
                for name in ("do_handshake_on_connect", "selected_npn_protocol", "_context", "owner"):
                    assert hasattr(outer, name) or name == "owner"
                    with pytest.raises(AttributeError, match="layer below"):
                        getattr(inner, name)
                assert inner.fileno() == outer.fileno() >= 0  # socket-level: still the layer below's
        finally:
            agent.destroy()
    assert seen["direct"] == (False, "UNABLE_TO_VERIFY_LEAF_SIGNATURE")
    assert seen["proxied"] == seen["direct"]


def test_https_proxy_carries_large_bodies_both_ways(start_tls_proxy: Any, serve: Callable[..., int], ca_pem: bytes,
                                                    proxy_ca: trustme.CA, no_env_proxies: None) -> None:
    """Megabytes up and down through TLS inside TLS: many records per read and per
    write on both layers (the inner layer sends through the outer one's partial
    writes, and reads what the outer one decrypted ahead); a second round on the
    same pooled connection."""
    def sink(req: Any, res: Any) -> None:
        data = req.read()
        res.end(hashlib.sha256(data).hexdigest().encode() + b" " + bytes(range(256)) * 12_288)  # + 3 MiB

    port = serve(sink)
    proxy = start_tls_proxy()
    body = os.urandom(5 * 1024 * 1024 + 7)
    agent = greenhttps.Agent(keep_alive=True, proxy=proxy.url, proxy_ca=proxy_ca.cert_pem.bytes(), ca=ca_pem)
    try:
        for _ in range(2):
            res = greenhttps.fetch(f"https://localhost:{port}/up", method="POST", body=body, agent=agent)
            digest, _, tail = res.content.partition(b" ")
            assert digest.decode() == hashlib.sha256(body).hexdigest()
            assert tail == bytes(range(256)) * 12_288
        assert proxy.tunnels_to(port) == 1
    finally:
        agent.destroy()


def test_https_proxy_certificate_is_checked_with_proxy_ca(start_tls_proxy: Any, serve: Callable[..., int],
                                                          ca_pem: bytes, proxy_ca: trustme.CA, other_ca: Any,
                                                          no_env_proxies: None) -> None:
    """The proxy's certificate is checked with ``proxy_ca`` (else the default roots),
    never with the request's ``ca`` (the origin's), and against the proxy's own
    name: each refusal is a CertificateError naming the proxy, and leaves no fd."""
    proxy = start_tls_proxy()
    port = serve(_echo)
    url = f"https://localhost:{port}/"
    fds = helpers.open_fds()
    for _ in range(2):
        with pytest.raises(errors.CertificateError) as info:  # the origin's CA does not vouch for the proxy
            greenhttps.fetch(url, proxy=proxy.url, ca=ca_pem)
        assert info.value.code == "UNABLE_TO_VERIFY_LEAF_SIGNATURE"
        assert proxy.url in str(info.value) and info.value.proxy == proxy.url
        with pytest.raises(errors.CertificateError) as info:  # the certificate is for localhost only
            greenhttps.fetch(url, proxy=proxy.url.replace("localhost", "127.0.0.1"), proxy_ca=proxy_ca.cert_pem.bytes(),
                             ca=ca_pem)
        assert info.value.code == "ERR_TLS_CERT_ALTNAME_INVALID" and "proxy https://127.0.0.1:" in str(info.value)
        with pytest.raises(errors.CertificateError) as info:  # inside: the origin's certificate, the origin's CA
            greenhttps.fetch(url, proxy=proxy.url, proxy_ca=proxy_ca.cert_pem.bytes(), ca=other_ca.cert_pem.bytes())
        assert "proxy" not in str(info.value) and getattr(info.value, "proxy", None) is None
    assert proxy.tunnels_to(port) == 2  # the last two of each round reached the origin
    helpers.settle()
    assert helpers.open_fds() <= fds


def test_https_proxy_407_and_refused(start_tls_proxy: Any, serve: Callable[..., int], ca_pem: bytes,
                                     proxy_ca: trustme.CA, no_env_proxies: None) -> None:
    proxy = start_tls_proxy("alice:s3cret")
    port = serve(_echo)
    url = f"https://localhost:{port}/"
    ok = greenhttps.fetch(url, proxy=proxy.url, proxy_ca=proxy_ca.cert_pem.bytes(), ca=ca_pem)
    assert ok.text() == f"GET / host=localhost:{port} proxy-auth=None"  # credentials stop at the proxy
    bare = proxy.url.replace("alice:s3cret@", "")
    with pytest.raises(errors.ProxyError) as info:
        greenhttps.fetch(url, proxy=bare, proxy_ca=proxy_ca.cert_pem.bytes(), ca=ca_pem)
    assert info.value.status == 407 and info.value.code == "ERR_PROXY_AUTH_REQUIRED"
    assert info.value.proxy == bare and "s3cret" not in str(info.value)
    closed = helpers.free_port()
    with pytest.raises(errors.ConnectionRefusedError) as refused:
        greenhttps.fetch(url, proxy=f"https://localhost:{closed}", proxy_ca=proxy_ca.cert_pem.bytes(), ca=ca_pem)
    assert f"proxy https://localhost:{closed}" in str(refused.value)


def test_plain_origin_through_an_https_proxy(start_tls_proxy: Any, make_server: Any, proxy_ca: trustme.CA,
                                             no_env_proxies: None) -> None:
    """An http: origin through an https:// proxy: fetch() asks the proxy in
    absolute-form over TLS to it; ``greenhttps.http.Agent(proxy=...)`` tunnels (the
    bytes to the origin in clear inside the proxy's TLS)."""
    proxy = start_tls_proxy("bob:pw")
    port = make_server(_echo, tls=False).address()["port"]
    res = greenhttps.fetch(f"http://localhost:{port}/p?q=1", proxy=proxy.url, proxy_ca=proxy_ca.cert_pem.bytes())
    assert res.text() == f"GET /p?q=1 host=localhost:{port} proxy-auth=None"
    assert proxy.tunnels_to(port) == 1
    agent = greenhttps.http.Agent(keep_alive=True, proxy=proxy.url, proxy_ca=proxy_ca.cert_pem.bytes())
    try:
        for _ in range(2):
            got = greenhttps.http.get(f"http://localhost:{port}/t", agent=agent)
            assert got.read() == f"GET /t host=localhost:{port} proxy-auth=None".encode()
            assert not got.socket.encrypted  # to the origin: plain HTTP
        assert proxy.tunnels_to(port) == 2 and agent.total_socket_count == 1
    finally:
        agent.destroy()
    with pytest.raises(errors.CertificateError, match="proxy https://localhost"):
        greenhttps.fetch(f"http://localhost:{port}/p", proxy=proxy.url)  # no proxy_ca: the default roots


def test_https_proxy_that_never_speaks_tls_times_out(serve: Callable[..., int], ca_pem: bytes,
                                                     no_env_proxies: None) -> None:
    """A proxy that accepts and stays silent: the TLS handshake with it ends at the
    connect timeout, with an error naming the proxy, and leaves no fd."""
    silent = gevent.socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    accepted: list[Any] = []
    acceptor = gevent.spawn(lambda: accepted.append(silent.accept()[0]))
    fds = helpers.open_fds()
    try:
        start = time.monotonic()
        with pytest.raises(errors.TimeoutError, match="proxy https://127.0.0.1"):
            greenhttps.fetch(f"https://localhost:{serve(_echo)}/", proxy=f"https://127.0.0.1:{silent.getsockname()[1]}",
                             ca=ca_pem, connect_timeout=300)
        assert time.monotonic() - start < 3
    finally:
        acceptor.kill()
        for sock in accepted:
            sock.close()
        silent.close()
    helpers.settle()
    assert helpers.open_fds() <= fds + 1  # (the origin server's listener, opened meanwhile)


# ------------------------------------------------------------------ SOCKS5


def test_socks5_tunnels(start_socks_proxy: Any, serve: Callable[..., int], make_server: Any, ca_pem: bytes,
                        no_env_proxies: None) -> None:
    """``socks5h://`` hands the proxy the origin's name; ``socks5://`` resolves it
    here first (curl's two schemes; pproxy's log shows which it was given; ``family=4``
    so that the local answer is the address the origins listen on).  https: and
    http: origins both go through a tunnel, credentials by RFC 1929."""
    port = serve(_echo)
    plain = make_server(_echo, tls=False).address()["port"]
    for scheme, shown in (("socks5h", "localhost"), ("socks5", "127.0.0.1")):
        proxy = start_socks_proxy("u:p", scheme)
        for _ in range(2):
            res = greenhttps.fetch(f"https://localhost:{port}/s", proxy=proxy.url, ca=ca_pem, family=4)
            assert res.text() == f"GET /s host=localhost:{port} proxy-auth=None"
            res = greenhttps.fetch(f"http://localhost:{plain}/s", proxy=proxy.url, family=4)
            assert res.text() == f"GET /s host=localhost:{plain} proxy-auth=None"
        assert proxy.tunnels_to(port) == 1 and proxy.tunnels_to(plain) == 1  # pooled
        assert f"-> {shown}:{port}" in proxy.log.read_text()


def test_socks5_refusals_name_the_proxy(start_socks_proxy: Any, serve: Callable[..., int], ca_pem: bytes,
                                        no_env_proxies: None) -> None:
    """Wrong or missing credentials (pproxy closes the connection) and an origin the
    proxy cannot reach: errors naming the proxy, no fd left."""
    proxy = start_socks_proxy("u:p")
    port = serve(_echo)
    fds = helpers.open_fds()
    for url in (proxy.url.replace("u:p", "u:wrong"), proxy.url.replace("u:p@", "")):
        with pytest.raises(errors.NetworkError) as info:
            greenhttps.fetch(f"https://localhost:{port}/", proxy=url, ca=ca_pem)
        assert proxy.url.replace("u:p@", "") in str(info.value)
    with pytest.raises(errors.NetworkError) as info:
        greenhttps.fetch(f"https://127.0.0.1:{helpers.free_port()}/", proxy=proxy.url, ca=ca_pem)
    assert proxy.url.replace("u:p@", "") in str(info.value)
    helpers.settle()
    assert helpers.open_fds() <= fds


# ------------------------------------------------------------------ time limits (scripted proxies)


class _ClientLeft(Exception):
    pass


def _wait_for_close(sock: Any, seconds: float) -> None:
    """Wait ``seconds`` (what the client sends meanwhile goes unanswered), or until
    the client closes (then _ClientLeft: the handler ends, and its socket with it,
    so the test sees every fd closed)."""
    ends = time.monotonic() + seconds
    while (left := ends - time.monotonic()) > 0:
        sock.settimeout(left)
        try:
            if not sock.recv(4096):
                raise _ClientLeft
        except TimeoutError:
            return
        except OSError as exc:
            raise _ClientLeft from exc


def _trickle(sock: Any, data: bytes, pause: float) -> None:
    """``data`` a byte at a time, ``pause`` seconds apart."""
    for index, byte in enumerate(data):
        if index:
            _wait_for_close(sock, pause)
        sock.sendall(bytes([byte]))


def _scripted(handler: Callable[[Any], None]) -> Callable[[Any], None]:
    def handle(sock: Any) -> None:
        try:
            handler(sock)
        except _ClientLeft:
            pass
    return handle


@_scripted
def _trickling_connect_proxy(sock: Any) -> None:
    """An http:// proxy that takes the CONNECT and sends its 200 a byte every 0.1 s
    (about 4 s in all: each read gets a byte well within any per-read timeout)."""
    helpers.read_request_head(sock)
    _trickle(sock, b"HTTP/1.1 200 Connection established\r\n\r\n", 0.1)
    _wait_for_close(sock, 10)  # then the tunnel is silent


@_scripted
def _trickling_socks_proxy(sock: Any) -> None:
    """A SOCKS5 proxy answering each step a byte every 0.15 s."""
    sock.recv(3)  # greeting: version 5, one method, no authentication
    _trickle(sock, b"\x05\x00", 0.15)
    sock.settimeout(5)
    sock.recv(64)  # CONNECT
    _trickle(sock, b"\x05\x00\x00\x01\x7f\x00\x00\x01\x00\x50", 0.15)
    _wait_for_close(sock, 10)


def _slow_phases_proxy(ssl_context: Any) -> Callable[[Any], None]:
    """An https:// proxy that waits 0.7 s before its TLS handshake and 0.7 s before
    its 200, and then leaves the origin's handshake unanswered: each phase well
    within a 1 s timeout, all three together not."""
    def handle(sock: Any) -> None:
        gevent.sleep(0.7)
        try:
            tls = helpers.wrap_server(sock, ssl_context)
        except OSError:
            return
        try:
            helpers.read_request_head(tls)
            _wait_for_close(tls, 0.7)
            tls.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
            _wait_for_close(tls, 10)
        except (_ClientLeft, OSError):
            pass
        finally:
            tls.close()
    return handle


@pytest.mark.parametrize("kind", ["trickled CONNECT reply", "trickled SOCKS5 replies", "slow phases, https://"])
def test_connect_timeout_bounds_the_whole_proxy_dial(kind: str, script_server: Any, server_ssl_context: Any,
                                                     ca_pem: bytes, no_env_proxies: None) -> None:
    """``connect_timeout`` is one limit for everything a dial through a proxy does
    (lookup, connect, the proxy's TLS, CONNECT or SOCKS5, the origin's TLS), not a
    fresh one per phase or per read: a proxy that trickles its reply a byte at a
    time, or takes most of the limit in each phase, ends at the limit, ETIMEDOUT
    naming the proxy, no fd left.  (Per phase it took 2.4 s or more.)"""
    if kind.startswith("trickled CONNECT"):
        proxy = f"http://127.0.0.1:{script_server(_trickling_connect_proxy)}"
    elif kind.startswith("trickled SOCKS5"):
        proxy = f"socks5h://127.0.0.1:{script_server(_trickling_socks_proxy)}"
    else:
        proxy = f"https://localhost:{script_server(_slow_phases_proxy(server_ssl_context))}"
    agent = greenhttps.Agent(keep_alive=True, proxy=proxy, proxy_ca=ca_pem, ca=ca_pem, connect_timeout=1000)
    fds = helpers.open_fds()
    start = time.monotonic()
    try:
        with pytest.raises(errors.TimeoutError) as info, gevent.Timeout(8):
            greenhttps.get("https://localhost:9/", agent=agent)
        elapsed = time.monotonic() - start
    finally:
        agent.destroy()
    assert 0.9 < elapsed < 1.8, elapsed
    assert info.value.code == "ETIMEDOUT" and "1000 ms (the connect timeout)" in str(info.value)
    assert f"proxy {proxy}" in str(info.value) and info.value.proxy == proxy
    helpers.settle()
    assert helpers.open_fds() <= fds


@pytest.mark.parametrize("kind", ["http://", "https://", "socks5h://"])
def test_deadline_alone_bounds_a_dial_through_a_silent_proxy(kind: str, ca_pem: bytes,
                                                             no_env_proxies: None) -> None:
    """A proxy that accepts and never says a byte (no CONNECT reply, no TLS, no
    SOCKS5 answer) and no connect timeout: ``fetch(deadline=...)`` and
    ``request(deadline=...)`` still end at their deadline (before, the dial waited
    for ever), ETIMEDOUT, and leave no fd."""
    silent = gevent.socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)
    held: list[Any] = []
    acceptor = gevent.spawn(lambda: [held.append(silent.accept()[0]) for _ in range(16)])
    proxy = f"{kind}127.0.0.1:{silent.getsockname()[1]}"
    fds = helpers.open_fds()
    try:
        start = time.monotonic()
        with pytest.raises(errors.TimeoutError) as info, gevent.Timeout(8):
            greenhttps.fetch("https://localhost:9/", proxy=proxy, ca=ca_pem, deadline=800)
        assert 0.7 < time.monotonic() - start < 1.6
        assert str(info.value).startswith("fetch deadline of 800 ms exceeded: ") and info.value.code == "ETIMEDOUT"
        assert info.value.proxy == proxy
        start = time.monotonic()
        with pytest.raises(errors.TimeoutError) as info, gevent.Timeout(8):
            greenhttps.get("https://localhost:9/", proxy=proxy, ca=ca_pem, deadline=800, agent=False)
        assert 0.7 < time.monotonic() - start < 1.6
        assert "800 ms (the request deadline)" in str(info.value) and info.value.proxy == proxy
        for agent in _fetch._TUNNEL_AGENTS.values():
            agent.destroy()
        _fetch._TUNNEL_AGENTS.clear()
        helpers.settle()
        assert helpers.open_fds() <= fds + len(held)  # (the accepted ends the test holds)
    finally:
        acceptor.kill()
        for sock in held:
            sock.close()
        silent.close()


def test_socks5_edges_are_refused_clearly(script_server: Any, ca_pem: bytes, no_env_proxies: None) -> None:
    """RFC 1929 wants a user name of 1 to 255 bytes: an empty one (``socks5h://:pw@``)
    is refused before anything is sent, not sent with length 0.  A CONNECT reply
    whose version byte is not 5 is a ProtocolError naming the proxy (before, it was
    taken for success).  A refusal is a ProxyError with ``socks_reply`` (declared on
    the class: None for an HTTP proxy's)."""
    connections: list[bytes] = []

    def bad_version(sock: Any) -> None:
        connections.append(sock.recv(3))
        sock.sendall(b"\x05\x00")
        sock.recv(300)
        sock.sendall(b"\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00")  # version 0, "succeeded"
        _wait_for_close(sock, 10)

    def refusing(sock: Any) -> None:
        connections.append(sock.recv(3))
        sock.sendall(b"\x05\x00")
        sock.recv(300)
        sock.sendall(b"\x05\x05\x00\x01\x00\x00\x00\x00\x00\x00")  # 5: connection refused

    port = script_server(_scripted(bad_version))
    for url in (f"socks5h://:pw@127.0.0.1:{port}", f"socks5://:@127.0.0.1:{port}",
                f"socks5h://{'u' * 256}:pw@127.0.0.1:{port}"):
        with pytest.raises(errors.InvalidArgumentError, match="RFC 1929") as info:
            greenhttps.fetch("https://localhost:9/", proxy=url, ca=ca_pem)
        assert "pw" not in str(info.value) and "u" * 256 not in str(info.value)
    assert connections == []
    fds = helpers.open_fds()
    start = time.monotonic()
    with pytest.raises(errors.ProtocolError, match="version byte 0") as bad:
        greenhttps.fetch("https://localhost:9/", proxy=f"socks5h://127.0.0.1:{port}", ca=ca_pem,
                         connect_timeout=3000)
    assert time.monotonic() - start < 2 and bad.value.proxy == f"socks5h://127.0.0.1:{port}"
    with pytest.raises(errors.ProxyError) as refused:
        greenhttps.fetch("https://localhost:9/", proxy=f"socks5h://127.0.0.1:{script_server(refusing)}", ca=ca_pem)
    assert refused.value.socks_reply == 5 and refused.value.status is None
    assert "SOCKS5 reply 5 (connection refused)" in str(refused.value)
    long_label = "a" * 64 + ".example"  # beyond Python's IDNA codec: sent as is (curl too)
    with pytest.raises(errors.ProxyError, match=f"tunnel to {long_label}:443"):
        greenhttps.fetch(f"https://{long_label}/", proxy=f"socks5h://127.0.0.1:{script_server(refusing)}", ca=ca_pem)
    assert errors.ProxyError("x").socks_reply is None and "socks_reply" in (errors.ProxyError.__doc__ or "")
    helpers.settle(0.3)
    assert helpers.open_fds() <= fds + 2  # (the later scripted proxies' listeners)


def test_proxy_credentials_stay_out_of_messages_and_reprs() -> None:
    """A bad proxy URL's error, and a parsed one's repr, show no user name or
    password (a log line must not leak them)."""
    for url in ("http://alice:s3cret@proxy.example:99999", "socks5h://alice:s3cret@proxy.example:notaport",
                "alice:s3cret@proxy.example:70000", "https://alice:s3cret@:8080"):
        for call in (lambda: greenhttps.fetch("https://example.invalid/", proxy=url),
                     lambda: greenhttps.Agent(proxy=url), lambda: _proxy.parse_proxy(url)):
            with pytest.raises(errors.InvalidArgumentError) as info:
                call()
            text = str(info.value) + repr(info.value) + str(info.value.__cause__ or "")
            assert "s3cret" not in text and "alice" not in text and "***@" in text, text
    parsed = _proxy.parse_proxy("socks5://alice:s3cret@proxy.example:1080")
    assert parsed.credentials == ("alice", "s3cret")  # still there, for the handshake
    assert "s3cret" not in repr(parsed) and "alice" not in repr(parsed) and "proxy.example" in repr(parsed)
    assert "Basic" not in repr(_proxy.parse_proxy("http://alice:s3cret@proxy.example"))
    assert _proxy.without_credentials("http://a:b@h:1/x?y@z") == "http://***@h:1/x?y@z"
    assert _proxy.without_credentials("a:b@h:1") == "***@h:1"
    assert _proxy.without_credentials("http://h:1") == "http://h:1"


# ------------------------------------------------------------------ fetch()'s own pools


def test_fetch_tunnel_pools_are_bounded(serve: Callable[..., int], ca_pem: bytes, no_env_proxies: None,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """fetch() keeps one pool per proxy URL, the most recently used ones only: a
    crawler rotating through proxies does not keep an agent for each forever."""
    monkeypatch.setattr(_fetch, "_MAX_TUNNEL_AGENTS", 2)
    port = serve(_echo)
    _fetch._TUNNEL_AGENTS.clear()
    proxies = [f"http://127.0.0.1:{helpers.free_port()}" for _ in range(4)]
    try:
        for proxy in proxies + proxies[2:3]:
            with pytest.raises(errors.ConnectionRefusedError):
                greenhttps.fetch(f"https://127.0.0.1:{port}/", proxy=proxy, ca=ca_pem)
        assert list(_fetch._TUNNEL_AGENTS) == [proxies[3], proxies[2]]
    finally:
        for agent in _fetch._TUNNEL_AGENTS.values():
            agent.destroy()
        _fetch._TUNNEL_AGENTS.clear()


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
