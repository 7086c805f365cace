"""The wire: one HTTP/1.1 connection over a gevent socket, whichever parser reads it.

Theory of operation
-------------------
This is the only code that calls ``recv`` or ``send`` on a connected socket; the
server, the client and the message objects talk to a :class:`Wire` through a
handful of methods::

    read_head()      -> Head | None      the next request (server) or response (client)
    read_body()      -> bytes            the next piece of the body, b'' at its end
    read_rest_of_body() -> bytes | None  all the rest of a Content-Length body, in
                                         one buffer (None: read it piece by piece)
    send_head(head, framing, ...)        a request or response head, serialised and
                                         framed above, optionally with the whole body
                                         and its end in one write
    send_data(b) / send_end(trailers)
    send_informational(status)           100 Continue and friends
    start_next_cycle() -> bool           keep-alive: ready for the next exchange?
    detach()         -> (socket, bytes)  hand the socket over (Upgrade, CONNECT)
    poll_input()     -> int | None       take what the socket has now, without waiting

Parsing is not done here: a sans-I/O :class:`~greenhttps._parse.Parser` (h11 or
llhttp, chosen above this module by :mod:`._parsers` and passed in as a class) is
fed bytes and hands back heads, body pieces and trailers.  The wire has **one I/O
loop** (:meth:`Wire._receive`) for either parser: it honours the idle timer and the
phase deadlines, consumes the bytes :meth:`poll_input` stashed (``_early``) before
it reads the socket again, and feeds the parser.  Its fast path is a Content-Length
body: :meth:`read_rest_of_body` takes what the parser holds of it and reads the rest
from the socket straight into one buffer, telling the parser only the count.

Framing is decided once in each direction: an incoming message's by the parser
(``Head.framing`` and friends), an outgoing one's by the message layer, which hands
the serialised head and its :class:`OutgoingFraming` to :meth:`Wire.send_head` (see
:func:`._outgoing.response_framing`; :mod:`._wire_format` serialises, neither parser
writes a byte).  The wire counts the body
against that framing and tracks the end of message and ``Connection: close``.

Time: the wire knows two kinds of timer, both in seconds.  ``idle`` is the socket
inactivity timeout (Node's ``socket.setTimeout``): when it fires, ``on_idle`` is
asked whether to keep waiting (a ``'timeout'`` listener exists) or to give up
(:class:`greenhttps.errors.IdleTimeout`).  A *deadline* (monotonic time) bounds a
whole phase such as "headers complete" and raises :class:`DeadlineExceeded` naming
the phase; the owner decides what to answer.

Size: this module is longer than STYLE's guide (about 570 lines) because it is both
halves of the socket -- the read loop with its fast path and :meth:`poll_input`, and
the writes with corking and the graceful close; splitting them would put the idle
timer and the close logic in two places.
"""

from __future__ import annotations

import io
import socket
import ssl
import time
from typing import Callable, Sequence

from . import _sockio, errors
from ._options import format_ms
from ._parse import Head, HeaderPairs, Parser
from ._tlsbio import BioSSLSocket
from ._wire_format import Framing, OutgoingFraming, response_head
from .errors import IdleTimeout

__all__ = ["Wire", "Head", "DeadlineExceeded", "IdleTimeout", "HeaderPairs"]

_RECV_SIZE = 65536
_TLS_RECORD = 16384
#: Writes at least this large go out corked (see :meth:`Wire._cork`).
_CORK_AT = 256 * 1024
_TCP_CORK = getattr(socket, "TCP_CORK", None)
_TCP_FAMILIES = (socket.AF_INET, socket.AF_INET6)
_WAIT_EXCEPTIONS = (ssl.SSLWantReadError, ssl.SSLWantWriteError, BlockingIOError, socket.timeout)
_INFORMATIONAL_REASONS = {100: "Continue", 101: "Switching Protocols", 102: "Processing", 103: "Early Hints"}


class DeadlineExceeded(Exception):
    """A phase deadline passed (``phase`` is 'headers' or 'request')."""

    def __init__(self, phase: str) -> None:
        super().__init__(phase)
        self.phase = phase


def _aborted() -> errors.ConnectionResetError:
    return errors.ConnectionResetError("aborted: peer closed before the body ended")


class Wire:
    """An HTTP/1.1 connection in one role (``client=True``: we send requests and read
    responses; else the reverse), its messages read by a ``parser`` (a class)."""

    __slots__ = (
        "sock",
        "_client",
        "_parser",
        "_early",
        "_early_eof",
        "last_io",
        "_out",
        "_out_done",
        "_sent_interim",
        "_idle",
        "on_idle",
        "trailers",
        "bytes_received",
        "closed",
    )

    def __init__(
        self,
        sock: socket.socket | BioSSLSocket,
        *,
        parser: type[Parser],
        client: bool = False,
        max_header_size: int = 16384,
        max_headers_count: int = 2000,
        strict: bool = True,
        require_host: bool = True,
        idle_timeout: float | None = None,
        on_idle: Callable[[], bool] | None = None,
    ) -> None:
        self.sock = sock
        self._client = client
        self._parser = parser(client=client, max_header_size=max_header_size,
                              max_headers_count=max_headers_count, strict=strict, require_host=require_host)
        #: Bytes :meth:`poll_input` took from the socket, not yet given to the parser:
        #: every read takes them first.
        self._early = bytearray()
        #: :meth:`poll_input` met the end of the stream: after ``_early``, reads get 0.
        self._early_eof = False
        #: When the socket last carried a byte either way (monotonic seconds): the
        #: idle clock of :mod:`greenhttps._watch` counts from it.
        self.last_io = time.monotonic()
        #: The framing of the message we are sending (None before its head).
        self._out: OutgoingFraming | None = None
        self._out_done = False
        self._sent_interim = False
        self._idle = idle_timeout
        sock.settimeout(idle_timeout)
        #: Called when the socket has been idle for ``idle_timeout``; returns True to
        #: keep waiting (someone handled ``'timeout'``), False to fail the operation.
        self.on_idle = on_idle
        self.trailers: HeaderPairs = []
        #: Bytes received in the current exchange (0 means "nothing yet": a failed
        #: reused socket may then be retried).
        self.bytes_received = 0
        self.closed = False

    # ----------------------------------------------------------------- state

    def set_idle_timeout(self, seconds: float | None) -> None:
        self._idle = seconds or None
        self.sock.settimeout(self._idle)

    @property
    def idle_timeout(self) -> float | None:
        return self._idle

    @property
    def peer_closed(self) -> bool:
        """The peer has closed its side (the parser met the end of the stream)."""
        return self._parser.eof

    @property
    def response_complete(self) -> bool:
        """Our side of the current exchange has been sent in full."""
        return self._out_done

    @property
    def peer_wants_100_continue(self) -> bool:
        """The client sent ``Expect: 100-continue`` and is still waiting for an answer."""
        return self._parser.wants_100_continue and not self._sent_interim and self._out is None

    @property
    def message_complete(self) -> bool:
        """The peer's current message has been read to its end."""
        return self._parser.done

    @property
    def keep_alive(self) -> bool:
        """Both sides still intend to reuse the connection after this exchange."""
        out = self._out
        return self._parser.keep_alive and (out is None or not out.close)

    @property
    def head_started(self) -> bool:
        """Some bytes of the next message are buffered (a pipelined request)."""
        return self._parser.head_started or bool(self._early)

    def trailing_error(self) -> errors.ProtocolError | None:
        """The parse error for bytes past the message just read that cannot start
        another (:meth:`Parser.next_start_error`); None if there is none."""
        return self._parser.next_start_error()

    def start_next_cycle(self, *, after_close: bool = False) -> bool:
        """Reset for the next exchange; False if the connection cannot be reused.

        ``after_close``: even though the last message said the connection closes (to
        read requests already pipelined past it, see :meth:`buffered_head`)."""
        out = self._out
        if not self._out_done or out is None or (out.close and not after_close) or not self._parser.start_next():
            return False
        self._out = None
        self._out_done = self._sent_interim = False
        self.trailers = []
        self.bytes_received = 0
        return True

    # --------------------------------------------------------------- reading

    def read_head(
        self,
        *,
        deadline: float | None = None,
        first_byte_timeout: float | None = None,
        headers_timeout: float | None = None,
    ) -> Head | None:
        """Read the next request (server) or response (client) head.

        ``first_byte_timeout``: how long to wait for the head to start (the
        keep-alive timeout); when it passes with nothing received, None is returned,
        as for a clean close.  ``headers_timeout``, counted from the first byte, and
        ``deadline`` (absolute) bound the whole head: :class:`DeadlineExceeded`.
        A 1xx response is returned like any other head (its ``status`` tells).
        Raises :class:`greenhttps.errors.ProtocolError` for a malformed head.
        """
        parser = self._parser
        if first_byte_timeout is not None and not parser.head_started and not self._early and not parser.eof:
            try:
                self._receive(time.monotonic() + first_byte_timeout, "keep-alive", wait_first=True)
            except DeadlineExceeded:
                return None
        if deadline is None and headers_timeout is not None and parser.head_started:
            deadline = time.monotonic() + headers_timeout
        while True:
            head = parser.next_head()
            if head is not None:
                break
            if parser.eof:
                return None
            self._receive(deadline, "headers", wait_first=not parser.head_started)
            if deadline is None and headers_timeout is not None:
                deadline = time.monotonic() + headers_timeout
        return head

    def buffered_head(self) -> Head | None:
        """The next head if its bytes have already arrived (pipelined); None
        otherwise.  Never waits.  Raises like :meth:`read_head` for a malformed one."""
        self.poll_input()
        parser = self._parser
        head = parser.next_head()
        if head is None and self._early:
            self._receive(None, "headers")  # feeds the stash; never waits for a stash
            head = parser.next_head()
        return head

    def read_body(self, *, deadline: float | None = None) -> bytes:
        """The next piece of the peer's body; b'' once it has all been read.

        After the end, :attr:`trailers` holds any trailer fields.  A peer that closes
        before the body is complete raises ``ConnectionResetError`` ('aborted').
        """
        parser = self._parser
        while True:
            data = parser.next_body()
            if data is not None:
                if not data:
                    self.trailers = parser.trailers
                return data
            if parser.eof:
                raise _aborted()
            self._receive(deadline, "request")

    def read_rest_of_body(self, *, deadline: float | None = None) -> bytes | None:
        """All the rest of a Content-Length body as one bytes object, read from the
        socket straight into it; None, having read nothing, for another framing.
        The next :meth:`read_body` returns b''.

        Why: reading a large body piece by piece and joining the pieces holds it twice
        at the peak, and a heap that grows and shrinks by that much for every response
        pays a page fault per 4 KiB (at 1 MiB: 0.5 GB/s rather than 1.2 here).
        """
        parser = self._parser
        total = parser.body_remaining
        if total is None:
            return None
        first = parser.take_buffered_body()
        # No room is made before the first bytes come: a peer that declares a length
        # and sends nothing holds nothing.
        if not first:
            if not self._receive(deadline, "request"):
                raise _aborted()
            first = parser.take_buffered_body()
        if parser.done:
            return first
        out = io.BytesIO()
        out.write(first)
        filled = len(first)
        while not parser.done:
            capacity = grow_body_buffer(out, filled, total)
            with out.getbuffer() as view:
                while filled < capacity:
                    count = self._receive(deadline, "request", view[filled:capacity])
                    if not count:
                        parser.feed(b"")
                        raise _aborted()
                    filled += count
                    parser.body_received(count)
        pending = getattr(self.sock, "pending", None)
        if pending is not None and pending():
            # Bytes past the body that came in its last TLS record: OpenSSL holds
            # them, where neither head_started nor a select() would see them.
            self._receive(deadline, "request")
        # BytesIO hands over its own buffer when it holds exactly its contents: no copy.
        return out.getvalue()

    def poll_input(self) -> int | None:
        """Take whatever the socket has ready now, without waiting or switching
        greenlets (for a hub callback while a handler runs): the bytes are kept, in
        order, for the next read.  Returns their count; 0 when the peer has closed
        (EOF, TLS close_notify); None when nothing is ready.  A reset raises
        :class:`greenhttps.errors.NetworkError`."""
        try:
            data = _sockio.recv_now(self.sock, _RECV_SIZE)
        except OSError as exc:
            raise errors.from_os_error(exc) from exc
        if data is None:
            return None
        if not data:
            self._early_eof = True  # the reads after the stash must see the end too
            return 0
        self._early += data
        self.last_io = time.monotonic()
        return len(data)

    @property
    def early_size(self) -> int:
        """How many bytes :meth:`poll_input` holds for the next read."""
        return len(self._early)

    def _receive(self, deadline: float | None, phase: str, into: memoryview | None = None, *,
                 wait_first: bool = False) -> int:
        """The one I/O loop.  Feed the parser one recv() worth of bytes, honouring the
        idle timer and a deadline; or, given ``into``, put them there for the caller
        instead.  Bytes :meth:`poll_input` stashed come first.  Returns the count (0:
        the peer has closed).  ``wait_first``: see :func:`_sockio.recv`."""
        early = self._early
        if not early and self._early_eof:
            if into is None:
                self._parser.feed(b"")
            return 0
        if early:
            if into is None:
                stashed = bytes(early)
                early.clear()
                self._parser.feed(stashed)
                taken = len(stashed)
            else:
                taken = min(len(early), len(into))
                into[:taken] = early[:taken]
                del early[:taken]
            self.bytes_received += taken
            return taken
        sock = self.sock
        reported = False  # 'timeout' fires once per idle period, as Node's
        while True:
            timeout = None if reported else self._idle
            deadline_first = False
            if deadline is not None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise DeadlineExceeded(phase)
                if timeout is None or remaining < timeout:
                    timeout, deadline_first = remaining, True
            try:
                if into is None:
                    data = _sockio.recv(sock, _RECV_SIZE, timeout, wait_first=wait_first)
                    count = None if data is None else len(data)
                else:
                    count = _sockio.recv_into(sock, into, timeout)
            except OSError as exc:
                raise errors.from_os_error(exc) from exc
            if count is None:  # timed out
                if deadline_first:
                    continue  # the deadline's timer: raises above once it has really passed
                if self.on_idle is not None and self.on_idle():
                    reported = True
                    continue
                raise IdleTimeout(f"socket idle timeout: idle for {format_ms((timeout or 0) * 1000)}", "ETIMEDOUT")
            self.bytes_received += count
            self.last_io = time.monotonic()
            if into is None:
                self._parser.feed(data)  # type: ignore[arg-type]
            return count

    def discard_body(self, limit: int, *, deadline: float | None = None) -> bool:
        """Read and drop the rest of the peer's body, up to ``limit`` bytes.

        True if the body ended within the limit (the connection can be reused).
        """
        while limit >= 0:
            chunk = self.read_body(deadline=deadline)
            if not chunk:
                return self.message_complete
            limit -= len(chunk)
        return False

    # --------------------------------------------------------------- writing

    def _write(self, data: bytes | memoryview) -> None:
        if len(data) >= _CORK_AT and self._cork(True):
            try:
                self._write_all(data)
            finally:
                self._cork(False)
        else:
            self._write_all(data)

    def _cork(self, on: bool) -> bool:
        """TCP_CORK on or off; False where there is none (not Linux, not TCP).

        Why: TLS writes one record (16 KiB) per send(), and with Nagle off each one
        leaves as its own segment.  Corked, a large write leaves in full-size
        segments, and both ends do less work per byte: 1 MiB responses went from a
        median 1,096 to 1,162 MiB/s, and 853 to 1,024 in a noisier hour (alternating
        runs).  64 KiB responses lost 8% to the two extra system calls, hence
        :data:`_CORK_AT`.  Uncorking pushes out the last partial segment at once.
        """
        if _TCP_CORK is None or self.sock.family not in _TCP_FAMILIES:
            return False
        try:
            self.sock.setsockopt(socket.IPPROTO_TCP, _TCP_CORK, on)
        except OSError:  # closed meanwhile: the write reports it
            return False
        return True

    def _write_all(self, data: bytes | memoryview) -> None:
        sock = self.sock
        view = memoryview(data)
        reported = False  # 'timeout' fires once per idle period, as Node's
        while view:
            try:
                sent = _sockio.send(sock, view, None if reported else self._idle)
            except OSError as exc:
                raise errors.from_os_error(exc) from exc
            if sent is None:  # timed out
                if self.on_idle is not None and self.on_idle():
                    reported = True
                    continue
                raise IdleTimeout(f"socket idle timeout while writing: idle for {format_ms((self._idle or 0) * 1000)}", "ETIMEDOUT")
            self.last_io = time.monotonic()
            if sent == len(view):
                return  # all of it at once (the usual case): no empty view to make
            view = view[sent:]

    def _send(self, pieces: Sequence[bytes], *, end: bool = False) -> None:
        """Write ``pieces`` in as few sends as possible; ``end``: they finish our message."""
        try:
            if len(pieces) == 1:
                data = pieces[0]
                if len(data) < _CORK_AT:
                    self._write_all(data)  # what _write does for it, one call fewer (every message)
                else:
                    self._write(data)
            elif sum(map(len, pieces)) <= _RECV_SIZE:
                self._write(b"".join(pieces))
            else:
                for piece in pieces:
                    if piece:
                        self._write(piece)
        except BaseException:
            # Half a message may be on the wire: the connection cannot be reused.
            self._poison()
            raise
        if end:
            self._out_done = True

    def _poison(self) -> None:
        if self._out is None:
            self._out = OutgoingFraming(Framing.NONE)
        self._out.close = True

    def _body_pieces(self, out: OutgoingFraming, body: bytes | None, end: bool, trailers: HeaderPairs | None) -> list[bytes]:
        try:
            pieces = list(out.frame(body)) if body else []
            if end:
                tail = out.end(trailers)
                if tail:
                    pieces.append(tail)
        except errors.InvalidArgumentError:
            self._poison()
            raise
        return pieces

    def send_head(self, head: bytes, framing: OutgoingFraming, *, body: bytes | None = None,
                  end: bool = False) -> None:
        """Send a request or response head, and optionally the body and the end of the
        message in the same write.

        ``head`` is serialised and ``framing`` decided by the message layer (see
        :func:`~greenhttps._outgoing.response_framing` and ``request_framing``):
        the wire counts the body against it and says the connection ends with this
        message when ``framing.close``.
        """
        if self._out is not None:
            raise errors.InvalidArgumentError("the head of this message was already sent", "ERR_HTTP_HEADERS_SENT")
        self._out = framing
        if end and framing.kind is Framing.LENGTH and framing.remaining == (len(body) if body else 0):
            # The whole message with its exact length (most of them): one piece, without
            # the general framing's calls (frame(), end(), a join of the pieces).
            framing.remaining = 0
            self._send((head + body,) if body else (head,), end=True)
            return
        pieces = [head]
        pieces.extend(self._body_pieces(framing, body, end, None))
        self._send(pieces, end=end)

    def expect_response_to(self, method: str, headers: HeaderPairs) -> None:
        """Client: the request about to be sent (its method frames the response)."""
        self._parser.expect_response_to(method, headers)

    def send_informational(self, status: int, headers: HeaderPairs | None = None, reason: str = "") -> None:
        reason = reason or _INFORMATIONAL_REASONS.get(status, "")
        self._sent_interim = True
        self._write(response_head(status, reason.encode("latin-1"), headers or ()))

    def send_data(self, data: bytes) -> None:
        out = self._out
        if not data:
            return
        if out is None or self._out_done:
            raise errors.InvalidArgumentError("no message body is being sent", "ERR_STREAM_WRITE_AFTER_END")
        self._send(self._body_pieces(out, data, False, None))

    def send_end(self, trailers: HeaderPairs | None = None, body: bytes | None = None) -> None:
        out = self._out
        if out is None or self._out_done:
            raise errors.InvalidArgumentError("no message body is being sent", "ERR_STREAM_WRITE_AFTER_END")
        self._send(self._body_pieces(out, body, True, trailers), end=True)

    def send_raw(self, data: bytes) -> None:
        """Write bytes as they are, outside any message: the canned reply to a
        request that could not be parsed (no head was read, so there is no framing
        to follow)."""
        self._write(data)

    # --------------------------------------------------------------- lifecycle

    def detach(self) -> tuple[socket.socket | BioSSLSocket, bytes]:
        """Give up the socket (protocol switch): returns it and the bytes already
        read past the head (or body), those :meth:`poll_input` took included.  The
        request body, if any, must have been read."""
        data = self._parser.take_buffered() + bytes(self._early)
        self._early.clear()
        self.closed = True
        # What OpenSSL read ahead comes with them; user code gets a socket without
        # read-ahead (it may select() on it and trust pending(), as on any other).
        return self.sock, data + _sockio.hand_over(self.sock)

    def close(self) -> None:
        """Close the socket now (idempotent)."""
        if self.closed:
            return
        self.closed = True
        try:
            self.sock.close()
        except OSError:
            pass

    def shutdown_and_close(self, linger: float = 0.1) -> None:
        """Graceful close: half-close, drain briefly, close.

        Closing with unread input makes the kernel send RST, which can destroy a
        response the peer has not read yet (RFC 9112 §9.6).
        """
        if self.closed:
            return
        sock = self.sock
        try:
            sock.shutdown(socket.SHUT_WR)
            sock.settimeout(linger)
            deadline = time.monotonic() + linger
            while time.monotonic() < deadline:
                if not sock.recv(_RECV_SIZE):
                    break
        except (OSError, ValueError):
            pass
        self.close()

    def is_reusable_idle(self) -> bool:
        """For a pooled client socket: True if it is still open and silent.

        A readable idle keep-alive socket means the server closed it (EOF) or sent
        something unasked; neither can carry our next request.
        """
        sock = self.sock
        if self.closed:
            return False
        try:
            fd = sock.fileno()
            if fd < 0:
                return False
            # Never yields (gevent's select would, even with no timeout, and the
            # Agent's bookkeeping around this must not: a request dialing meanwhile
            # went past max_sockets under Celery's gevent pool), and works past fd 1023.
            # held(): with read-ahead, a close_notify (or anything) that came with
            # the response's last record waits inside OpenSSL, not in the kernel.
            readable = _sockio.held(sock) or _sockio.readable_now(fd)
        except (OSError, ValueError):
            return False
        if not readable:
            return True
        # TLS 1.3 session tickets make the socket readable without application data.
        saved = sock.timeout
        try:
            sock.settimeout(0.0)
            sock.recv(1)
        except _WAIT_EXCEPTIONS:
            return True
        except OSError:
            return False
        finally:
            try:
                sock.settimeout(saved)
            except OSError:
                pass
        return False  # EOF, or bytes nobody asked for: either way unusable


def grow_body_buffer(out: io.BytesIO, filled: int, total: int) -> int:
    """Make room in ``out`` for more of a ``total``-byte body, ``filled`` bytes of
    which are in: as much again, and at least one TLS record, so that a peer that
    declares a huge length and sends little holds little (the room is zero-filled,
    so it is resident).  Returns the new capacity; the position stays at
    ``filled``.  (Growing a large buffer is mremap, not a copy.)"""
    capacity = min(total, filled + max(filled, _TLS_RECORD))
    out.seek(capacity - 1)
    out.write(b"\0")
    out.seek(filled)
    return capacity
