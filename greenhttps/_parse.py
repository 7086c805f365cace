"""The sans-I/O parser interface: bytes in; heads, body pieces, trailers, end out.

Theory of operation
-------------------
A :class:`Parser` reads one direction of one HTTP/1.1 connection -- requests on a
server, responses on a client -- and does no I/O: no socket, timer, TLS object or
gevent.  :class:`~greenhttps._wire.Wire` owns the socket and drives it::

    feed(data)             bytes from the peer, in order (b'': the peer closed)
    next_head()  -> Head | None       the next head; None: feed me more
    next_body()  -> bytes | None      a body piece; b'' at the end (trailers ready);
                                      None: feed me more
    body_remaining -> int | None      Content-Length body bytes still to come
    take_buffered_body() -> bytes     what of that body is already here
    body_received(n)                  n more of it were read by the caller itself
    start_next() -> bool              keep-alive: ready for the next message?
    take_buffered() -> bytes          everything past the message (protocol switch)
    expect_response_to(method, headers)   client: the request being answered
    done, keep_alive, wants_100_continue, head_started, trailers, eof   state

Bytes past the current message (pipelined requests) stay buffered, in order, for
the next one.  This module holds everything that does not depend on the parser:
finding the end of a head (the strict checks want the raw head anyway, and llhttp
would otherwise run on into the next message), the limits on a head's size, and
**framing, decided once**: from the parsed fields one pass fills the head's facts
(:attr:`Head.content_length`, ``framing``, ``keep_alive``, ``upgrade``, ``expect``),
and nothing above rescans the fields for them.  A Content-Length or close-delimited
body needs no parser at all: it is passed on as it comes, which lets the wire read
a large one straight into one buffer.  The subclasses parse what differs: a head
(:mod:`._parse_h11`, :mod:`._parse_llhttp`) and a chunked body.

The framing rules are RFC 9112 §6.3: a request with ``Transfer-Encoding`` is
chunked, with ``Content-Length`` counted, else has no body (CONNECT never has one
here, as in llhttp); a response to HEAD, a 1xx, 204, 304 or a 2xx to CONNECT has no
body whatever its head says; otherwise chunked, counted, or until the peer closes.
"""

from __future__ import annotations

from . import errors
from ._strict import (
    CLEAN_PLAIN_FRAMING,
    CLEAN_REQUEST_HEAD,
    MAX_REQUEST_LINE,
    check_field_counts,
    check_fields,
    check_head_prefix,
    check_host,
    check_raw_framing,
    check_request_line,
    check_request_line_prefix,
    check_request_target,
    check_status_line_prefix,
    clean_response_head,
    head_end,
    header_overflow_at,
    protocol_error,
    transfer_coding_status,
)
from ._wire_format import Framing

__all__ = ["Head", "HeaderPairs", "Parser", "Framing"]

HeaderPairs = list[tuple[bytes, bytes]]


class Head:
    """A parsed request or response head, as received, and what it says about framing.

    ``headers`` are ``(name, value)`` byte pairs with the sender's case kept.  The
    facts are filled by the parser once (see the module docstring):

    ``framing``         how the body is delimited (a :class:`Framing` value; NONE for
                        a message without body bytes, Content-Length 0 included)
    ``content_length``  the declared Content-Length (None: none declared)
    ``keep_alive``      the message allows another exchange (HTTP/1.1, no ``close``,
                        not close-delimited)
    ``upgrade``         an ``Upgrade`` field with ``Connection: upgrade``
    ``expect``          the ``Expect`` value lower-cased ("\\0" when repeated)
    ``keep_alive_timeout``  a response's ``Keep-Alive: timeout=`` (seconds)
    """

    __slots__ = ("method", "target", "status", "reason", "http_version", "headers", "framing",
                 "content_length", "keep_alive", "upgrade", "expect", "keep_alive_timeout")

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
        # The facts are set by Parser._decide, all of them, once per head.
        self.framing: str
        self.content_length: int | None
        self.keep_alive: bool
        self.upgrade: bool
        self.expect: str | None
        self.keep_alive_timeout: float | None

    def __repr__(self) -> str:
        first = f"{self.method} {self.target}" if self.method else f"{self.status} {self.reason}"
        return f"<Head {first} HTTP/{self.http_version}>"


def _aborted() -> errors.ConnectionResetError:
    return errors.ConnectionResetError("aborted: peer closed before the body ended")


def _says(tokens: bytes, token: bytes) -> bool:
    """``token`` is one of the (lower-cased, comma-separated) ``tokens``."""
    # find() first: ``bytes in bytes`` costs a TypeError built and dropped (see _strict).
    return tokens.find(token) >= 0 and token in (t.strip() for t in tokens.split(b","))


#: The fields _decide reads, by lower-cased name.
_KINDS = {b"content-length": 1, b"transfer-encoding": 2, b"connection": 3, b"host": 4, b"upgrade": 5,
          b"expect": 6, b"keep-alive": 7}
#: Field names as sent -> their _KINDS value (0: none): one dict lookup per field
#: instead of a lower() and a chain of comparisons.  Cleared when full, so that
#: no peer can grow it (or keep it full of names nobody else sends).
_KIND_OF: dict[bytes, int] = {}
#: ``Keep-Alive`` values as sent -> the timeout they give (a server sends the same
#: value with every response); cleared when full, as _KIND_OF.
_TIMEOUT_OF: dict[bytes, float | None] = {}
#: Host values check_host passed (a server sees the same few again and again);
#: cleared when full, as _KIND_OF.
_GOOD_HOSTS: set[bytes] = set()
_CACHE_SIZE = 512


def _kind(name: bytes) -> int:
    kind = _KINDS.get(name.lower(), 0)
    if len(name) <= 64:
        if len(_KIND_OF) >= _CACHE_SIZE:
            _KIND_OF.clear()
        _KIND_OF[name] = kind
    return kind


def _keep_alive_timeout(value: bytes) -> float | None:
    """A response's ``Keep-Alive: timeout=N`` in seconds (None: none, or unreadable)."""
    try:
        return _TIMEOUT_OF[value]
    except KeyError:
        pass
    timeout = None
    if value.find(b"timeout=") >= 0:
        try:
            timeout = float(value.split(b"timeout=")[1].split(b",")[0])
        except ValueError:
            pass
    if len(value) <= 64:
        if len(_TIMEOUT_OF) >= _CACHE_SIZE:
            _TIMEOUT_OF.clear()
        _TIMEOUT_OF[value] = timeout
    return timeout


class Parser:
    """One direction of one connection (``client=True``: responses; else requests)."""

    __slots__ = ("client", "strict", "max_header_size", "max_headers_count", "request_method", "eof",
                 "head", "framing", "done", "keep_alive", "body_left", "trailers", "_buf", "_pieces", "_body_seen",
                 "_checked", "_clean", "_fields", "_packet", "_fed", "require_host")

    def __init__(self, *, client: bool = False, max_header_size: int = 16384,
                 max_headers_count: int = 2000, strict: bool = True, require_host: bool = True) -> None:
        self.client = client
        self.strict = strict
        #: Server: an HTTP/1.1 request without ``Host`` is refused (Node's ``requireHostHeader``).
        self.require_host = require_host
        self.max_header_size = max_header_size
        self.max_headers_count = max_headers_count
        #: Client: the method of the request being answered (HEAD, CONNECT frame it).
        self.request_method = ""
        self.eof = False
        self._buf = bytearray()
        self._pieces: list[bytes] = []
        #: The last bytes received (Node's ``rawPacket``) and the count of all bytes
        #: fed: ``_buf`` always holds the newest ones, so its first byte is number
        #: ``_fed - len(_buf)`` of the stream, whatever was taken from it since.
        self._packet = b""
        self._fed = 0
        #: How much of the head in ``_buf`` has been checked line by line.
        self._checked = 0
        #: Strict, and the whole head in ``_buf`` passed in one match (so a response's
        #: status line is ``HTTP/d.d ddd[ reason]`` CRLF, as STRICT_STATUS_LINE):
        #: a clean_response_head() answer (CLEAN_PLAIN_FRAMING: check_raw_framing
        #: would pass it), True for a request; 0/False: not (yet).
        self._clean: int = 0
        #: A clean response head's fields, as clean_response_head() read them.
        self._fields: HeaderPairs = []
        self._reset()

    def _reset(self) -> None:
        self.head: Head | None = None
        self.framing = Framing.NONE
        #: The message has been read to its end (True until a head arrives).
        self.done = True
        #: The message allows another exchange (its head's ``keep_alive``).
        self.keep_alive = False
        #: Content-Length body bytes not yet passed on.
        self.body_left = 0
        self.trailers: HeaderPairs = []
        self._body_seen = False

    # ------------------------------------------------------------ bytes in

    def feed(self, data: bytes) -> None:
        """Bytes from the peer, in order; b'' when it has closed."""
        if not data:
            self.eof = True
            return
        self._packet = data
        self._fed += len(data)
        if self._buf or self.done or self.framing is Framing.CHUNKED:
            self._buf += data
        elif self.framing is Framing.LENGTH:
            # The common case of a counted body arriving: hand the bytes on without a
            # trip through the buffer.
            left = self.body_left
            if len(data) > left:
                self._buf += data[left:]
                data = data[:left]
            self._pieces.append(data)
            self.body_left = left - len(data)
            self._body_seen = True
        else:  # close-delimited
            self._pieces.append(data)
            self._body_seen = True

    @property
    def head_started(self) -> bool:
        """Bytes past the current message are buffered (a pipelined request)."""
        return bool(self._buf)

    # ------------------------------------------------------------- heads

    def next_head(self) -> Head | None:
        """The next head, or None when more bytes are needed (or the peer closed
        cleanly before one started: :attr:`eof`).  Raises ProtocolError (with Node's
        ``bytes_parsed`` and ``raw_packet``), or ConnectionResetError ('socket hang
        up') for a client whose server closed inside a head."""
        if not self._buf:
            # Nothing yet (the wire asks before each read): nothing to check or find.
            return None
        try:
            return self._next_head()
        except errors.ProtocolError as exc:
            self._locate(exc)
            raise

    def _locate(self, exc: errors.ProtocolError) -> None:
        # Node's bytesParsed counts into the last piece received; where the error is
        # not tied to a byte, the parser had read all of it.
        packet = self._packet
        at = exc.position  # in _buf
        exc.raw_packet = packet
        if at is None:
            exc.bytes_parsed = len(packet)
        else:
            into = at + (self._fed - len(self._buf)) - (self._fed - len(packet))
            exc.bytes_parsed = min(max(into, 0), len(packet))

    def next_start_error(self) -> errors.ProtocolError | None:
        """The error for bytes buffered past a complete message that cannot start
        another (llhttp reads on: ``hi world`` after a response is HPE_INVALID_CONSTANT
        at its first byte), with Node's ``bytes_parsed``; None if there is none."""
        if not self.done or not self._buf or not self.strict:
            return None
        try:
            if self.client:
                check_status_line_prefix(self._buf)
            else:
                check_request_line_prefix(self._buf)
        except errors.ProtocolError as exc:
            self._locate(exc)
            return exc
        return None

    def _next_head(self) -> Head | None:
        buf = self._buf
        end = head_end(buf)
        # The head's bytes, once it is all here (the checks and the parsers read them).
        raw = bytes(buf[:end]) if end >= 0 else b""
        if self.strict:
            self._check_lines(buf, end, raw)
        if end < 0:
            if not self.client and len(buf) > MAX_REQUEST_LINE:
                check_request_line(buf)
            if len(buf) > self.max_header_size:
                raise protocol_error("header block too large", 431, "HPE_HEADER_OVERFLOW",
                                     header_overflow_at(buf, self.max_header_size))
            if self.eof and buf:
                if self.client:
                    raise errors.ConnectionResetError("socket hang up")
                raise protocol_error("peer closed in the middle of a request head", 400)
            return None
        if end > self.max_header_size:
            status = 414 if not self.client and b"\n" not in raw[: MAX_REQUEST_LINE + 1] else 431
            raise protocol_error("header block too large", status, "HPE_HEADER_OVERFLOW",
                                 header_overflow_at(raw, self.max_header_size))
        if self.head is not None:  # after a 1xx (start_next() resets otherwise)
            self._reset()
        if self.strict and self._clean != CLEAN_PLAIN_FRAMING:
            check_raw_framing(raw, request=not self.client)
        head = self._parse_response_head(raw) if self.client else self._parse_request_head(raw)
        del buf[:end]
        self._checked = 0
        self._clean = 0
        self._decide(head, raw)
        self.head = head
        return head

    def _check_lines(self, buf: bytearray, end: int, raw: bytes) -> None:
        """The strict checks on the lines of a head as they arrive, so that a malformed
        one is answered at once (Node), not when the head ends or its timeout passes;
        both parsers see only heads that passed them."""
        checked = self._checked
        if not buf:
            return
        if checked == 0 and end >= 0:
            # The common case: a whole head in one piece, checked in one match (the
            # line-by-line checks below, and their errors, for anything else); a
            # response's, whose lines repeat from one response to the next, by its
            # lines (the same answer as CLEAN_RESPONSE_HEAD, see clean_response_head).
            if self.client:
                fields: HeaderPairs = []
                clean = clean_response_head(raw, fields)
                self._fields = fields
            else:
                clean = (buf.find(b"\n", 0, MAX_REQUEST_LINE + 1) >= 0
                         and CLEAN_REQUEST_HEAD.fullmatch(buf, 0, end) is not None)
            if clean:
                self._checked = end
                self._clean = clean
                return
        if checked == 0:
            if self.client:
                check_status_line_prefix(buf)
            else:
                check_request_line_prefix(buf)
            newline = buf.find(b"\n")
            if newline < 0:
                return
            checked = newline + 1
        stop = end if end >= 0 else buf.rfind(b"\n") + 1
        if stop > checked:
            check_head_prefix(buf, checked, stop)
            checked = stop
        self._checked = checked

    def _parse_request_head(self, raw: bytes) -> Head:
        """Parse one whole request head (the subclass's parser), strict checks included."""
        raise NotImplementedError

    def _parse_response_head(self, raw: bytes) -> Head:
        raise NotImplementedError

    def _start_chunked(self) -> None:
        """A chunked body follows the head just parsed."""

    def _decide(self, head: Head, raw: bytes) -> None:
        """Fill the head's facts and this message's framing: the one pass over the
        fields for Content-Length, Transfer-Encoding, Connection, Upgrade, Expect."""
        fields = head.headers
        strict = self.strict
        length = te = None
        connection = b""
        upgrade = False
        expect = keep_alive = None
        lengths = hosts = 0
        kind_of = _KIND_OF.get
        for name, value in fields:
            kind = kind_of(name)
            if kind is None:
                kind = _kind(name)
            if not kind:
                continue
            if kind == 1:  # Content-Length
                length = value
                lengths += 1
            elif kind == 2:  # Transfer-Encoding
                te = value if te is None else te + b"," + value
            elif kind == 3:  # Connection
                connection += b"," + value.lower()
            elif kind == 4:  # Host
                hosts += 1
                if strict and value not in _GOOD_HOSTS:
                    check_host(value)
                    if len(value) <= 64:
                        if len(_GOOD_HOSTS) >= _CACHE_SIZE:
                            _GOOD_HOSTS.clear()
                        _GOOD_HOSTS.add(value)
            elif kind == 5:  # Upgrade
                upgrade = True
            elif kind == 6:  # Expect
                expect = value.decode("latin-1").strip().lower() if expect is None else "\0"
            else:  # Keep-Alive
                keep_alive = value
        # Strict: check_fields, from the counts of this same pass (its Host checks ran
        # in it, in order); the common head passes the first test without a call.
        # (h11 folds repeated Content-Lengths: check_raw_framing saw them as sent.)
        if strict and not (
            len(fields) <= self.max_headers_count and hosts <= 1
            and (length is None or (lengths == 1 and te is None and length.isdigit() and len(length) <= 18))
        ):
            check_field_counts(len(fields), lengths, length or b"", te is not None, hosts,
                               request=not self.client, max_count=self.max_headers_count)
        has_host = hosts > 0
        if length is not None:
            length = length.strip(b" \t")
            if not length.isdigit():
                raise protocol_error("invalid Content-Length", 400, "HPE_INVALID_CONTENT_LENGTH")
            head.content_length = int(length)
        else:
            head.content_length = None
        head.expect = head.keep_alive_timeout = None
        http11 = head.http_version == "1.1"
        if te is not None and te.strip().lower() != b"chunked":
            # "gzip, chunked" would reach the handler undecoded; h11 refuses it too.
            status = transfer_coding_status(raw) or 501
            if self.client:
                status = 400
            raise protocol_error("unsupported Transfer-Encoding", status, "HPE_INVALID_TRANSFER_ENCODING")
        if self.client:
            method, status = self.request_method, head.status
            if method == "HEAD" or status < 200 or status in (204, 304) or (method == "CONNECT" and status < 300):
                framing = Framing.NONE  # RFC 9112 §6.3, whatever the head says
            elif te is not None:
                framing = Framing.CHUNKED
            elif length is not None:
                framing = Framing.LENGTH if head.content_length else Framing.NONE
            else:
                framing = Framing.UNTIL_CLOSE
            if keep_alive is not None:
                head.keep_alive_timeout = _keep_alive_timeout(keep_alive)
        else:
            if http11 and not has_host and self.require_host:
                raise protocol_error("missing Host header", 400)  # RFC 9112 §3.2 (h11 too)
            if self.strict:
                if head.target == "*":  # (the asterisk-form: what check_request_target checks)
                    check_request_target(head.method, head.target)
            if head.method == "CONNECT":
                framing = Framing.NONE  # what follows is the tunnel's (llhttp, Node)
            elif te is not None:
                framing = Framing.CHUNKED
            elif head.content_length:
                framing = Framing.LENGTH
            else:
                framing = Framing.NONE
            head.expect = expect
            self.request_method = head.method
        head.upgrade = upgrade and _says(connection, b"upgrade")
        # After a protocol switch (101, a CONNECT tunnel) what follows is not HTTP.
        switched = self.client and (head.status == 101 or (self.request_method == "CONNECT" and 200 <= head.status < 300))
        head.keep_alive = (http11 and framing is not Framing.UNTIL_CLOSE and not switched
                           and not (connection.find(b"close") >= 0 and _says(connection, b"close")))
        self.keep_alive = head.keep_alive
        head.framing = self.framing = framing
        self.done = framing is Framing.NONE
        if framing is Framing.LENGTH:
            self.body_left = head.content_length  # type: ignore[assignment]
        elif framing is Framing.CHUNKED:
            self._start_chunked()

    # -------------------------------------------------------------- bodies

    def next_body(self) -> bytes | None:
        """The next piece of the body (never empty); b'' at its end, when
        :attr:`trailers` are ready; None when more bytes are needed.  A peer that
        closed before the end: ConnectionResetError ('aborted')."""
        pieces = self._pieces
        if pieces:
            data = pieces[0] if len(pieces) == 1 else b"".join(pieces)
            pieces.clear()
            self._body_seen = True
            if self.framing is Framing.LENGTH and not self.body_left:
                self.done = True
            return data
        if self.done:
            return b""
        framing, buf = self.framing, self._buf
        if framing is Framing.CHUNKED:
            chunk = self._next_chunk()
            if chunk is None:
                if self.eof:
                    raise _aborted()
                return None
            self._body_seen = True
            if not chunk:
                self.done = True
                self._check_trailers()
            return chunk
        if buf:
            size = len(buf) if framing is Framing.UNTIL_CLOSE else min(len(buf), self.body_left)
            data = bytes(buf[:size])
            del buf[:size]
            self._body_seen = True
            if framing is Framing.LENGTH:
                self.body_left -= size
                self.done = not self.body_left
            return data
        if self.eof:
            if framing is Framing.UNTIL_CLOSE:
                self.done = True
                return b""
            raise _aborted()
        return None

    def _next_chunk(self) -> bytes | None:
        """Chunked: the next piece of data, b'' at the end (trailers set), None: more."""
        raise NotImplementedError

    def _check_trailers(self) -> None:
        trailers = self.trailers
        if not trailers:
            return
        if len(trailers) > self.max_headers_count or \
                sum(len(name) + len(value) + 4 for name, value in trailers) > self.max_header_size:
            raise protocol_error("trailer section too large", 431, "HPE_HEADER_OVERFLOW")
        if self.strict:
            check_fields(trailers, request=False, max_count=self.max_headers_count)

    @property
    def body_remaining(self) -> int | None:
        """Content-Length body bytes not yet taken (buffered ones included); None for
        another framing or once the body is complete."""
        if self.framing is not Framing.LENGTH or self.done:
            return None
        return self.body_left + sum(map(len, self._pieces))

    def take_buffered_body(self) -> bytes:
        """The part of a Content-Length body already here (perhaps b'')."""
        pieces = self._pieces
        buf = self._buf
        if buf and self.body_left:
            size = min(len(buf), self.body_left)
            pieces.append(bytes(buf[:size]))
            del buf[:size]
            self.body_left -= size
        data = b"".join(pieces)
        pieces.clear()
        if data:
            self._body_seen = True
        self.done = not self.body_left
        return data

    def body_received(self, count: int) -> None:
        """The caller read ``count`` bytes of a Content-Length body itself (only while
        nothing is buffered: after :meth:`take_buffered_body`)."""
        self._body_seen = True
        self.body_left -= count
        self.done = not self.body_left

    # ---------------------------------------------------------------- state

    @property
    def wants_100_continue(self) -> bool:
        """The request said ``Expect: 100-continue`` and no body byte has come yet."""
        head = self.head
        return (head is not None and head.expect == "100-continue" and head.http_version == "1.1"
                and not self.done and not self._body_seen)

    def expect_response_to(self, method: str, headers: HeaderPairs) -> None:
        """Client: the request being sent (its method frames the response)."""
        self.request_method = method

    def start_next(self) -> bool:
        """Ready for the next message; False if this one is not complete, or the
        connection cannot be reused."""
        if not self.done or not self.keep_alive or self.eof:
            return False
        self._reset()
        if not self._buf:
            # Nothing of the next message has come: the next error's raw_packet will be
            # a later piece, so do not keep this one (up to 64 KiB of body) while idle.
            self._packet = b""
        return True

    def take_buffered(self) -> bytes:
        """Everything received past the head (or body) read so far; the parser is
        done with the connection."""
        data = b"".join(self._pieces) + bytes(self._buf)
        self._pieces.clear()
        self._buf.clear()
        return data
