"""ClientExchange: one request and its response over one pooled connection.

Theory of operation
-------------------
The client's counterpart of :class:`~greenhttps._server_conn.ServerConnection`.
:class:`~greenhttps._client.ClientRequest` is the Node-facing object (header
defaults, events, ``getresponse()``); the exchange is what it asks to move bytes.
It talks to the :class:`~greenhttps._agent.Agent` and to the connection's
:class:`~greenhttps._wire.Wire`, and never emits an event or calls user code::

    acquire   agent.acquire(): an idle pooled connection, or a permit to dial
              one (dial(): TCP, TLS, certificate and name checks), or wait in
              the agent's queue (Node's agent.requests)
    send      send_head() (and the wire, for the body the request writes)
    read      read_head(): one head, 1xx or final; a reused socket that the
              peer provably closed before any response byte (EOF, reset) is
              replaced and an idempotent request sent again, once -- never
              after our own timeout or deadline
              read_body() / read_rest(): the response body, through the
              IncomingMessage the request built on them
    release   release(): back to the agent (pooled, or handed straight to the
              next waiter, or closed).  The request calls it after the
              response's 'end' listeners have run, so that a listener sees the
              socket still in use (agent.sockets) and one that destroys it
              never has it pooled; discard() closes instead (errors, abort)

State lives in plain attributes; the exchange holds its connection from
``acquire()`` to ``release()``/``discard()``/``detach()``, and a finalizer gives a
connection back (closed) if the exchange is dropped in the middle.  Nothing here
refers back to the request (the wire's idle callback holds it weakly), so a
finished exchange is freed by reference counting.

Where other transports plug in
------------------------------
*A proxy tunnel* (CONNECT through an HTTP proxy, then TLS to the origin) is a
different way to *open* the connection, not a different exchange: ``_open()``
would dial the proxy, send ``CONNECT host:port``, read the proxy's head with a
wire of its own (2xx, or fail with the proxy's status), then run the TLS
handshake and the peer checks of :func:`~greenhttps._dial.dial` on that socket,
with the origin's servername.  The pool key names the proxy and the origin;
everything after ``acquire()`` is unchanged.

*An HTTP/2 stream* would be a second exchange class with this interface
(``acquire``, ``send_head``, ``wire``-like body writes, ``read_head``,
``read_body``/``read_rest``, ``release``/``discard``), where ``acquire`` opens a
stream on a shared connection that the agent keeps per origin (ALPN ``h2``), and
``release`` closes the stream rather than returning a socket to a free list.
The request chooses the class by the connection's ALPN result; ClientRequest's
events and IncomingMessage need no change.
"""

from __future__ import annotations

import functools
import threading
import time
import weakref
from typing import Any, Callable, Mapping

import gevent

from . import errors
from ._agent import IDEMPOTENT_METHODS as _IDEMPOTENT
from ._agent import Agent
from ._dial import ClientConnection, adopt, dial
from ._events import logger
from ._net_socket import Socket
from ._options import format_ms, ms_to_seconds
from ._watch import PeerWatch
from ._wire import DeadlineExceeded, Head, HeaderPairs, Wire
from ._wire_format import Framing, OutgoingFraming

__all__ = ["ClientExchange", "RequestTimings"]


class RequestTimings:
    """How long one client request took, in milliseconds: a response's ``timings``.

    Phases, each how long it took (None when it did not happen): ``queued``
    (waiting for the agent: a pooled connection, or a slot to dial one), ``dns``
    (the name lookup, an agent's cached answer included; None for an IP literal or
    a Unix socket), ``connect`` (TCP, the whole Happy Eyeballs race; through a
    proxy, reaching it and the tunnel), ``tls`` (the handshake and the certificate
    checks; None for http:).  A connection taken from the pool (``reused`` True)
    has ``dns``, ``connect`` and ``tls`` None: nothing was dialed for this request.

    Moments, in ms from the request's ``start`` (when it asked the agent for a
    connection; ``start`` itself is a ``time.monotonic()`` value): ``sent`` (the
    request written to the end), ``first_byte`` (the first response head arrived,
    1xx included), ``total`` (the response body ended; None until then).

    Measured with a few ``time.monotonic()`` calls; the differences are worked out
    when read.
    """

    __slots__ = ("start", "dns", "connect", "tls", "reused", "_acquired", "_sent", "_first_byte", "_end")

    def __init__(self, start: float) -> None:
        self.start = start
        self.dns: float | None = None
        self.connect: float | None = None
        self.tls: float | None = None
        self.reused = False
        self._acquired: float | None = None
        self._sent: float | None = None
        self._first_byte: float | None = None
        self._end: float | None = None

    def _since_start(self, moment: float | None) -> float | None:
        return None if moment is None else (moment - self.start) * 1000.0

    @property
    def queued(self) -> float | None:
        """Ms waiting for the agent (a pooled connection or a slot to dial one)."""
        return self._since_start(self._acquired)

    @property
    def sent(self) -> float | None:
        """Ms from the start until the request had been written to its end."""
        return self._since_start(self._sent)

    @property
    def first_byte(self) -> float | None:
        """Ms from the start until the first response head arrived."""
        return self._since_start(self._first_byte)

    @property
    def total(self) -> float | None:
        """Ms from the start until the response body ended (None before)."""
        return self._since_start(self._end)

    def as_dict(self) -> dict[str, float | bool | None]:
        """Every field by name (for logs and JSON)."""
        return {name: getattr(self, name) for name in
                ("queued", "dns", "connect", "tls", "sent", "first_byte", "total", "reused")}

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={value:.3f}" if isinstance(value, float) else f"{name}={value}"
                           for name, value in self.as_dict().items())
        return f"RequestTimings({fields})"


class ClientExchange:
    """One request/response exchange: acquire, dial, send, read, retry once, release.

    ``opts`` are the request's options (host, port, TLS, ``timeout``...); ``name`` its
    pool key; ``deadline`` a ``time.monotonic()`` value or None; ``on_idle`` the
    wire's idle-timeout callback (True: keep waiting).
    """

    __slots__ = (
        "agent", "name", "opts", "method", "deadline", "conn", "socket", "reused",
        "close_delimited", "body_done", "_replay", "_trailers", "_reclaim", "_on_idle", "_watch", "_reading",
        "trailing_error", "dialing", "timings", "__weakref__",
    )

    def __init__(self, agent: Agent, name: str, opts: Mapping[str, Any], method: str,
                 deadline: float | None, on_idle: Callable[[], bool]) -> None:
        self.agent = agent
        self.name = name
        self.opts = opts
        self.method = method
        self.deadline = deadline
        self.conn: ClientConnection | None = None
        self.socket: Socket | None = None
        #: The connection came from the pool (Node's ``req.reusedSocket``).
        self.reused = False
        #: The response body ends when the server closes (RFC 9112 §6.3 rule 8).
        self.close_delimited = False
        #: The response body has been read to its end.
        self.body_done = False
        #: :meth:`acquire` got a permit and is connecting (not waiting in the queue).
        self.dialing = False
        #: The parse error for bytes after the response (set by :meth:`release`).
        self.trailing_error: errors.ProtocolError | None = None
        self._replay: tuple[HeaderPairs, bytes, tuple[str, int, bool], bytes] | None = None
        #: The wire forgets trailers when it starts its next exchange (after the
        #: release), so the exchange keeps its own copy.
        self._trailers: Any = ()
        self._reclaim: weakref.ReferenceType[ClientExchange] | None = None
        self._on_idle = on_idle
        #: Watches the connection while nobody reads the response body (see watch()).
        self._watch: PeerWatch | None = None
        #: A greenlet is reading the response body from the socket right now.
        self._reading = False
        #: What this exchange measured (the response's ``timings``).
        self.timings = RequestTimings(time.monotonic())

    def __repr__(self) -> str:
        return f"<ClientExchange {self.method} {self.name} conn={self.conn!r}>"

    # ------------------------------------------------------------ acquire

    def acquire(self, waiter: Any) -> Socket:
        """Get a connection: an idle pooled one, or a new one dialed with a permit.

        ``waiter`` is what Node lists in ``agent.requests`` while this waits (the
        request).  Blocks while the agent is at its limits.  Raises what dialing raises.
        """
        agent, name, deadline = self.agent, self.name, self.deadline
        if deadline is None:
            conn = agent.acquire(name, waiter)
        else:  # the deadline bounds the wait for a pool slot too
            try:
                conn = agent.acquire(name, waiter, max(deadline - time.monotonic(), 0.001))
            except gevent.Timeout:
                if time.monotonic() < deadline:
                    raise  # someone else's
                raise errors.TimeoutError(f"request deadline of {format_ms(self.opts.get('deadline') or 0)} exceeded "
                                          "waiting for a connection from the pool", "ETIMEDOUT") from None
        timings = self.timings
        timings._acquired = time.monotonic()
        if conn is None:
            self.dialing = True  # past the queue: Node's request has its socket now
            conn = self._dial()
        else:
            self.reused = timings.reused = True
            if self.opts.get("timeout"):
                conn.wire.set_idle_timeout(ms_to_seconds(self.opts["timeout"]))
        self._hold(conn)
        return conn.socket

    def _dial(self) -> ClientConnection:
        """Dial with the permit the agent gave us; a failure hands the permit on."""
        agent = self.agent
        try:
            if agent._overrides_create_connection():
                # Node's override point: the subclass opens the socket, we speak HTTP on it.
                # What it did inside is its own: the whole call counts as the connect.
                started = time.monotonic()
                conn = adopt(agent.create_connection(dict(self.opts)), self.opts, self.name)
                conn.timings = (None, (time.monotonic() - started) * 1000.0, None)
            else:
                conn = dial(self.opts, self.name, secure=agent.secure, sessions=agent, dns=agent.dns,
                            keep_alive_msecs=agent.keep_alive_msecs if agent.keep_alive else None,
                            deadline=self.deadline)
        except BaseException:
            agent.dial_failed(self.name)
            raise
        agent.connected(self.name, conn)
        timings = self.timings
        timings.dns, timings.connect, timings.tls = conn.timings
        return conn

    def _hold(self, conn: ClientConnection) -> None:
        """Make ``conn`` ours until :meth:`_let_go`; if the exchange is dropped in the
        middle (a greenlet killed between two reads, a response nobody keeps), the
        finalizer closes the connection and frees its slot."""
        conn.uses += 1
        conn.wire.on_idle = self._on_idle
        self.conn = conn
        self.socket = conn.socket
        # A weak reference with a callback, kept alive outside the exchange (in
        # _HOLDERS, so that it fires even when the exchange dies in a garbage
        # cycle): what weakref.finalize does, without its three Python calls per
        # exchange (~2-3k instructions of a keep-alive round trip).
        ref = self._reclaim = weakref.ref(self, functools.partial(_reclaim_dropped, self.agent, conn))
        _HOLDERS[id(conn)] = ref

    def _let_go(self) -> ClientConnection | None:
        """Take the connection away from the exchange (the caller decides its fate)."""
        conn, self.conn = self.conn, None
        if not self.body_done:  # at the body's end _body_ended let go of it already
            _held().release(self)
        if self._watch is not None:
            self._watch.close()
            self._watch = None
            if conn is not None:
                conn.socket._before_close = None
        if conn is not None:
            conn.wire.on_idle = None
            if self._reclaim is not None:
                if _HOLDERS.get(id(conn)) is self._reclaim:
                    del _HOLDERS[id(conn)]
                self._reclaim = None
        return conn

    @property
    def wire(self) -> Wire:
        """The connection's wire; ConnectionResetError once the connection is gone."""
        conn = self.conn
        if conn is None:
            raise errors.ConnectionResetError("socket hang up")
        return conn.wire

    def set_idle_timeout(self, seconds: float | None) -> None:
        """The socket's inactivity timeout from now on (None: none)."""
        if self.conn is not None:
            self.conn.wire.set_idle_timeout(seconds)

    # --------------------------------------------------------------- send

    def send_head(self, headers: HeaderPairs, head: bytes, framing: OutgoingFraming, body: bytes | None,
                  end: bool) -> None:
        """Send the request ``head`` (serialised, its ``framing`` decided by the
        request; ``headers`` are its fields, which the response's framing depends
        on), and the whole body if ``end``: then it can be sent again on a fresh
        connection if the reused one turns out stale."""
        if end:  # the framing as it stands before the send counts the body down
            self._replay = (headers, head, (framing.kind, framing.remaining, framing.close), body or b"")
        conn = self.conn  # the wire property, inlined on the per-request paths
        if conn is None:
            raise errors.ConnectionResetError("socket hang up")
        wire = conn.wire
        wire.expect_response_to(self.method, headers)
        wire.send_head(head, framing, body=body, end=end)
        if end:
            self.timings._sent = time.monotonic()

    def request_sent(self) -> None:
        """The rest of a request whose head went first has been written (its
        ``end()``): the moment its ``timings.sent`` reports."""
        self.timings._sent = time.monotonic()

    # --------------------------------------------------------------- read

    def read_head(self) -> Head:
        """The next response head (1xx or final).  Retries once on a stale socket;
        raises ConnectionResetError ("socket hang up") when the peer closed first,
        TimeoutError for the deadline, and the wire's errors."""
        while True:
            conn = self.conn
            if conn is None:
                raise errors.ConnectionResetError("socket hang up")
            wire = conn.wire
            try:
                head = wire.read_head(deadline=self.deadline)
                if head is None:
                    raise errors.ConnectionResetError("socket hang up")
                if self.timings._first_byte is None:
                    self.timings._first_byte = time.monotonic()
                return head
            except DeadlineExceeded:
                raise errors.TimeoutError(f"request deadline of {format_ms(self.opts.get('deadline') or 0)} exceeded") from None
            except (errors.NetworkError, errors.ProtocolError) as exc:
                if self._may_retry(wire, exc):
                    self._retry()
                    continue
                if isinstance(exc, errors.ProtocolError) and wire.bytes_received == 0:
                    # h11 calls a close before any response byte a protocol error;
                    # with nothing received it can only be the peer hanging up (Node's
                    # ECONNRESET "socket hang up").
                    raise errors.ConnectionResetError("socket hang up") from exc
                raise

    def _may_retry(self, wire: Wire, exc: BaseException) -> bool:
        # Only a peer that provably closed the reused socket (EOF or reset before any
        # response byte) earns a second send.  Our own timeout (the idle timer, a
        # getresponse() wait, the deadline) says nothing about the server, which may
        # be working on the request: sending it again would run it twice.
        return (
            self.reused
            and self._replay is not None
            and wire.bytes_received == 0
            and self.method in _IDEMPOTENT
            and not isinstance(exc, errors.TimeoutError)
        )

    def _retry(self) -> None:
        logger.debug("%r: reused connection was closed by the server; retrying once", self)
        assert self._replay is not None
        headers, head, (kind, remaining, close), body = self._replay
        self._replay = None
        stale = self._let_go()
        self.reused = self.timings.reused = False
        if stale is not None:
            self.agent.replace(stale)  # its slot becomes our permit to dial
        self._hold(self._dial())
        wire = self.wire
        wire.expect_response_to(self.method, headers)
        wire.send_head(head, OutgoingFraming(kind, remaining, close), body=body, end=True)
        self.timings._sent = time.monotonic()  # the timings tell of the request that was answered

    def response_started(self, head: Head) -> bool:
        """Note a final response head's framing (the facts the parser decided once);
        True if no body follows it."""
        self.close_delimited = head.framing == Framing.UNTIL_CLOSE
        conn = self.conn
        if head.keep_alive_timeout is not None and conn is not None:
            conn.server_keep_alive = head.keep_alive_timeout
        return head.framing == Framing.NONE

    def watch(self, owner: weakref.ReferenceType[Any], on_peer_gone: Callable[[Any, BaseException | None], None],
              on_idle: Callable[[Any], None]) -> None:
        """While the response body waits to be read, watch the connection (as the
        server does while a handler runs, :mod:`._watch`): ``on_peer_gone(owner,
        error)`` when the server closes (None) or resets it, ``on_idle(owner)`` when
        it idles past the request's timeout (``owner`` is held weakly).  Reads pause
        the watch; the body's end, a release or a discard end it.

        It begins at the next tick of this thread's :class:`_HeldResponses` (every
        :data:`HELD_TICK` seconds)
        if the body is still unread and nobody is reading it then: a caller that
        reads at once costs a dict entry, not a watch.  (A callback queued on the
        loop for each response, the first way, cost 12% of client keep-alive req/s:
        a pending callback makes the loop turn once more.)"""
        if self.conn is not None and not self.body_done:
            _held().hold(self, (owner, on_peer_gone, on_idle))

    def _begin_watch(self, owner: weakref.ReferenceType[Any], on_peer_gone: Callable[[Any, BaseException | None], None],
                     on_idle: Callable[[Any], None]) -> None:
        conn = self.conn
        if conn is None or self.body_done or self._watch is not None:
            return

        def peer_gone(error: BaseException | None) -> None:
            target = owner()
            if target is not None:
                on_peer_gone(target, error)

        def idle() -> None:
            target = owner()
            if target is not None:
                on_idle(target)

        watch = self._watch = PeerWatch(conn.wire, on_peer_gone=peer_gone, on_idle=idle)
        conn.socket._before_close = watch.close
        watch.start()

    def read_body(self) -> bytes:
        """The next piece of the response body; b'' at its end."""
        chunk = self._from_wire(rest=False)
        assert chunk is not None
        if not chunk:
            self._body_ended()
        return chunk

    def read_rest(self) -> bytes | None:
        """The rest of the body in one piece (None: the wire cannot; use read_body)."""
        return self._from_wire(rest=True)

    def trailers(self) -> Any:
        """The response's trailer fields (after its end)."""
        return self._trailers

    def _from_wire(self, *, rest: bool) -> bytes | None:
        """The wire's ``read_rest_of_body()`` or ``read_body()``; a failure discards the connection."""
        if self.body_done:
            return b"" if not rest else None
        conn = self.conn
        if conn is None:
            raise errors.ConnectionResetError("socket hang up")
        wire = conn.wire
        watch = self._watch
        if watch is not None:
            watch.pause_input()  # this read takes the socket's bytes itself
        self._reading = True
        try:
            return (wire.read_rest_of_body if rest else wire.read_body)(deadline=self.deadline)
        except DeadlineExceeded:
            self.discard()
            raise errors.TimeoutError(f"request deadline of {format_ms(self.opts.get('deadline') or 0)} exceeded") from None
        except BaseException:
            self.discard()
            raise
        finally:
            self._reading = False
            watch = self._watch
            if watch is not None:
                watch.resume_input()

    def _body_ended(self) -> None:
        self.body_done = True
        self.timings._end = time.monotonic()
        _held().release(self)
        if self._watch is not None:
            self._watch.stop()
        conn = self.conn
        if conn is not None:
            self._trailers = conn.wire.trailers

    # ------------------------------------------------------------ release

    def release(self) -> bool:
        """Give the connection back after the response ended (idempotent): pooled
        if it can carry another exchange, else closed.  True if it was kept for
        another exchange (Node's socket ``'free'``).  Bytes past the response that
        cannot start another leave their parse error in :attr:`trailing_error`
        (Node reports it on the request, B-87)."""
        conn = self._let_go()
        if conn is None:
            return False
        agent = self.agent
        if (conn.session is None and agent.max_cached_sessions and not agent._one_off and conn.socket.encrypted
                and not conn.socket.session_reused and not conn.closed):
            # Once per connection, and only after a full handshake, for an agent that
            # keeps it: fetching the session costs 0.1-0.25 ms (Python serialises
            # it), and by the end of the first response TLS 1.3 tickets have arrived.  A resumed session stays cached: servers
            # (OpenSSL's, Node's) accept a ticket again, and one that is refused
            # means a full handshake, after which the new session is cached.
            conn.session = conn.socket.get_session()
            agent.cache_session(conn.name, conn.session)
        wire = conn.wire
        # Bytes after the end of the response: nobody asked for them, and the next
        # exchange would read them as its response.
        past_the_end = wire.head_started
        trailing = wire.trailing_error() if self.body_done and past_the_end else None
        reusable = (
            self.body_done
            and not self.close_delimited
            and not conn.closed  # an 'end' listener may have destroyed the socket
            and not past_the_end
            and wire.response_complete
            and wire.start_next_cycle()
        )
        self.agent.release(conn, reusable=reusable)
        self.trailing_error = trailing
        return reusable

    def discard(self) -> None:
        """Close the connection and free its pool slot (an error, an abort)."""
        conn = self._let_go()
        if conn is not None:
            self.agent.destroy_connection(conn)

    def close_now(self) -> None:
        """Close the socket but keep the pool entry until :meth:`discard` (Node lists a
        socket in ``agent.sockets`` until its ``'close'`` has been handled)."""
        if self._watch is not None:
            self._watch.close()
        if self.conn is not None:
            self.conn.close()

    def detach(self) -> tuple[Socket, bytes]:
        """Hand the socket over (Upgrade, CONNECT): no longer pooled.  Returns it and
        the bytes already read past the response head."""
        conn = self._let_go()
        assert conn is not None
        _, rest = conn.wire.detach()
        self.agent.detach(conn)
        return conn.socket, rest


#: id(connection) -> the weak reference to the exchange holding it (see _hold); the
#: connection is alive while listed (the reference's callback holds it).
_HOLDERS: dict[int, weakref.ReferenceType[ClientExchange]] = {}


def _reclaim_dropped(agent: Agent, conn: ClientConnection, ref: weakref.ReferenceType[ClientExchange]) -> None:
    """The exchange holding ``conn`` was freed without letting it go."""
    if _HOLDERS.get(id(conn)) is ref:
        del _HOLDERS[id(conn)]
    _reclaim_abandoned(agent, conn)


def _reclaim_abandoned(agent: Agent, conn: ClientConnection) -> None:
    """Finalizer of an exchange dropped while holding a connection: destroy it on the
    loop's next turn, never in the middle of the pool bookkeeping that a garbage
    collection may interrupt."""
    try:
        gevent.get_hub().loop.run_callback(agent.destroy_connection, conn)
    except Exception:  # interpreter shutdown: nothing left to give back to
        conn.close()


#: How often held responses are looked at (seconds): a server that closes under a
#: response nobody reads is noticed within about twice this.
HELD_TICK = 0.1


class _HeldResponses:
    """Exchanges whose response body waits for a reader.  A timer ticks while there
    are any; at a tick, an exchange held since the tick before, that nobody is
    reading, gets its watch (and leaves the table).  Exchanges are held weakly (keyed
    by id): one abandoned mid-body is still freed at once, and its finalizer gives
    the connection back."""

    def __init__(self) -> None:
        self._held: dict[int, tuple[int, weakref.ReferenceType[ClientExchange], tuple[Any, Any, Any]]] = {}
        self._tick = 0
        self._timer: Any = None

    def hold(self, exchange: ClientExchange, callbacks: tuple[Any, Any, Any]) -> None:
        # The exchange's own weak reference to itself (its reclaim guard, set while it
        # holds a connection, as it does here) serves: no second one per response.
        self._held[id(exchange)] = (self._tick, exchange._reclaim or weakref.ref(exchange), callbacks)
        if self._timer is None:
            self._timer = gevent.get_hub().loop.timer(HELD_TICK, HELD_TICK)
            self._timer.start(self._on_tick)

    def release(self, exchange: ClientExchange) -> None:
        self._held.pop(id(exchange), None)

    def _on_tick(self) -> None:
        tick = self._tick
        self._tick = tick + 1
        for key, (since, ref, callbacks) in list(self._held.items()):
            exchange = ref()
            if exchange is None:
                del self._held[key]  # dropped without its body read: its finalizer ran
                continue
            if since == tick or exchange._reading:
                continue  # held since this tick began, or its reader sees the server
            del self._held[key]
            exchange._begin_watch(*callbacks)
        if not self._held:
            self._timer.close()
            self._timer = None


_local = threading.local()


def _held() -> _HeldResponses:
    """This thread's table (a hub, and its timer, belong to one thread)."""
    try:
        return _local.held  # type: ignore[no-any-return]
    except AttributeError:
        _local.held = _HeldResponses()
        return _local.held  # type: ignore[no-any-return]
