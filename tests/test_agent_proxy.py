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
import sys
from typing import Any, Callable

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
    with pytest.raises(errors.InvalidArgumentError, match="socks5"):
        greenhttps.Agent(proxy="socks5://127.0.0.1:1080")
    with pytest.raises(errors.InvalidArgumentError, match="socks5"):
        greenhttps.request("https://localhost:1/", proxy="socks5://127.0.0.1:1080")
    assert greenhttps.Agent().get_name({"host": "a", "port": 1, "proxy": "p:3128"}).endswith(":proxy=http://p:3128")
