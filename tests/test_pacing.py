"""Agent(pace=ms): the least time between the starts of two requests to one origin.

Not Node's (its Agent has no politeness); what a crawler needs.  The servers are
local and in this process, so they stamp each request's arrival with the same
clock (``time.monotonic()``) the test reads; the margins are generous (a request
arrives a little after it starts, a new connection later than a pooled one).
"""

from __future__ import annotations

import datetime
import time
from typing import Any, Callable, Iterator

import gevent
import pytest

import greenhttps
import greenhttps.http
from greenhttps import errors

pytestmark = pytest.mark.timeout(30)

PACE = 200  # ms
#: How much less than PACE two arrivals may be apart (latency differences).
SLACK = 0.06


class Origin:
    """A plain-HTTP server that stamps each request's arrival; ``/sleep/N`` answers after N ms."""

    def __init__(self) -> None:
        self.arrivals: list[float] = []
        self.server = greenhttps.http.create_server(self.handle).listen(0, "127.0.0.1")
        self.url = f"http://127.0.0.1:{self.server.address()['port']}"

    def handle(self, req: Any, res: Any) -> None:
        self.arrivals.append(time.monotonic())
        if req.url.startswith("/sleep/"):
            gevent.sleep(int(req.url.rsplit("/", 1)[1]) / 1000)
        res.end("ok")

    def gaps(self) -> list[float]:
        return [b - a for a, b in zip(self.arrivals, self.arrivals[1:])]


@pytest.fixture
def origins() -> Iterator[Callable[[], Origin]]:
    made: list[Origin] = []

    def make() -> Origin:
        made.append(Origin())
        return made[-1]

    yield make
    for origin in made:
        origin.server.close()


def _get(agent: Any, url: str) -> bytes:
    res = greenhttps.http.get(url, agent=agent)
    return res.read()  # type: ignore[no-any-return]


def test_requests_to_one_origin_are_spaced_and_origins_are_independent(origins: Callable[[], Origin]) -> None:
    """Five greenlets per origin at once: each origin's arrivals are PACE apart, and
    the two origins are paced side by side (both start at once, the whole takes
    about 4 intervals, not 9)."""
    agent = greenhttps.http.Agent(keep_alive=True, pace=PACE)
    a, b = origins(), origins()
    started = time.monotonic()
    jobs = [gevent.spawn(_get, agent, f"{origin.url}/{i}") for i in range(5) for origin in (a, b)]
    gevent.joinall(jobs, raise_error=True)
    took = time.monotonic() - started
    for origin in (a, b):
        assert len(origin.arrivals) == 5
        assert min(origin.gaps()) >= PACE / 1000 - SLACK, origin.gaps()
        assert origin.arrivals[0] - started < 0.15  # the first goes at once
    assert 4 * PACE / 1000 - SLACK <= took < 9 * PACE / 1000 - 0.2
    agent.destroy()


def test_without_pace_nothing_waits(origins: Callable[[], Origin]) -> None:
    """The control: the same crowd without ``pace`` arrives together."""
    agent = greenhttps.http.Agent(keep_alive=True)
    a = origins()
    jobs = [gevent.spawn(_get, agent, f"{a.url}/{i}") for i in range(5)]
    gevent.joinall(jobs, raise_error=True)
    assert a.arrivals[-1] - a.arrivals[0] < PACE / 1000 / 2
    assert agent.pace is None
    agent.destroy()


def test_a_pool_wait_does_not_bunch_starts(origins: Callable[[], Origin]) -> None:
    """Two connections freed at the same moment hand themselves to two waiters at
    once; the second still starts PACE after the first (checked after acquiring)."""
    agent = greenhttps.http.Agent(keep_alive=True, max_sockets=2, pace=PACE)
    a = origins()
    # Requests 1 and 2 both end ~700 ms in, while 3 and 4 wait in the pool.
    paths = ["/sleep/700", "/sleep/500", "/3", "/4"]
    jobs = []
    for path in paths:
        jobs.append(gevent.spawn(_get, agent, a.url + path))
        gevent.sleep(0.01)  # in this order
    gevent.joinall(jobs, raise_error=True)
    assert len(a.arrivals) == 4
    assert min(a.gaps()) >= PACE / 1000 - SLACK, a.gaps()
    agent.destroy()


def test_the_wait_holds_no_connection_and_blocks_only_its_greenlet(origins: Callable[[], Origin]) -> None:
    """While the second request waits its turn, its connection is not in use (the
    first one's is back in the free list), and other greenlets run."""
    agent = greenhttps.http.Agent(keep_alive=True, max_sockets=1, pace=500)
    a = origins()
    assert _get(agent, a.url + "/1") == b"ok"
    second = gevent.spawn(_get, agent, a.url + "/2")
    ticks = 0
    while not second.ready() and ticks < 20:
        gevent.sleep(0.01)
        ticks += 1
    assert not second.ready() and ticks == 20  # 200 ms of other work went on meanwhile
    assert agent.sockets == {} and len(agent.free_sockets) == 1
    assert second.get() == b"ok"
    assert a.gaps()[0] >= 0.5 - SLACK
    agent.destroy()


def test_a_killed_waiter_loses_nothing(origins: Callable[[], Origin]) -> None:
    """A greenlet killed while it waits for its turn takes no slot or connection
    with it: the next request still gets the pooled connection."""
    agent = greenhttps.http.Agent(keep_alive=True, max_sockets=1, pace=300)
    a = origins()
    _get(agent, a.url + "/1")
    waiting = gevent.spawn(_get, agent, a.url + "/2")
    gevent.sleep(0.05)
    waiting.kill()
    assert agent.sockets == {} and agent.requests == {} and agent.total_socket_count == 1
    assert _get(agent, a.url + "/3") == b"ok"
    assert len(a.arrivals) == 2
    agent.destroy()


def test_pace_option_values() -> None:
    """Milliseconds or a timedelta, camelCase or snake_case, settable; 0 turns it
    off; a negative or non-number is refused with the option's name."""
    assert greenhttps.Agent(pace=datetime.timedelta(seconds=1.5)).pace == 1500.0
    assert greenhttps.Agent({"pace": 250}).pace == 250.0
    agent = greenhttps.Agent(pace=0)
    assert agent.pace is None
    agent.pace = 100
    assert agent.pace == 100.0 and agent._pace_s == 0.1
    for bad in (-1, "fast", True):
        with pytest.raises((errors.InvalidArgumentError, TypeError), match="pace"):  # a string: TypeError (merge_options)
            greenhttps.Agent(pace=bad)


def test_killed_waiters_give_their_turns_back(origins: Callable[[], Origin]) -> None:
    """Ten requests that book their turns and are killed while waiting do not push the
    next request ten intervals out: it waits at most about one."""
    agent = greenhttps.http.Agent(keep_alive=True, pace=300)
    a = origins()
    _get(agent, a.url + "/first")
    waiting = [gevent.spawn(_get, agent, a.url + f"/{n}") for n in range(10)]
    gevent.sleep(0.05)
    gevent.killall(waiting)
    start = time.monotonic()
    assert _get(agent, a.url + "/next") == b"ok"
    assert time.monotonic() - start < 0.9  # one interval and margin, not ten (3 s)
    agent.destroy()


def test_a_deadline_bounds_the_wait_for_the_origins_turn(origins: Callable[[], Origin]) -> None:
    """A request whose ``deadline`` ends before its origin's turn fails at the
    deadline (ETIMEDOUT), sends nothing, and gives its turn back: the next request
    is not pushed further out by it."""
    agent = greenhttps.http.Agent(keep_alive=True, pace=1500)
    a = origins()
    assert _get(agent, f"{a.url}/first") == b"ok"
    started = time.monotonic()
    with pytest.raises(errors.TimeoutError) as info:
        greenhttps.http.get(f"{a.url}/late", agent=agent, deadline=300).read()
    took = time.monotonic() - started
    assert info.value.code == "ETIMEDOUT"
    assert 0.25 <= took < 1.0, took
    assert len(a.arrivals) == 1  # nothing sent
    _get(agent, f"{a.url}/next")
    assert a.arrivals[1] - a.arrivals[0] < 1.5 + 0.5  # its turn, not one more interval
    agent.destroy()
