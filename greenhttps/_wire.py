"""The wire: one HTTP/1.1 connection over a gevent socket, whichever parser reads it.

Theory of operation
-------------------
This module and its two parser-specific subclasses (:mod:`._wire_h11`, the default,
and :mod:`._wire_llhttp`, when httptools is installed) are the only code that calls
``recv`` or ``send`` on a connected socket; the server, the client and the message
objects talk to a :class:`Wire` through a handful of methods::

    read_head()      -> Head | None      the next request (server) or response (client)
    read_body()      -> bytes            the next piece of the body, b'' at its end
    read_rest_of_body() -> bytes | None  all the rest of a Content-Length body, in
                                         one buffer (None: read it piece by piece)
    send_head(...)                       a request or response head, optionally with
                                         the whole body and its end in one write
    send_data(b) / send_end(trailers)
    send_informational(status)           100 Continue and friends
    start_next_cycle() -> bool           keep-alive: ready for the next exchange?
    detach()         -> (socket, bytes)  hand the socket over (Upgrade, CONNECT)

This base class owns everything but parsing: socket I/O and its timers, what is sent
(serialised by :mod:`._wire_format`, with the wire tracking framing, end of message
and ``Connection: close``), the graceful close, and the strict checks that both
parsers run on the raw bytes.  The parsers are lenient where it matters (see
``shared/HARDENING.md``): h11 accepts bare LF line endings, obs-fold, control
characters in values, Content-Length together with Transfer-Encoding and folds
repeated Content-Lengths; each of those was a request-smuggling CVE elsewhere.  So a
head is checked as bytes before either parser is believed -- a few ``bytes.count``
calls and one regex over a few hundred bytes.

Time: the wire knows two kinds of timer, both in seconds.  ``idle`` is the socket
inactivity timeout (Node's ``socket.setTimeout``): when it fires, ``on_idle`` is
asked whether to keep waiting (a ``'timeout'`` listener exists) or to give up.  A
*deadline* (monotonic time) bounds a whole phase such as "headers complete" and
raises :class:`DeadlineExceeded` naming the phase; the owner decides what to answer.
"""

from __future__ import annotations

import io
import os
import re
import socket
import ssl
import time
from typing import Callable, Iterable, Sequence

from . import _sockio, errors
from ._tlsbio import BioSSLSocket
from ._wire_format import (
    Framing,
    OutgoingFraming,
    frame_request,
    frame_response,
    request_head,
    response_head,
)

__all__ = ["Wire", "Head", "DeadlineExceeded", "IdleTimeout", "HeaderPairs", "transfer_coding_status", "wire_class"]

HeaderPairs = list[tuple[bytes, bytes]]

#: Longest request line accepted before answering 414 (Node and nginx use 8 KiB).
MAX_REQUEST_LINE = 8192

#: Longest chunk-size line (with its extensions) accepted in a chunked body.
MAX_CHUNK_LINE = 16384
_MAX_CHUNK_SIZE = 2**63 - 1

_RECV_SIZE = 65536
_TLS_RECORD = 16384
#: Writes at least this large go out corked (see :meth:`Wire._cork`).
_CORK_AT = 256 * 1024
_TCP_CORK = getattr(socket, "TCP_CORK", None)
_TCP_FAMILIES = (socket.AF_INET, socket.AF_INET6)
_WAIT_EXCEPTIONS = (ssl.SSLWantReadError, ssl.SSLWantWriteError, BlockingIOError, socket.timeout)

# RFC 9110 §5.5: field values are VCHAR / obs-text / SP / HTAB.  CR and LF are
# checked separately (they must come as CRLF pairs ending lines).
_CONTROL_CHAR = re.compile(rb"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
# Searches rather than ``b"," in value``: CPython's ``bytes in bytes`` first
# tries the needle as an integer and builds (then drops) a TypeError, ~0.15 µs a test.
_OBS_FOLD = re.compile(rb"\n[ \t]")
_HOST_DELIMITER = re.compile(rb"[, \t]")
_HEAD_END = b"\r\n\r\n"
_VERSIONS = (b"1.1", b"1.0")
_INFORMATIONAL_REASONS = {100: "Continue", 101: "Switching Protocols", 102: "Processing", 103: "Early Hints"}
_CONTENT_LENGTH_LINE = re.compile(rb"\r\ncontent-length[ \t]*:([^\r\n]*)", re.IGNORECASE)
_TRANSFER_ENCODING_LINE = re.compile(rb"\r\ntransfer-encoding[ \t]*:([^\r\n]*)", re.IGNORECASE)


#: Response heads already framed and serialised (see ``Wire._response_head``).
_RESPONSE_HEADS: dict[tuple[object, ...], tuple[bytes, str, int, bool]] = {}
_RESPONSE_HEADS_MAX = 512


class DeadlineExceeded(Exception):
    """A phase deadline passed (``phase`` is 'headers' or 'request')."""

    def __init__(self, phase: str) -> None:
        super().__init__(phase)
        self.phase = phase


class IdleTimeout(errors.TimeoutError):
    """The socket was idle for longer than its timeout and nobody wanted to wait."""


class Head:
    """A parsed request or response head, as received.

    ``headers`` are ``(name, value)`` byte pairs with the sender's case kept.
    """

    __slots__ = ("method", "target", "status", "reason", "http_version", "headers")

    def __init__(
        self,
        *,
        method: str = "",
        target: str = "",
        status: int = 0,
        reason: str = "",
        http_version: str,
        headers: HeaderPairs,
    ) -> None:
        self.method, self.target = method, target
        self.status, self.reason = status, reason
        self.http_version, self.headers = http_version, headers

    def __repr__(self) -> str:
        first = f"{self.method} {self.target}" if self.method else f"{self.status} {self.reason}"
        return f"<Head {first} HTTP/{self.http_version}>"


def transfer_coding_status(head: bytes) -> int | None:
    """How a server refuses a head's Transfer-Encoding: 400 when a coding repeats (in
    one field or two: malformed), 501 when the last one is not chunked (unsupported),
    None when there is none or it ends in chunked.  ``head`` is one whole head."""
    values = _TRANSFER_ENCODING_LINE.findall(head)
    if not values:
        return None
    codings = [c.strip().lower() for value in values for c in value.split(b",")]
    if len(values) > 1 or len(codings) != len(set(codings)):
        return 400
    return 501 if codings[-1] != b"chunked" else None


def _protocol_error(message: str, status: int = 400, code: str = "HPE_INVALID") -> errors.ProtocolError:
    return errors.ProtocolError(message, code, status_hint=status)


class Wire:
    """An HTTP/1.1 connection in one role (``client=True`` or server); subclasses
    parse (:class:`~greenhttps._wire_h11.H11Wire`, :class:`~greenhttps._wire_llhttp.LlhttpWire`)."""

    __slots__ = (
        "sock",
        "_client",
        "_out",
        "_out_done",
        "_sent_interim",
        "_request_method",
        "_peer_http10",
        "_strict",
        "_max_headers_count",
        "_max_header_size",
        "_idle",
        "on_idle",
        "trailers",
        "bytes_received",
        "closed",
        "_early",
        "_early_eof",
        "last_io",
    )

    def __init__(
        self,
        sock: socket.socket | BioSSLSocket,
        *,
        client: bool = False,
        max_header_size: int = 16384,
        max_headers_count: int = 2000,
        strict: bool = True,
        idle_timeout: float | None = None,
        on_idle: Callable[[], bool] | None = None,
    ) -> None:
        self.sock = sock
        self._client = client
        self._strict = strict
        self._max_headers_count = max_headers_count
        self._max_header_size = max_header_size
        #: The framing of the message we are sending (None before its head).
        self._out: OutgoingFraming | None = None
        self._out_done = False
        self._sent_interim = False
        self._request_method = ""
        self._peer_http10 = False
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
        #: Bytes :meth:`poll_input` took from the socket while nobody was reading:
        #: every read takes them first, in order.
        self._early = bytearray()
        self._early_eof = False
        #: When the socket last carried a byte either way (monotonic seconds): the
        #: idle clock of :mod:`greenhttps._watch` counts from it.
        self.last_io = time.monotonic()

    # ----------------------------------------------------------------- state

    def set_idle_timeout(self, seconds: float | None) -> None:
        self._idle = seconds or None
        self.sock.settimeout(self._idle)

    @property
    def idle_timeout(self) -> float | None:
        return self._idle

    @property
    def response_complete(self) -> bool:
        """Our side of the current exchange has been sent in full."""
        return self._out_done

    # ------------------------------------------- what each parser provides

    @property
    def peer_wants_100_continue(self) -> bool:
        """The client sent ``Expect: 100-continue`` and is still waiting for an answer."""
        raise NotImplementedError

    @property
    def message_complete(self) -> bool:
        """The peer's current message has been read to its end."""
        raise NotImplementedError

    @property
    def keep_alive(self) -> bool:
        """Both sides still intend to reuse the connection after this exchange."""
        raise NotImplementedError

    @property
    def head_started(self) -> bool:
        """Some bytes of the next message are buffered (a pipelined request)."""
        raise NotImplementedError

    def start_next_cycle(self) -> bool:
        """Reset for the next exchange; False if the connection cannot be reused."""
        raise NotImplementedError

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
        raise NotImplementedError

    def read_body(self, *, deadline: float | None = None) -> bytes:
        """The next piece of the peer's body; b'' once it has all been read.

        After the end, :attr:`trailers` holds any trailer fields.  A peer that closes
        before the body is complete raises ``ConnectionResetError`` ('aborted').
        """
        raise NotImplementedError

    def read_rest_of_body(self, *, deadline: float | None = None) -> bytes | None:
        """All the rest of a Content-Length body as one bytes object, built in place
        (llhttp: read from the socket straight into it; h11 sees every byte, so its
        pieces are copied in as they come); None, having read nothing, for another
        framing (and, with h11, under 64 KiB).  The next :meth:`read_body` returns b''.

        Why: reading a large body piece by piece and joining the pieces holds it twice
        at the peak, and a heap that grows and shrinks by that much for every response
        pays a page fault per 4 KiB (at 1 MiB: 0.5 GB/s rather than 1.2 here).
        """
        return None

    def detach(self) -> tuple[socket.socket | BioSSLSocket, bytes]:
        """Give up the socket (protocol switch): returns it and the bytes already
        read past the head.  The request body, if any, must have been read."""
        raise NotImplementedError

    def _received(self, data: bytes) -> None:
        """Take one ``recv()`` worth of bytes (b'' when the peer closed)."""
        raise NotImplementedError

    def _peer_keeps_alive(self) -> bool:
        """The peer's message allows another exchange (HTTP/1.1, no ``close``)."""
        raise NotImplementedError

    def _tell_parser(self, method: str, headers: HeaderPairs) -> None:
        """Client: the parser must know the request's method to frame the response."""
        raise NotImplementedError

    # --------------------------------------------------------------- reading

    def _receive(self, deadline: float | None, phase: str, into: memoryview | None = None, *,
                 wait_first: bool = False) -> int:
        """Feed the parser one recv() worth of bytes, honouring the idle timer and a
        deadline; or, given ``into``, put them there for the caller instead.  Returns
        the count (0: the peer has closed).  ``wait_first``: see :func:`_sockio.recv`."""
        if self._early or self._early_eof:
            return self._take_early(into)
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
                raise IdleTimeout("socket idle timeout", "ETIMEDOUT")
            self.bytes_received += count
            self.last_io = time.monotonic()
            if into is None:
                self._received(data)  # type: ignore[arg-type]
            return count

    def _take_early(self, into: memoryview | None) -> int:
        """:meth:`_receive` from the bytes :meth:`poll_input` kept."""
        early = self._early
        if not early:  # only the end of the stream is left
            if into is None:
                self._received(b"")
            return 0
        if into is None:
            data = bytes(early)
            early.clear()
            self._received(data)
            return len(data)
        count = min(len(into), len(early))
        into[:count] = early[:count]
        del early[:count]
        return count

    def poll_input(self, limit: int = _RECV_SIZE) -> int | None:
        """Take what the socket has ready, never waiting (a hub callback may call it):
        the count kept for the next read, 0 when the peer has closed, None when
        nothing was ready.  A reset raises :class:`greenhttps.errors.NetworkError`.
        At most ``limit`` bytes are taken at a time."""
        try:
            data = _sockio.recv_now(self.sock, limit)
        except OSError as exc:
            raise errors.from_os_error(exc) from exc
        if data is None:
            return None
        if not data:
            # The end of the stream: put it where the next read finds it.
            self._early_eof = True
            return 0
        self._early += data
        self.bytes_received += len(data)
        self.last_io = time.monotonic()
        return len(data)

    @property
    def early_size(self) -> int:
        """How many bytes :meth:`poll_input` holds for the next read."""
        return len(self._early)

    @staticmethod
    def _check_request_line(pending: bytes) -> None:
        if b"\n" not in pending[: MAX_REQUEST_LINE + 1]:
            raise _protocol_error("request line too long", 414, "HPE_URI_TOO_LONG")

    @staticmethod
    def _check_head_bytes(pending: bytes) -> None:
        """RFC 9112 §2.2/§5.2: CRLF line endings only, no obs-fold, no control chars."""
        end = pending.find(_HEAD_END)
        if end < 0:
            raise _protocol_error("head not terminated by CRLF CRLF", 400, "HPE_LF_EXPECTED")
        head = pending[:end]
        crlf = head.count(b"\r\n")
        if head.count(b"\n") != crlf:
            raise _protocol_error("bare LF in head", 400, "HPE_LF_EXPECTED")
        if head.count(b"\r") != crlf:
            raise _protocol_error("bare CR in head", 400, "HPE_CR_EXPECTED")
        if _OBS_FOLD.search(head):
            raise _protocol_error("obsolete line folding in head", 400, "HPE_INVALID_HEADER_TOKEN")
        if _CONTROL_CHAR.search(head):
            raise _protocol_error("control character in head", 400, "HPE_INVALID_HEADER_TOKEN")

    @staticmethod
    def _check_raw_content_length(pending: bytes) -> None:
        # h11 folds "5, 5" and equal repeated fields into one value; llhttp refuses
        # both, and so do we: a proxy in front may have read them differently.
        values = _CONTENT_LENGTH_LINE.findall(pending, 0, pending.find(_HEAD_END) + 2)
        if len(values) > 1 or not values[0].strip(b" \t").isdigit():
            raise _protocol_error("invalid Content-Length", 400, "HPE_INVALID_CONTENT_LENGTH")

    def _check_fields(self, fields: Iterable[tuple[bytes, bytes]], *, request: bool) -> bool | None:
        """Checks h11 does not make; returns whether the message declares a body
        (None: a Content-Length the caller must check in the raw head)."""
        count = hosts = lengths = 0
        has_chunked = False
        length = b""
        for name, value in fields:
            count += 1
            if len(name) not in (4, 14, 17):
                continue
            lname = name.lower()
            if lname == b"content-length":
                lengths += 1
                length = value
            elif lname == b"transfer-encoding":
                has_chunked = True
            elif lname == b"host":
                hosts += 1
                if _HOST_DELIMITER.search(value):
                    raise _protocol_error("invalid Host header", 400)
        if count > self._max_headers_count:
            raise _protocol_error("too many header fields", 431, "HPE_HEADER_OVERFLOW")
        if lengths:
            if has_chunked:
                # RFC 9112 §6.1: a sender MUST NOT send both; h11 lets TE win, which is
                # how CL.TE smuggling works.  We refuse the message outright.
                raise _protocol_error("both Content-Length and Transfer-Encoding", 400, "HPE_UNEXPECTED_CONTENT_LENGTH")
            # h11 takes "5, 5" as 5 and any size; as llhttp, one plain decimal of at
            # most 18 digits (2**63 > 10**18).
            if lengths > 1 or not length.isdigit() or len(length) > 18:
                raise _protocol_error("invalid Content-Length", 400, "HPE_INVALID_CONTENT_LENGTH")
        if request and hosts > 1:
            raise _protocol_error("more than one Host header", 400)
        if lengths:
            return None
        return has_chunked

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
                raise IdleTimeout("socket idle timeout while writing", "ETIMEDOUT")
            view = view[sent:]
            self.last_io = time.monotonic()

    def _send(self, pieces: Sequence[bytes], *, end: bool = False) -> None:
        """Write ``pieces`` in as few sends as possible; ``end``: they finish our message."""
        try:
            if len(pieces) == 1:
                self._write(pieces[0])
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

    def send_head(
        self,
        *,
        method: str = "",
        target: str = "",
        status: int = 0,
        reason: str = "",
        headers: HeaderPairs,
        body: bytes | None = None,
        end: bool = False,
    ) -> None:
        """Send a request head (``method`` given) or a response head, and optionally
        the body and the end of the message in the same write.

        ``headers`` must be valid already (:class:`OutgoingHeaders` checks them); the
        framing headers decide how the body is sent (see :mod:`._wire_format`).
        """
        if self._out is not None:
            raise errors.InvalidArgumentError("the head of this message was already sent", "ERR_HTTP_HEADERS_SENT")
        if method:
            bmethod = method.encode("ascii", "replace")
            btarget = target.encode("latin-1", "replace")
            head = request_head(bmethod, btarget, headers)
            out = frame_request(headers)
            self._tell_parser(method, headers)
        else:
            head, out = self._response_head(status, reason, headers)
        self._out = out
        pieces = [head]
        pieces.extend(self._body_pieces(out, body, end, None))
        self._send(pieces, end=end)

    def _response_head(self, status: int, reason: str, headers: HeaderPairs) -> tuple[bytes, OutgoingFraming]:
        """The head's bytes and framing, from a cache: a server answers most requests
        with the same fields (the Date changes once a second), and framing and
        serialising them anew was a tenth of the per-request cost."""
        head_request = self._request_method == "HEAD"
        keep_alive = self._peer_keeps_alive()
        key = (status, reason, tuple(headers), head_request, self._peer_http10, keep_alive)
        cached = _RESPONSE_HEADS.get(key)
        if cached is not None:
            head, kind, remaining, close = cached
            return head, OutgoingFraming(kind, remaining, close)
        pairs = list(headers)
        out = frame_response(
            pairs, status=status, head_request=head_request, peer_http10=self._peer_http10, keep_alive=keep_alive
        )
        head = response_head(status, reason.encode("latin-1"), pairs)
        if len(_RESPONSE_HEADS) >= _RESPONSE_HEADS_MAX:
            _RESPONSE_HEADS.clear()
        _RESPONSE_HEADS[key] = (head, out.kind, out.remaining, out.close)
        return head, out

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
        """Write bytes h11 did not produce: a reply to a request h11 could not parse
        (its state machine is then in ERROR and will not serialise anything)."""
        self._write(data)

    # --------------------------------------------------------------- lifecycle

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
        import select

        sock = self.sock
        if self.closed:
            return False
        try:
            fd = sock.fileno()
            if fd < 0:
                return False
            readable, _, _ = select.select([fd], [], [], 0)
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


def wire_class(*, client: bool) -> type[Wire]:
    """llhttp (Node's parser) when httptools is installed, else h11.

    ``GREENHTTPS_PARSER=h11`` forces h11, ``llhttp`` insists on httptools; read once
    per call (servers and the client each choose once, at import).
    """
    choice = os.environ.get("GREENHTTPS_PARSER", "auto").lower()
    # Both import this module: only at call time.
    if choice != "h11":
        try:
            from ._wire_llhttp import LlhttpWire
        except ImportError:
            if choice == "llhttp":
                raise
        else:
            return LlhttpWire
    from ._wire_h11 import H11Wire

    return H11Wire
