"""Happy Eyeballs (RFC 8305; Node's ``autoSelectFamily``, issue 22 item 3).

An address that does not answer is a loopback listener whose accept queue is full
and never drained: the kernel drops new SYNs, so a connect() to it hangs, as to a
blackholed address.  A ``lookup`` (Node's option) answers the name with that
address first and a working server second; the race must reach the second one an
attempt delay later, not after the connect timeout.  Node's own tests of the
feature: test/parallel/test-net-autoselectfamily.js (the order, the aggregated
errors) and test-net-autoselectfamily-default.js (on by default).
"""

from __future__ import annotations

import socket as stdlib_socket
import time
from typing import Any, Callable, Iterator

import gevent
import pytest

import greenhttps
import helpers
from greenhttps import _happy, errors
from helpers import has_ipv6, open_fds, settle


def assert_no_fd_left(before: int) -> None:
    """Nothing this test opened is still open.  Other tests' sockets may close late
    meanwhile (a count below ``before``), so "no more than before", waited for."""
    deadline = time.monotonic() + 2
    while open_fds() > before and time.monotonic() < deadline:
        settle()
    assert open_fds() <= before

pytestmark = pytest.mark.timeout(30)

V4, V6, STREAM = stdlib_socket.AF_INET, stdlib_socket.AF_INET6, stdlib_socket.SOCK_STREAM


def _info(host: str, port: int) -> tuple[Any, ...]:
    if ":" in host:
        return (V6, STREAM, 6, "", (host, port, 0, 0))
    return (V4, STREAM, 6, "", (host, port))


@pytest.fixture
def blackhole() -> Iterator[Callable[[str], int]]:
    """``blackhole(host) -> port``: a listener on ``host`` whose SYNs are dropped."""
    opened: list[stdlib_socket.socket] = []

    def make(host: str = "127.0.0.1") -> int:
        family = V6 if ":" in host else V4
        lsock = stdlib_socket.socket(family, STREAM)
        lsock.bind((host, 0))
        lsock.listen(0)
        opened.append(lsock)
        opened.extend(helpers.fill_backlog(lsock))
        port = int(lsock.getsockname()[1])
        probe = stdlib_socket.socket(family, STREAM)
        probe.settimeout(0.3)
        try:
            probe.connect((host, port))
            pytest.skip("this kernel completes connects past a full backlog")
        except (TimeoutError, stdlib_socket.timeout):
            pass
        finally:
            probe.close()
        return port

    yield make
    for sock in opened:
        sock.close()


@pytest.fixture
def http_server(make_server: Callable[..., Any]) -> Callable[..., Any]:
    """A plain greenhttps.http server answering its own port (so a test sees which one answered)."""
    def make(host: str = "127.0.0.1") -> int:
        def handler(req: Any, res: Any) -> None:
            res.end(str(req.socket.local_port))

        srv = make_server(handler, tls=False, listen=False)
        srv.listen(0, host)
        return int(srv.address()["port"])

    return make


def _lookup_of(*addresses: tuple[str, int], calls: list[Any] | None = None) -> Callable[..., Any]:
    def lookup(host: str, port: int, family: int, kind: int) -> list[tuple[Any, ...]]:
        if calls is not None:
            calls.append((host, family))
        return [_info(h, p) for h, p in addresses if family in (0, V6 if ":" in h else V4)]

    return lookup


def test_a_silent_first_address_costs_one_attempt_delay(blackhole: Callable[[str], int],
                                                         http_server: Callable[..., int]) -> None:
    """On by default: the blackholed first address is left running and, 250 ms later,
    the second is tried and wins -- long before the 5 s connect timeout."""
    dead, live = blackhole("127.0.0.1"), http_server()
    agent = greenhttps.http.Agent()
    start = time.monotonic()
    res = greenhttps.http.get({"host": "dual.test", "port": 1, "agent": agent, "connect_timeout": 5000,
                               "lookup": _lookup_of(("127.0.0.1", dead), ("127.0.0.1", live))})
    elapsed = time.monotonic() - start
    assert res.read() == str(live).encode()
    assert 0.2 <= elapsed < 2.0, elapsed
    assert 200 <= res.timings.connect < 2000
    agent.destroy()


@pytest.mark.skipif(not has_ipv6(), reason="no IPv6 loopback")
def test_families_alternate_and_an_ipv6_blackhole_falls_back_to_ipv4(
        blackhole: Callable[[str], int], http_server: Callable[..., int]) -> None:
    """RFC 8305 §4 / Node: families alternate, the first answer's first.  Two dead
    IPv6 addresses and one live IPv4 one: the IPv4 address is the second attempt
    (not the third), so it connects after one attempt delay (400 ms here), not two."""
    dead1, dead2, live = blackhole("::1"), blackhole("::1"), http_server("127.0.0.1")
    agent = greenhttps.http.Agent()
    start = time.monotonic()
    res = greenhttps.http.get({
        "host": "dual.test", "port": 1, "agent": agent, "connect_timeout": 5000,
        "auto_select_family_attempt_timeout": 400,
        "lookup": _lookup_of(("::1", dead1), ("::1", dead2), ("127.0.0.1", live)),
    })
    elapsed = time.monotonic() - start
    assert res.read() == str(live).encode()
    assert 0.35 <= elapsed < 0.75, elapsed
    agent.destroy()


def test_a_refused_address_starts_the_next_attempt_at_once(http_server: Callable[..., int]) -> None:
    """RFC 8305 §5: a failed attempt does not wait out the delay."""
    closed = stdlib_socket.socket()
    closed.bind(("127.0.0.1", 0))
    refused = closed.getsockname()[1]
    closed.close()
    live = http_server()
    start = time.monotonic()
    res = greenhttps.http.get({"host": "dual.test", "port": 1, "agent": greenhttps.http.Agent(),
                               "auto_select_family_attempt_timeout": 2000,
                               "lookup": _lookup_of(("127.0.0.1", refused), ("127.0.0.1", live))})
    assert res.read() == str(live).encode()
    assert time.monotonic() - start < 1.0


def test_off_the_first_address_is_the_only_one(blackhole: Callable[[str], int],
                                               http_server: Callable[..., int]) -> None:
    """``auto_select_family=False`` (Node's ``autoSelectFamily: false``): the first
    address alone is tried, and its timeout is what the request gets; so too with
    ``family`` given, where Node does no Happy Eyeballs either."""
    dead, live = blackhole(), http_server()
    lookup = _lookup_of(("127.0.0.1", dead), ("127.0.0.1", live))
    for how in ({"autoSelectFamily": False}, {"family": 4}):
        agent = greenhttps.http.Agent()
        start = time.monotonic()
        with pytest.raises(errors.TimeoutError) as info:
            greenhttps.http.get({"host": "dual.test", "port": 1, "agent": agent, "connect_timeout": 600,
                                 "lookup": lookup, **how})
        assert info.value.code == "ETIMEDOUT"
        assert 0.55 <= time.monotonic() - start < 2.0
        assert agent.total_socket_count == 0


def test_the_agent_default_turns_it_off(blackhole: Callable[[str], int], http_server: Callable[..., int]) -> None:
    """Request options given to an Agent are its requests' defaults: this one too."""
    dead, live = blackhole(), http_server()
    agent = greenhttps.http.Agent(auto_select_family=False)
    with pytest.raises(errors.TimeoutError):
        greenhttps.http.get({"host": "dual.test", "port": 1, "agent": agent, "connect_timeout": 400,
                             "lookup": _lookup_of(("127.0.0.1", dead), ("127.0.0.1", live))})


def test_every_attempt_refused_gives_the_first_error_with_all_of_them() -> None:
    """Node (checked with Node 20): an AggregateError whose ``code`` is the first
    attempt's (ECONNREFUSED) and whose ``errors`` are every attempt's, each
    ``connect ECONNREFUSED <address>:<port>``.  Here the first attempt's error is
    raised, with the same ``code`` and ``errors``."""
    ports = []
    for _ in range(2):
        s = stdlib_socket.socket()
        s.bind(("127.0.0.1", 0))
        ports.append(s.getsockname()[1])
        s.close()
    before = open_fds()
    with pytest.raises(errors.ConnectionRefusedError) as info:
        greenhttps.http.get({"host": "dual.test", "port": 1, "agent": greenhttps.http.Agent(),
                             "lookup": _lookup_of(*(("127.0.0.1", p) for p in ports))})
    err = info.value
    assert err.code == "ECONNREFUSED"
    assert [(e.code, e.address, e.port, e.message) for e in err.errors] == [
        ("ECONNREFUSED", "127.0.0.1", p, f"connect ECONNREFUSED 127.0.0.1:{p}") for p in ports
    ]
    settle()
    assert_no_fd_left(before)


def test_the_connect_timeout_bounds_the_whole_race(blackhole: Callable[[str], int]) -> None:
    """Two silent addresses: ETIMEDOUT at the connect timeout, every attempt's
    socket closed, the pool slot freed."""
    a, b = blackhole(), blackhole()
    agent = greenhttps.http.Agent(keep_alive=True, max_sockets=1)
    before = open_fds()
    start = time.monotonic()
    with pytest.raises(errors.TimeoutError) as info:
        greenhttps.http.get({"host": "dual.test", "port": 1, "agent": agent, "connect_timeout": 500,
                             "lookup": _lookup_of(("127.0.0.1", a), ("127.0.0.1", b))})
    assert info.value.code == "ETIMEDOUT"
    assert 0.45 <= time.monotonic() - start < 2.0
    settle()
    assert_no_fd_left(before)
    assert agent.total_socket_count == 0 and agent.requests == {}


def test_a_killed_race_closes_its_attempts(blackhole: Callable[[str], int]) -> None:
    """A greenlet killed mid-race (a gevent.Timeout of the caller's) leaks no socket."""
    a, b = blackhole(), blackhole()
    before = open_fds()

    def fetch() -> None:
        greenhttps.http.get({"host": "dual.test", "port": 1, "agent": greenhttps.http.Agent(),
                             "auto_select_family_attempt_timeout": 20,
                             "lookup": _lookup_of(("127.0.0.1", a), ("127.0.0.1", b))})

    g = gevent.spawn(fetch)
    gevent.sleep(0.2)  # both attempts are in flight
    g.kill()
    settle()
    assert_no_fd_left(before)


def test_the_options_are_checked_as_node_does() -> None:
    """Node validates ``autoSelectFamily`` as a boolean and the attempt timeout as a
    number >= 1 (raising one under 10 to 10)."""
    lookup = _lookup_of(("127.0.0.1", 1), ("127.0.0.1", 2))
    with pytest.raises(errors.InvalidArgumentError) as info:
        greenhttps.http.get({"host": "dual.test", "port": 1, "auto_select_family": "yes", "lookup": lookup})
    assert info.value.code == "ERR_INVALID_ARG_TYPE"
    with pytest.raises(errors.InvalidArgumentError) as info:
        greenhttps.http.get({"host": "dual.test", "port": 1, "autoSelectFamilyAttemptTimeout": 0,
                             "lookup": lookup})
    assert info.value.code == "ERR_OUT_OF_RANGE"


def test_the_order_alternates_families_and_drops_repeats() -> None:
    a4, b4, a6, b6 = _info("10.0.0.1", 80), _info("10.0.0.2", 80), _info("fe80::1", 80), _info("fe80::2", 80)
    assert _happy.order([a6, b6, a4, a4, b4]) == [a6, a4, b6, b4]
    assert _happy.order([a4, b4, a6]) == [a4, a6, b4]
    assert _happy.order([a4]) == [a4]
