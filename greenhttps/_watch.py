"""PeerWatch: a connection's eye on its socket while nobody is reading it.

Theory of operation
-------------------
A server connection's greenlet runs the handler, and a handler may sleep, block on
a database or compute for a long time; a client's caller may hold a response and
read its body later, or never.  Node's promise is that the socket's events reach
user code whatever that code is doing, so while a handler runs (or the connection
waits for a response another greenlet will end), and while a client response's body
waits for its reader (:meth:`ClientExchange.watch
<greenhttps._exchange.ClientExchange.watch>`), two watchers on the hub stand in for
the greenlet:

* a **read watcher** on the descriptor.  When it fires, its callback takes what the
  socket has ready without waiting (:meth:`Wire.poll_input
  <greenhttps._wire.Wire.poll_input>`): bytes are kept, in order, for the next read
  (the rest of a body, a pipelined request), so nothing is lost or reordered; the
  end of the stream (FIN, TLS close_notify) or a reset means the peer is gone, and
  ``on_peer_gone`` is called.  Once :data:`HOLD_LIMIT` bytes are kept the watcher
  stops, as Node pauses a socket whose request nobody reads: a client uploading a
  body the handler ignores is not buffered without bound.
* an **idle timer**.  The socket's idle time counts from its last byte either way
  (:attr:`Wire.last_io <greenhttps._wire.Wire.last_io>`); when it reaches the
  wire's idle timeout, ``on_idle`` is called once for that idle period.  While a
  greenlet is itself waiting on the socket (a body read, a write the peer does not
  take), that wait's own timer counts instead, and the watch stays quiet.

The callbacks run in the hub, where nothing may block: they only read what is
ready and decide; listeners run in a greenlet spawned for the event (rare: a peer
that vanished, an idle period).  The handler's own reads pause the read watcher
(:meth:`pause_input`), since two readers of one socket would each see half of it.

Why watchers, not a reader greenlet: a greenlet switch per request and one more
greenlet per connection, against a watcher ``start``/``stop`` (one C call each)
that are made once per request, and objects made once per connection.
"""

from __future__ import annotations

import time
from typing import Any, Callable

import gevent

from . import _sockio, errors
from ._events import logger
from ._wire import Wire

__all__ = ["PeerWatch", "HOLD_LIMIT"]

#: The most bytes kept for the next read before the read watcher stops.
HOLD_LIMIT = 64 * 1024

#: A timer that would fire sooner than this after the deadline is close enough.
_SLACK = 0.002


def _waited_on(sock: Any) -> bool:
    """A greenlet is blocked on this socket's own watchers (a read or a write)."""
    raw = getattr(sock, "_raw", sock)  # a memory-BIO TLS socket waits on its TCP socket
    read, write = getattr(raw, "_read_event", None), getattr(raw, "_write_event", None)
    return (read is not None and read.callback is not None) or (write is not None and write.callback is not None)


class PeerWatch:
    """Watches one connection's socket between :meth:`start` and :meth:`stop`
    (or from the loop's next turn after :meth:`want`, until :meth:`stop`).

    ``on_peer_gone(error)`` is called (in a new greenlet) when the peer closes
    (``error`` None) or resets (the network error); ``on_idle()`` when the socket
    has idled for the wire's idle timeout.  Each fires at most once per
    :meth:`start` for the peer, once per idle period for the timer.
    """

    __slots__ = ("_wire", "_loop", "_io", "_timer", "_on_peer_gone", "_on_idle", "_watching", "_input", "_fired_at",
                 "_wanted", "_pending", "_paused")

    def __init__(self, wire: Wire, *, on_peer_gone: Callable[[BaseException | None], None],
                 on_idle: Callable[[], None]) -> None:
        self._wire = wire
        self._loop = gevent.get_hub().loop
        self._io: Any = None  # made on first use: most handlers never let the hub run
        self._timer: Any = None
        self._on_peer_gone = on_peer_gone
        self._on_idle = on_idle
        self._watching = False
        self._input = False
        #: The ``last_io`` of the idle period already reported.
        self._fired_at = -1.0
        #: want() was called and stop() not yet; a start is queued on the loop;
        #: a greenlet is reading the socket itself.
        self._wanted = self._paused = False
        #: The loop callback want() queued, until it runs (stop() cancels it).
        self._pending: Any = None

    # ------------------------------------------------------------ control

    def want(self) -> None:
        """Watch from the loop's next turn on, until :meth:`stop`.

        Why not at once: most handlers answer without ever letting the hub run, and
        most callers read a response as soon as they have it.  Queuing a callback
        costs 0.12 µs; starting and stopping the watchers about 1 µs, which was 3% of
        a keep-alive request.  The loop turns exactly when the owner's greenlet first
        waits -- the moment somebody else must watch."""
        self._wanted = True
        if self._pending is None:
            self._pending = self._loop.run_callback(self._begin)

    def _begin(self) -> None:
        self._pending = None
        if self._wanted and not self._paused:
            self.start()

    def start(self) -> None:
        """Watch the peer and the idle clock (until :meth:`stop`)."""
        self._wanted = True
        if self._watching or self._io is False:
            return
        self._watching = True
        self._fired_at = -1.0
        self._start_input()
        self.restart_timer()

    def stop(self) -> None:
        self._wanted = False
        pending = self._pending
        if pending is not None:  # the handler never let the hub run: nothing to start
            self._pending = None
            pending.stop()
        if not self._watching:
            return
        self._watching = False
        self._stop_input()
        if self._timer is not None:
            self._timer.stop()

    def close(self) -> None:
        """Stop for good and let go of the watchers."""
        self.stop()
        for watcher in (self._io, self._timer):
            if watcher:
                watcher.close()
        self._io = False  # closed: never started again
        self._timer = None

    def pause_input(self) -> None:
        """A greenlet is about to read the socket itself: stop taking its bytes."""
        self._paused = True
        self._stop_input()

    def resume_input(self) -> None:
        self._paused = False
        if self._watching:
            self._start_input()
        elif self._wanted and self._pending is None:
            self.start()  # the queued start came while the socket was being read

    def restart_timer(self) -> None:
        """The idle timeout may have changed: count it anew from the last byte."""
        if not self._watching:
            return
        seconds = self._wire.idle_timeout
        if seconds is None:
            if self._timer is not None:
                self._timer.stop()
            return
        remaining = self._wire.last_io + seconds - time.monotonic()
        self._arm(max(remaining, 0.0))

    # ------------------------------------------------------------ watchers

    def _start_input(self) -> None:
        if self._input or self._paused or self._wire.early_size >= HOLD_LIMIT or self._wire.closed:
            return
        if self._io is None:
            try:
                fd = self._wire.sock.fileno()
            except (OSError, ValueError):
                return
            if fd < 0:
                return
            self._io = self._loop.io(fd, 1)
        self._input = True
        self._io.start(self._readable)
        if _sockio.held(self._wire.sock):
            # Bytes OpenSSL read ahead (a pipelined request, a close_notify) never
            # make the descriptor readable: look at them from the loop's next turn.
            self._loop.run_callback(self._kick)

    def _kick(self) -> None:
        if self._input:
            self._readable()

    def _stop_input(self) -> None:
        if self._input:
            self._input = False
            self._io.stop()

    def _arm(self, seconds: float) -> None:
        # libev's timers keep their interval: a new one for each (0.17 µs here).
        # Counted from the loop's cached clock, so it may fire early; _expired
        # checks the real time.  Not updating it is explicit: gevent's default may
        # (starting_timer_may_update_loop_time), and a clock that moves on every
        # request is what the server's fairness check reads as "we yielded".
        if self._timer is not None:
            self._timer.close()
        self._timer = self._loop.timer(seconds)
        self._timer.start(self._expired, update=False)

    # ------------------------------------------------------------ callbacks (in the hub)

    def _readable(self) -> None:
        wire = self._wire
        while True:
            try:
                count = wire.poll_input()
            except errors.NetworkError as exc:
                self._peer_gone(exc)
                return
            except Exception as exc:  # a TLS error, a socket closed meanwhile
                self._peer_gone(errors.from_os_error(exc) if isinstance(exc, OSError) else exc)
                return
            if count is None:
                return
            if count == 0:
                self._peer_gone(None)
                return
            if wire.early_size >= HOLD_LIMIT:
                self._stop_input()  # nobody reads: stop taking more, as Node pauses
                return

    def _peer_gone(self, error: BaseException | None) -> None:
        logger.debug("peer gone while its connection was busy: %s", error or "end of stream")
        self.stop()
        gevent.spawn(self._on_peer_gone, error)

    def _expired(self) -> None:
        if not self._watching:
            return
        wire = self._wire
        seconds = wire.idle_timeout
        if seconds is None:
            return
        last = wire.last_io
        remaining = last + seconds - time.monotonic()
        if remaining > _SLACK:
            self._arm(remaining)
            return
        if _waited_on(wire.sock) or last == self._fired_at:
            # A blocked read or write counts with its own timer; or this idle
            # period was reported already: look again one period on.
            self._arm(seconds)
            return
        self._fired_at = last
        self._arm(seconds)
        gevent.spawn(self._on_idle)

