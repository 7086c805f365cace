"""The agent's DNS cache (issue 22 item 3): answers kept for a TTL, failures
(ENOTFOUND) for a shorter one, at most ``dns_cache_size`` names, one lookup in flight
per name, and ``dns_cache=False`` to ask every time.

Lookups are counted with a ``lookup`` function (Node's option, which the cache
serves like gevent's resolver); requests go to a real plain-HTTP server on
127.0.0.1 through an Agent without keep-alive, so that every request dials (and
would resolve).  Node has no DNS cache: there is no Node test to mirror.
"""

from __future__ import annotations

import socket as stdlib_socket
import time
from typing import Any, Callable

import gevent
import gevent.socket
import pytest

import greenhttps
from greenhttps import errors

pytestmark = pytest.mark.timeout(30)


class Counting:
    """A ``lookup`` answering every name with 127.0.0.1 (or failing, ``fail=True``),
    counting the calls per name; ``delay`` seconds per call (cooperatively)."""

    def __init__(self, fail: bool = False, delay: float = 0.0) -> None:
        self.calls: dict[str, int] = {}
        self.fail = fail
        self.delay = delay

    def __call__(self, host: str, port: int, family: int, kind: int) -> list[tuple[Any, ...]]:
        self.calls[host] = self.calls.get(host, 0) + 1
        if self.delay:
            gevent.sleep(self.delay)
        if self.fail:
            raise stdlib_socket.gaierror(stdlib_socket.EAI_NONAME, "Name or service not known")
        return [(stdlib_socket.AF_INET, kind, 6, "", ("127.0.0.1", port))]


@pytest.fixture
def port(make_server: Callable[..., Any]) -> int:
    return int(make_server(tls=False).address()["port"])


def _get(agent: Any, port: int, lookup: Any, host: str = "cached.test") -> bytes:
    res = greenhttps.http.get({"host": host, "port": port, "agent": agent, "lookup": lookup})
    return bytes(res.read())


def test_answers_are_kept_for_the_ttl(port: int) -> None:
    lookup = Counting()
    agent = greenhttps.http.Agent(dns_cache_ttl=300)
    for _ in range(3):
        assert _get(agent, port, lookup) == b"ok"
    assert lookup.calls == {"cached.test": 1}
    time.sleep(0.4)  # past the TTL
    assert _get(agent, port, lookup) == b"ok"
    assert lookup.calls == {"cached.test": 2}


def test_off_every_dial_asks(port: int) -> None:
    lookup = Counting()
    agent = greenhttps.http.Agent(dnsCache=False)  # Node-style spelling too
    for _ in range(3):
        assert _get(agent, port, lookup) == b"ok"
    assert lookup.calls == {"cached.test": 3}
    assert agent.dns is None


def test_a_failure_is_kept_for_the_negative_ttl() -> None:
    """ENOTFOUND is answered from the cache for ``dns_cache_negative_ttl``, each time
    as a new error (Node's shape: code, syscall, hostname), then asked again."""
    lookup = Counting(fail=True)
    agent = greenhttps.http.Agent(dns_cache_negative_ttl=300)
    seen = []
    for _ in range(3):
        with pytest.raises(errors.NameResolutionError) as info:
            _get(agent, 1, lookup, "dead.test")
        seen.append(info.value)
    assert lookup.calls == {"dead.test": 1}
    assert all(e.code == "ENOTFOUND" and e.hostname == "dead.test" for e in seen)
    assert len({id(e) for e in seen}) == 3
    time.sleep(0.4)
    with pytest.raises(errors.NameResolutionError):
        _get(agent, 1, lookup, "dead.test")
    assert lookup.calls == {"dead.test": 2}


def test_no_negative_ttl_keeps_no_failure() -> None:
    lookup = Counting(fail=True)
    agent = greenhttps.http.Agent(dns_cache_negative_ttl=0)
    for _ in range(2):
        with pytest.raises(errors.NameResolutionError):
            _get(agent, 1, lookup, "dead.test")
    assert lookup.calls == {"dead.test": 2}


def test_the_cache_is_bounded_least_recently_used_first(port: int) -> None:
    lookup = Counting()
    agent = greenhttps.http.Agent(dns_cache_size=2)
    for host in ("a.test", "b.test", "a.test", "c.test"):  # a used again: b is the oldest
        _get(agent, port, lookup, host)
    assert lookup.calls == {"a.test": 1, "b.test": 1, "c.test": 1}
    assert len(agent.dns) == 2
    _get(agent, port, lookup, "a.test")  # kept
    _get(agent, port, lookup, "b.test")  # evicted: asked again
    assert lookup.calls == {"a.test": 1, "b.test": 2, "c.test": 1}


def test_concurrent_lookups_of_a_name_share_one_and_block_only_their_greenlets(port: int) -> None:
    """Ten requests at once to a cold name: one resolver call (the others wait for
    it), and the hub keeps running meanwhile (a ticker greenlet counts)."""
    lookup = Counting(delay=0.3)
    agent = greenhttps.http.Agent()
    ticks = []

    def ticker() -> None:
        while True:
            ticks.append(time.monotonic())
            gevent.sleep(0.02)

    tick = gevent.spawn(ticker)
    try:
        jobs = [gevent.spawn(_get, agent, port, lookup) for _ in range(10)]
        gevent.joinall(jobs, raise_error=True)
    finally:
        tick.kill()
    assert [job.value for job in jobs] == [b"ok"] * 10
    assert lookup.calls == {"cached.test": 1}
    assert len(ticks) >= 8


def test_a_killed_lookup_lets_the_next_waiter_ask(port: int) -> None:
    """The greenlet asking for everyone is killed: a waiter asks again itself
    rather than wait forever."""
    lookup = Counting(delay=0.3)
    agent = greenhttps.http.Agent()
    first = gevent.spawn(_get, agent, port, lookup)
    gevent.sleep(0.05)
    second = gevent.spawn(_get, agent, port, lookup)
    gevent.sleep(0.05)
    first.kill()
    assert second.get(timeout=5) == b"ok"
    assert lookup.calls == {"cached.test": 2}


def test_gevents_resolver_is_cached_by_default(port: int) -> None:
    """No ``lookup``: the name goes to gevent's resolver (``gevent.socket.getaddrinfo``,
    its thread pool by default) through the cache, once."""
    agent = greenhttps.http.Agent()
    for _ in range(2):
        res = greenhttps.http.get(f"http://localhost:{port}/", agent=agent)
        assert res.read() == b"ok"
    keys = list(agent.dns._entries)
    assert [key[:3] for key in keys] == [(gevent.socket.getaddrinfo, "localhost", port)]


def test_each_lookup_function_has_its_own_answers(port: int) -> None:
    one, two = Counting(), Counting()
    agent = greenhttps.http.Agent()
    _get(agent, port, one)
    _get(agent, port, two)
    _get(agent, port, one)
    assert one.calls == two.calls == {"cached.test": 1}


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError):
        greenhttps.Agent(dns_cache_ttl=-1)
    with pytest.raises(TypeError):
        greenhttps.Agent(dns_cache_tll=1)  # a typo is an unknown option


def test_the_connect_timeout_covers_the_lookup(port: int) -> None:
    """A resolver that takes 5 s and a 300 ms connect timeout: ETIMEDOUT naming the
    lookup after about 300 ms (the lookup and the connect share the timeout; before,
    a slow lookup was waited for without end).  The lookup abandoned leaves nothing
    cached: a later request asks again."""
    slow = Counting(delay=5)
    agent = greenhttps.http.Agent()
    start = time.monotonic()
    with pytest.raises(errors.TimeoutError) as info:
        greenhttps.http.get({"host": "slow.test", "port": port, "agent": agent, "lookup": slow,
                             "connect_timeout": 300}).read()
    assert 0.25 < time.monotonic() - start < 2.0
    assert info.value.code == "ETIMEDOUT" and "getaddrinfo slow.test" in str(info.value)
    assert info.value.hostname == "slow.test"
    slow.delay = 0
    assert _get(agent, port, slow, host="slow.test") == b"ok"
    assert slow.calls == {"slow.test": 2}
    agent.destroy()


def test_the_request_deadline_covers_the_dial(port: int, ca_pem: bytes) -> None:
    """request()'s ``deadline`` is the whole exchange (README), dialing included: a
    5 s lookup, or a TLS server that never answers the hello, end at the deadline
    without any connect timeout (before, both waited as long as the peer did); with
    both set, whichever ends first, its message saying which (ETIMEDOUT either way)."""
    slow = Counting(delay=5)
    start = time.monotonic()
    with pytest.raises(errors.TimeoutError) as info:
        greenhttps.http.get({"host": "slow.test", "port": port, "lookup": slow, "deadline": 300, "agent": False})
    assert 0.25 < time.monotonic() - start < 2.0
    assert "getaddrinfo slow.test: no answer within 300 ms (the request deadline)" in str(info.value)
    silent = gevent.socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    held: list[Any] = []
    acceptor = gevent.spawn(lambda: [held.append(silent.accept()[0]) for _ in range(8)])
    url = f"https://localhost:{silent.getsockname()[1]}/"
    try:
        for options, limit in (({"deadline": 300}, "300 ms (the request deadline)"),
                               ({"deadline": 300, "connect_timeout": 5000}, "300 ms (the request deadline)"),
                               ({"deadline": 5000, "connect_timeout": 300}, "300 ms (the connect timeout)")):
            start = time.monotonic()
            with pytest.raises(errors.TimeoutError) as info, gevent.Timeout(8):
                greenhttps.get(url, ca=ca_pem, agent=False, **options)
            assert 0.25 < time.monotonic() - start < 2.0
            assert info.value.message == f"TLS handshake timed out after {limit}" and info.value.code == "ETIMEDOUT"
    finally:
        acceptor.kill()
        for sock in held:
            sock.close()
        silent.close()
