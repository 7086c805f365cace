"""request()/get() through proxies: the environment's (``Agent(proxy_env=True)``,
``GREENHTTPS_USE_ENV_PROXY=1``), a request's own ``proxy=``, and the pool key that
keeps proxied and direct connections apart.

Node 20 has no proxy support in ``https.request`` (Node 24's ``NODE_USE_ENV_PROXY``
and ``Agent({proxyEnv})`` are what this follows), so there is no Node run to compare
with here; the proxies are the real ones of tests/test_fetch_proxy.py (pproxy, and
tinyproxy where installed), whose logs show each tunnel they opened.
"""

from __future__ import annotations

import os
import socket as stdlib_socket
import sys
import time
from typing import Any, Callable

import gevent
import pytest
import test_fetch_proxy

import greenhttps
import greenhttps.http
import helpers
from greenhttps import errors

pytest.importorskip("pproxy")

# The real proxies and the origin handler of the fetch proxy tests (fixtures by name).
start_proxy = test_fetch_proxy.start_proxy
no_env_proxies = test_fetch_proxy.no_env_proxies
_echo = test_fetch_proxy._echo

pytestmark = pytest.mark.timeout(60)


def test_proxy_env_reads_https_proxy_and_no_proxy(start_proxy: Any, serve: Callable[..., int], ca_pem: bytes,
                                                  no_env_proxies: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """``Agent(proxy_env=True)``: HTTPS_PROXY at each request, NO_PROXY by curl's
    rules; the proxied and the direct connection are pooled apart (two names)."""
    proxy = start_proxy()
    port = serve(_echo)
    url = f"https://localhost:{port}/env"
    agent = greenhttps.Agent(keep_alive=True, proxy_env=True, ca=ca_pem)
    try:
        monkeypatch.setenv("HTTPS_PROXY", proxy.url)
        for _ in range(2):
            assert greenhttps.get(url, agent=agent).read() == f"GET /env host=localhost:{port} proxy-auth=None".encode()
        assert proxy.tunnels_to(port) == 1  # pooled: one tunnel for both
        monkeypatch.setenv("no_proxy", "example.org,localhost")
        assert greenhttps.get(url, agent=agent).read().startswith(b"GET /env")
        assert proxy.tunnels_to(port) == 1  # direct
        names = sorted(agent.free_sockets)
        assert len(names) == 2 and names[1] == names[0] + ":proxy=" + proxy.url
    finally:
        agent.destroy()
    # The default: request()/get() do not read the environment.
    plain = greenhttps.Agent(keep_alive=True, ca=ca_pem)
    monkeypatch.delenv("no_proxy")
    try:
        assert plain.proxy_env is False
        greenhttps.get(url, agent=plain).read()
        assert proxy.tunnels_to(port) == 1
    finally:
        plain.destroy()


def test_use_env_proxy_variable(start_proxy: Any, serve: Callable[..., int], ca_file: str,
                                no_env_proxies: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """``GREENHTTPS_USE_ENV_PROXY=1`` (Node's ``NODE_USE_ENV_PROXY``) turns
    ``proxy_env`` on for agents made while it is set, the global agent of a fresh
    program included: ``greenhttps.get(url)`` in a child process goes through the proxy."""
    proxy = start_proxy()
    port = serve(_echo)
    monkeypatch.setenv("GREENHTTPS_USE_ENV_PROXY", "1")
    assert greenhttps.Agent().proxy_env is True and greenhttps.Agent(proxy_env=False).proxy_env is False
    script = ("import sys, greenhttps; res = greenhttps.get(sys.argv[1], ca=open(sys.argv[2], 'rb').read()); "
              "print(res.read().decode())")
    env = {**os.environ, "HTTPS_PROXY": proxy.url, "PYTHONPATH": str(helpers.REPO_ROOT)}
    done = helpers.run_command([sys.executable, "-c", script, f"https://localhost:{port}/child", ca_file], env=env)
    assert done.stdout.decode().strip() == f"GET /child host=localhost:{port} proxy-auth=None", done.stderr
    assert proxy.tunnels_to(port) == 1
    monkeypatch.setenv("GREENHTTPS_USE_ENV_PROXY", "0")
    assert greenhttps.Agent().proxy_env is False


def test_a_request_names_its_proxy(start_proxy: Any, serve: Callable[..., int], ca_pem: bytes,
                                   no_env_proxies: None) -> None:
    """``get(url, proxy=...)`` through one agent that also goes direct: separate
    pools; ``proxy=False`` goes direct past an ``Agent(proxy=...)``; credentials
    are part of the name (by digest, never in clear)."""
    proxy = start_proxy("u:p")
    port = serve(_echo)
    url = f"https://localhost:{port}/own"
    agent = greenhttps.Agent(keep_alive=True, ca=ca_pem)
    try:
        for _ in range(2):
            assert greenhttps.get(url, agent=agent, proxy=proxy.url).read().startswith(b"GET /own")
            assert greenhttps.get(url, agent=agent).read().startswith(b"GET /own")
        assert proxy.tunnels_to(port) == 1 and agent.total_socket_count == 2
        names = sorted(agent.free_sockets)
        assert ":proxy=http://127.0.0.1:" in names[1] and "u:p" not in names[1] and "#" in names[1]
    finally:
        agent.destroy()
    proxied = greenhttps.Agent(keep_alive=True, ca=ca_pem, proxy=proxy.url)
    try:
        assert greenhttps.get(url, agent=proxied, proxy=False).read().startswith(b"GET /own")
        assert proxy.tunnels_to(port) == 1 and list(proxied.free_sockets)[0].endswith(":")  # no proxy segment
    finally:
        proxied.destroy()


def test_proxy_env_mapping_for_plain_http(start_proxy: Any, make_server: Any, no_env_proxies: None) -> None:
    """``proxy_env`` as a mapping (Node's ``proxyEnv: {...}``): ``HTTP_PROXY`` for an
    http: origin, which goes through a CONNECT tunnel (as ``http.Agent(proxy=...)``)."""
    proxy = start_proxy()
    port = make_server(_echo, tls=False).address()["port"]
    agent = greenhttps.http.Agent(keep_alive=True, proxy_env={"HTTP_PROXY": proxy.url})
    try:
        res = greenhttps.http.get(f"http://localhost:{port}/m", agent=agent)
        assert res.read() == f"GET /m host=localhost:{port} proxy-auth=None".encode()
        assert proxy.tunnels_to(port) == 1
        res = greenhttps.http.get(f"http://localhost:{port}/m", agent=agent, proxy=False)
        assert res.read().startswith(b"GET /m") and proxy.tunnels_to(port) == 1
    finally:
        agent.destroy()


def test_bad_proxy_values_are_refused_before_anything_is_sent(serve: Callable[..., int]) -> None:
    with pytest.raises(errors.InvalidArgumentError, match="proxy_env"):
        greenhttps.Agent(proxy_env="yes")
    with pytest.raises(errors.InvalidArgumentError, match="ftp"):
        greenhttps.Agent(proxy="ftp://127.0.0.1:1080")
    with pytest.raises(errors.InvalidArgumentError, match="socks4"):
        greenhttps.request("https://localhost:1/", proxy="socks4://127.0.0.1:1080")
    agent = greenhttps.Agent()
    assert agent.get_name({"host": "a", "port": 1, "proxy": "p:3128"}).endswith(":proxy=http://p:3128")
    # Default ports (Node's for https:, curl's for SOCKS) and the scheme in the pool key.
    assert agent.get_name({"host": "a", "port": 1, "proxy": "https://p"}).endswith(":proxy=https://p:443")
    assert agent.get_name({"host": "a", "port": 1, "proxy": "socks5h://p"}).endswith(":proxy=socks5h://p:1080")
    with_ca = agent.get_name({"host": "a", "port": 1, "proxy": "https://p", "proxy_ca": b"x"})
    assert "#ca=" in with_ca and with_ca != agent.get_name({"host": "a", "port": 1, "proxy": "https://p",
                                                             "proxy_ca": b"y"})


# ------------------------------------------------------------------ the proxy's own address


class _Lookup:
    """A ``lookup`` (Node's option) that answers ``proxy.test`` with ``addresses``
    (``(host, port)``: each answer names its own port), counting its calls; other
    names fail.  ``delay``: seconds each call takes (cooperatively)."""

    def __init__(self, *addresses: tuple[str, int], delay: float = 0.0) -> None:
        self.addresses = addresses
        self.delay = delay
        self.calls: list[str] = []

    def __call__(self, host: str, port: int, family: int, kind: int) -> list[tuple[Any, ...]]:
        self.calls.append(host)
        if self.delay:
            gevent.sleep(self.delay)
        if host != "proxy.test":
            raise stdlib_socket.gaierror(stdlib_socket.EAI_NONAME, "Name or service not known")
        return [(stdlib_socket.AF_INET, kind, 6, "", address) for address in self.addresses]


def _port_of(proxy: Any) -> int:
    return int(proxy.url.rsplit(":", 1)[1])


def test_proxy_name_goes_through_the_agents_dns_cache(start_proxy: Any, serve: Callable[..., int], ca_pem: bytes,
                                                      no_env_proxies: None) -> None:
    """The proxy's name is resolved as an origin's is: by the request's ``lookup``
    through the agent's DNS cache -- two tunnels (two origins), one lookup; with
    ``dns_cache=False``, one lookup each.  The origin's name is never looked up
    here (the proxy resolves it), and ``res.timings.dns`` is the proxy's lookup."""
    proxy = start_proxy()
    lookup = _Lookup(("127.0.0.1", _port_of(proxy)))
    ports = [serve(_echo), serve(_echo)]
    for cache, expected in ((True, 1), (False, 2)):
        lookup.calls.clear()
        agent = greenhttps.Agent(keep_alive=True, proxy=f"http://proxy.test:{_port_of(proxy)}", lookup=lookup,
                                 ca=ca_pem, dns_cache=cache)
        try:
            for port in ports:
                res = greenhttps.get(f"https://localhost:{port}/d", agent=agent)
                assert res.read() == f"GET /d host=localhost:{port} proxy-auth=None".encode()
                assert res.timings.dns is not None
            assert lookup.calls == ["proxy.test"] * expected
            assert agent.total_socket_count == 2
        finally:
            agent.destroy()


def test_proxy_addresses_are_raced(start_proxy: Any, serve: Callable[..., int], ca_pem: bytes,
                                   no_env_proxies: None) -> None:
    """Happy Eyeballs for the proxy's addresses: the first one silent (a listener
    whose backlog is full), the second the proxy: connected one attempt delay later,
    not at the connect timeout.  With ``auto_select_family=False`` only the first is
    tried, and the connect timeout's error names the proxy."""
    proxy = start_proxy()
    dead = stdlib_socket.socket()
    dead.bind(("127.0.0.1", 0))
    dead.listen(0)
    fillers = helpers.fill_backlog(dead)
    try:
        lookup = _Lookup(dead.getsockname(), ("127.0.0.1", _port_of(proxy)))
        port = serve(_echo)
        agent = greenhttps.Agent(proxy="http://proxy.test:1", lookup=lookup, ca=ca_pem, connect_timeout=3000,
                                 auto_select_family_attempt_timeout=100)
        start = time.monotonic()
        res = greenhttps.get(f"https://localhost:{port}/race", agent=agent)
        assert res.read().startswith(b"GET /race") and time.monotonic() - start < 2.0
        assert proxy.tunnels_to(port) == 1
        agent.destroy()
        single = greenhttps.Agent(proxy="http://proxy.test:1", lookup=lookup, ca=ca_pem, connect_timeout=300,
                                  auto_select_family=False)
        with pytest.raises(errors.TimeoutError, match=r"proxy http://proxy.test:1\)"):
            greenhttps.get(f"https://localhost:{port}/single", agent=single).read()
        single.destroy()
    finally:
        for sock in fillers:
            sock.close()
        dead.close()


def test_connect_timeout_covers_the_proxys_lookup(serve: Callable[..., int], ca_pem: bytes,
                                                  no_env_proxies: None) -> None:
    """A resolver that takes 5 s and a 300 ms connect timeout: ETIMEDOUT naming the
    lookup and the proxy after about 300 ms, not 5 s."""
    lookup = _Lookup(("127.0.0.1", 1), delay=5)
    agent = greenhttps.Agent(proxy="http://proxy.test:3128", lookup=lookup, ca=ca_pem, connect_timeout=300)
    start = time.monotonic()
    with pytest.raises(errors.TimeoutError) as info:
        greenhttps.get(f"https://localhost:{serve(_echo)}/", agent=agent).read()
    assert 0.25 < time.monotonic() - start < 2.0
    assert "getaddrinfo proxy.test" in str(info.value) and "proxy http://proxy.test:3128" in str(info.value)
    assert info.value.code == "ETIMEDOUT" and info.value.proxy == "http://proxy.test:3128"
    agent.destroy()
