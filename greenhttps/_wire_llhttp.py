"""LlhttpWire: the wire with llhttp (Node's parser, via httptools) parsing.

Theory of operation
-------------------
Same interface, same strict checks, same serialisation as :class:`Wire` -- only the
parsing differs.  h11 costs ~40 us per request/response on this kind of machine;
llhttp parses a head in ~1 us.  Used when httptools is installed
(``GREENHTTPS_PARSER=h11`` forces h11; ``llhttp`` insists on httptools).

llhttp is a push parser that would happily run on into the next pipelined message,
and httptools does not say where a message ended.  So the wire feeds it exactly one
message head: it finds the end of a head itself (the strict checks need the raw head
anyway).  A ``Content-Length`` (or close-delimited) body needs no parser and is passed
on as it arrives; a chunked body is fed only up to the next ``CRLF CRLF`` (every
chunked message ends with one, so it can never overrun the end), and its chunk-size
lines one at a time, which is also how their 16 KiB limit (Node's) is kept.

llhttp cannot be told that a response answers a HEAD (or CONNECT) request, so for
responses the wire decides itself which have no body (RFC 9112 §6.3).
"""

from __future__ import annotations

import io
import re
import socket
import time
from typing import Any

import httptools  # type: ignore[import-not-found,unused-ignore]

from . import errors
from ._tlsbio import BioSSLSocket
from ._wire import (
    _TRANSFER_ENCODING_LINE,
    MAX_CHUNK_LINE,
    MAX_REQUEST_LINE,
    DeadlineExceeded,
    Head,
    HeaderPairs,
    Wire,
    _protocol_error,
    grow_body_buffer,
    transfer_coding_status,
)

__all__ = ["LlhttpWire"]

#: Largest piece of a chunked body handed to llhttp at once.
_FEED_SLICE = 65536
_UPGRADE_FIELD = re.compile(rb"\r\nupgrade[ \t]*:", re.IGNORECASE)
_CONTENT_LENGTH = re.compile(rb"\r\ncontent-length[ \t]*:[ \t]*0*([0-9])", re.IGNORECASE)
_STATUS_LINE = re.compile(rb"HTTP/(\d)\.(\d) (\d{3})(?: [^\r\n]*)?\r?")
_HEX_RUN = re.compile(rb"[0-9A-Fa-f]*")
_REQUEST_LINE = re.compile(rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+ [^ \x00-\x1f\x7f]+ HTTP/(\d)\.(\d)\r?")


class _Message:
    """What llhttp reported about the request being read (its callback target)."""

    __slots__ = ("url", "reason", "fields", "trailers", "body", "headers_done", "done", "in_size_line", "events")

    def __init__(self) -> None:
        self.url = b""
        self.reason = b""
        self.fields: HeaderPairs = []
        self.trailers: HeaderPairs = []
        self.body: list[bytes] = []
        self.headers_done = False
        self.done = False
        self.in_size_line = False
        #: Callbacks so far: bytes fed without any mean a line still being built.
        self.events = 0

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_status(self, reason: bytes) -> None:
        self.reason += reason

    def on_header(self, name: bytes, value: bytes) -> None:
        # llhttp keeps trailing whitespace; RFC 9110 §5.5 (and h11) drop it.
        self.events += 1
        (self.trailers if self.headers_done else self.fields).append((name, value.rstrip(b" \t")))

    def on_headers_complete(self) -> None:
        self.headers_done = True

    def on_body(self, body: bytes) -> None:
        self.events += 1
        self.body.append(body)

    def on_message_complete(self) -> None:
        self.done = True

    def on_chunk_header(self) -> None:
        self.events += 1
        self.in_size_line = False

    def on_chunk_complete(self) -> None:
        self.events += 1
        self.in_size_line = True


class LlhttpWire(Wire):
    """A :class:`Wire` whose requests (server) or responses (client) llhttp parses."""

    __slots__ = ("_buf", "_msg", "_parser_obj", "_chunked", "_body_left", "_keep_alive",
                 "_expect_continue", "_body_seen", "_eof", "_chunk_left", "_tail", "_close_delimited", "_silent")

    def __init__(self, sock: socket.socket | BioSSLSocket, **kwargs: Any) -> None:
        super().__init__(sock, **kwargs)
        self._buf = bytearray()
        self._eof = False
        self._reset()

    def _reset(self) -> None:
        self._msg = _Message()
        self._parser_obj: Any = None
        self._chunked = self._close_delimited = False
        self._body_left = 0
        self._keep_alive = False
        self._expect_continue = False
        self._body_seen = False
        self._chunk_left = 0
        self._silent = 0
        self._tail = b""
        self._msg.done = True  # nothing being read until a head arrives

    def _received(self, data: bytes) -> None:
        if not data:
            self._eof = True
        elif self._buf or self._chunked or self._msg.done or not self._msg.headers_done:
            self._buf += data
        else:
            # The common case of a counted (or close-delimited) body arriving: hand the
            # bytes on without a trip through the buffer.
            if not self._close_delimited and len(data) > self._body_left:
                self._buf += data[self._body_left:]
                data = data[: self._body_left]
            self._pass_body(data)

    def _pass_body(self, data: bytes) -> None:
        msg = self._msg
        msg.body.append(data)
        self._body_seen = True
        if not self._close_delimited:
            self._body_left -= len(data)
            msg.done = self._body_left == 0

    # ----------------------------------------------------------------- state

    @property
    def peer_wants_100_continue(self) -> bool:
        return self._expect_continue and not self._body_seen and not self._sent_interim and self._out is None

    @property
    def message_complete(self) -> bool:
        return self._msg.done

    @property
    def keep_alive(self) -> bool:
        out = self._out
        return self._keep_alive and (out is None or not out.close)

    @property
    def head_started(self) -> bool:
        return bool(self._buf)

    def _peer_keeps_alive(self) -> bool:
        return self._keep_alive

    def start_next_cycle(self) -> bool:
        out = self._out
        if not self._out_done or out is None or out.close or not self._msg.done or not self._keep_alive or self._eof:
            return False
        self._reset()
        self._out = None
        self._out_done = self._sent_interim = False
        self.trailers = []
        self.bytes_received = 0
        return True

    # --------------------------------------------------------------- reading

    def _head_end(self) -> int:
        """The end of the head in the buffer (after its blank line), or -1."""
        buf = self._buf
        crlf = buf.find(b"\r\n\r\n")
        # A bare-LF end counts too (the strict checks refuse it; h11 ends heads there).
        bare = buf.find(b"\n\n", 0, crlf + 2 if crlf >= 0 else len(buf))
        if bare >= 0:
            return bare + 2
        return crlf + 4 if crlf >= 0 else -1

    def read_head(
        self,
        *,
        deadline: float | None = None,
        first_byte_timeout: float | None = None,
        headers_timeout: float | None = None,
    ) -> Head | None:
        buf = self._buf
        if not buf and first_byte_timeout is not None and not self._eof:
            try:
                self._receive(time.monotonic() + first_byte_timeout, "keep-alive", wait_first=True)
            except DeadlineExceeded:
                return None
        if buf and deadline is None and headers_timeout is not None:
            deadline = time.monotonic() + headers_timeout
        while True:
            end = self._head_end()
            if end >= 0:
                break
            if not self._client and len(buf) > MAX_REQUEST_LINE and b"\n" not in buf[: MAX_REQUEST_LINE + 1]:
                raise _protocol_error("request line too long", 414, "HPE_URI_TOO_LONG")
            if len(buf) > self._max_header_size:
                raise _protocol_error("header block too large", 431, "HPE_HEADER_OVERFLOW")
            if self._eof:
                if not buf:
                    return None
                if self._client:
                    raise errors.ConnectionResetError("socket hang up")  # closed inside the head
                raise _protocol_error("peer closed in the middle of a request head", 400)
            self._receive(deadline, "headers", wait_first=not buf)
            if deadline is None and headers_timeout is not None:
                deadline = time.monotonic() + headers_timeout
        head = bytes(buf[:end])
        if end > self._max_header_size:
            status = 414 if not self._client and b"\n" not in head[: MAX_REQUEST_LINE + 1] else 431
            raise _protocol_error("header block too large", status, "HPE_HEADER_OVERFLOW")
        if self._client:
            return self._parse_response_head(head, end)
        return self._parse_head(head, end)

    def _parse_response_head(self, head: bytes, end: int) -> Head:
        status_line = _STATUS_LINE.fullmatch(head, 0, head.find(b"\n"))
        if status_line is None:
            raise _protocol_error("malformed status line", 400)
        if status_line.group(1, 2) not in ((b"1", b"1"), (b"1", b"0")):
            raise _protocol_error(f"unsupported HTTP version {head[:8]!r}", 502, "HPE_INVALID_VERSION")
        if self._strict:
            self._check_head_bytes(head)
        msg = _Message()
        msg.done = False
        parser = httptools.HttpResponseParser(msg)
        try:
            parser.feed_data(head)
        except httptools.HttpParserUpgrade:
            msg.done = True  # 101: what follows is not HTTP
        except httptools.HttpParserError as exc:
            raise _protocol_error(str(exc), 400, "HPE_INVALID") from exc
        if not msg.headers_done:
            raise _protocol_error("malformed response head", 400)
        fields = msg.fields
        if self._strict and self._check_fields(fields, request=False) is None:
            self._check_raw_content_length(head)
        if transfer_coding_status(head) is not None:
            raise _protocol_error("unsupported or repeated Transfer-Encoding", 400, "HPE_INVALID_TRANSFER_ENCODING")
        del self._buf[:end]
        status = int(status_line.group(3))
        http_version = "1.1" if status_line.group(2) == b"1" else "1.0"
        method = self._request_method
        self._msg, self._parser_obj = msg, parser
        self._chunked = self._close_delimited = False
        self._body_left = 0
        connection = b""
        length = None
        for name, value in fields:
            lname = name.lower()
            if lname == b"transfer-encoding":
                self._chunked = True
            elif lname == b"content-length":
                length = int(value)
            elif lname == b"connection":
                connection += b"," + value.lower()
        # RFC 9112 §6.3: no body after HEAD, 1xx, 204, 304 or a 2xx to CONNECT,
        # whatever the head says (llhttp cannot be told the request's method).
        if method == "HEAD" or status < 200 or status in (204, 304) or (method == "CONNECT" and status < 300):
            msg.done = True
            self._chunked = False
        elif self._chunked:
            msg.done = False
            msg.in_size_line = True
        elif length is not None:
            self._body_left = length
            msg.done = length == 0
        else:
            self._close_delimited = True
            msg.done = False
        self._keep_alive = (
            http_version == "1.1" and not _says_close(connection) and not self._close_delimited
        )
        return Head(status=status, reason=msg.reason.decode("latin-1"), http_version=http_version, headers=fields)

    def _parse_head(self, head: bytes, end: int) -> Head:
        line_end = head.find(b"\n")
        if line_end > MAX_REQUEST_LINE:
            raise _protocol_error("request line too long", 414, "HPE_URI_TOO_LONG")
        version = _REQUEST_LINE.fullmatch(head, 0, line_end)
        if version is None and self._strict:
            # RFC 9112 §3: exactly one SP between the parts (llhttp takes several).
            raise _protocol_error("malformed request line", 400)
        if version is not None and version.group(1, 2) not in ((b"1", b"1"), (b"1", b"0")):
            status = 505 if version.group(1) >= b"2" else 400
            raise _protocol_error(f"unsupported HTTP version {version.group(0)!r}", status, "HPE_INVALID_VERSION")
        if self._strict:
            self._check_head_bytes(head)
        msg = _Message()
        msg.done = False
        parser = httptools.HttpRequestParser(msg)
        method = head[: head.find(b" ")]
        try:
            try:
                parser.feed_data(head)
            except httptools.HttpParserInvalidMethodError:
                if version is None:
                    raise
                # llhttp knows a fixed list of methods; any token is a method (RFC
                # 9110 §9, and h11).  Parse the rest as a POST, keep the real name.
                msg = _Message()
                msg.done = False
                parser = httptools.HttpRequestParser(msg)
                parser.feed_data(b"POST" + head[len(method):])
        except httptools.HttpParserUpgrade:
            if method != b"CONNECT" and _declares_body(head):
                # llhttp ends an Upgrade request at its head even when it declares a
                # body; read as such, the body would be taken for the next request
                # (smuggling) whenever nobody takes the upgrade.  Parse it again with
                # the Upgrade field hidden so the body is framed as h11 frames it.
                msg, parser = self._reparse_without_upgrade(head, msg)
            else:
                msg.done = True  # Upgrade / CONNECT: what follows is not HTTP
        except httptools.HttpParserError as exc:
            # h11's answers where llhttp refuses: 400/501 for codings, else 400.
            status = transfer_coding_status(head) or 400
            code = "HPE_INVALID_TRANSFER_ENCODING" if status == 501 else "HPE_INVALID"
            raise _protocol_error(str(exc), status, code) from exc
        if not msg.headers_done:
            raise _protocol_error("malformed request head", 400)
        fields = msg.fields
        if self._strict and self._check_fields(fields, request=True) is None:
            self._check_raw_content_length(head)
        http_version = parser.get_http_version()
        # One pass over the fields for what framing and keep-alive need.
        has_host = False
        connection = b""
        chunked = False
        for name, value in fields:
            if len(name) not in (4, 6, 10, 14, 17):
                continue
            lname = name.lower()
            if lname == b"host":
                has_host = True
            elif lname == b"connection":
                connection += b"," + value.lower()
            elif msg.done:
                continue
            elif lname == b"transfer-encoding":
                chunked = True
                if value.strip().lower() != b"chunked":
                    # llhttp takes "gzip, chunked" as chunked; the gzip would then
                    # reach the handler undecoded.  h11 refuses it, and so do we.
                    status = transfer_coding_status(head) or 501
                    raise _protocol_error("unsupported Transfer-Encoding", status, "HPE_INVALID_TRANSFER_ENCODING")
            elif lname == b"content-length":
                self._body_left = int(value)
            elif lname == b"expect" and http_version == "1.1":
                self._expect_continue = value.strip().lower() == b"100-continue"
        if not has_host and version is not None and version.group(2) == b"1":
            raise _protocol_error("missing Host header", 400)  # RFC 9112 §3.2 (h11 too)
        del self._buf[:end]
        self._msg, self._parser_obj = msg, parser
        self._request_method = method.decode("ascii")
        self._peer_http10 = http_version == "1.0"
        self._keep_alive = http_version == "1.1" and not _says_close(connection)
        self._chunked = chunked
        if not msg.done:
            msg.in_size_line = chunked
        return Head(method=self._request_method, target=msg.url.decode("latin-1"), http_version=http_version, headers=fields)

    @staticmethod
    def _reparse_without_upgrade(head: bytes, upgraded: _Message) -> tuple[_Message, Any]:
        msg = _Message()
        parser = httptools.HttpRequestParser(msg)
        try:
            parser.feed_data(_UPGRADE_FIELD.sub(rb"\r\nX-Greenhttps-Upgrade:", head))
        except httptools.HttpParserError as exc:  # llhttp took it once: not expected
            raise _protocol_error(str(exc), 400, "HPE_INVALID") from exc
        msg.fields = upgraded.fields  # the head as sent, Upgrade included
        return msg, parser


    def read_body(self, *, deadline: float | None = None) -> bytes:
        msg = self._msg
        while True:
            if msg.body:
                data = msg.body[0] if len(msg.body) == 1 else b"".join(msg.body)
                msg.body.clear()
                return data
            if msg.done:
                if msg.trailers:
                    self.trailers, msg.trailers = msg.trailers, []
                    if self._strict:
                        self._check_fields(self.trailers, request=False)
                return b""
            if self._buf and self._feed_body():
                continue
            if self._eof:
                if self._close_delimited:
                    msg.done = True
                    continue
                raise errors.ConnectionResetError("aborted: peer closed before the body ended")
            self._receive(deadline, "request")

    def read_rest_of_body(self, *, deadline: float | None = None) -> bytes | None:
        msg = self._msg
        if self._chunked or self._close_delimited or msg.done or not msg.headers_done:
            return None
        total = self._body_left + sum(map(len, msg.body))
        # No room is made before the first bytes come: a peer that declares a length
        # and sends nothing holds nothing.
        if not msg.body and not self._buf and not self._receive(deadline, "request"):
            raise errors.ConnectionResetError("aborted: peer closed before the body ended")
        out = io.BytesIO()
        for piece in msg.body:
            out.write(piece)
        msg.body.clear()
        buffered = min(len(self._buf), self._body_left)
        if buffered:
            out.write(self._buf[:buffered])
            del self._buf[:buffered]
            self._body_left -= buffered
        self._body_seen = True
        filled = out.tell()
        while self._body_left:
            capacity = grow_body_buffer(out, filled, total)
            with out.getbuffer() as view:
                while filled < capacity:
                    count = self._receive(deadline, "request", view[filled:capacity])
                    if not count:
                        self._eof = True
                        raise errors.ConnectionResetError("aborted: peer closed before the body ended")
                    filled += count
                    self._body_left -= count
        pending = getattr(self.sock, "pending", None)
        if pending is not None and pending():
            # Bytes past the body that came in its last TLS record: OpenSSL holds
            # them, where neither head_started nor a select() would see them.
            self._receive(deadline, "request")
        msg.done = True
        # BytesIO hands over its own buffer when it holds exactly its contents: no copy.
        return out.getvalue()

    def _feed_body(self) -> bool:
        """Feed llhttp the next piece of the body; False if it needs more bytes first."""
        buf, msg = self._buf, self._msg
        if not self._chunked:
            # A counted (or close-delimited) body needs no parser: pass the bytes on.
            size = len(buf) if self._close_delimited else min(len(buf), self._body_left)
            data = bytes(buf[:size])
            del buf[:size]
            self._pass_body(data)
            return True
        if msg.in_size_line:
            # A chunk-size line is fed whole, so its checks see all of it however
            # the bytes arrive, and its size says where the next one starts.
            newline = buf.find(b"\n", 0, MAX_CHUNK_LINE + 2)
            if newline < 0:
                if len(buf) >= MAX_CHUNK_LINE + 2:
                    raise _protocol_error("chunk extensions too large", 413, "HPE_CHUNK_EXTENSIONS_OVERFLOW")
                return False
            digits = _HEX_RUN.match(buf).group()  # type: ignore[union-attr]
            if len(digits) > 16:
                raise _protocol_error("chunk size too large", 400, "HPE_INVALID_CHUNK_SIZE")
            size = newline + 1
            # The chunk's data and its CRLF; a last chunk (0) is followed by trailers.
            self._chunk_left = int(digits, 16) + 2 if digits.strip(b"0") else 0
        elif self._chunk_left:
            size = min(len(buf), self._chunk_left, _FEED_SLICE)
            self._chunk_left -= size
        else:
            # Trailers: never past the next CRLF CRLF, where the message must end.
            window = self._tail + bytes(buf[:_FEED_SLICE])
            stop = window.find(b"\r\n\r\n")
            size = min(len(buf), _FEED_SLICE) if stop < 0 else stop + 4 - len(self._tail)
        piece = bytes(buf[:size])
        del buf[:size]
        self._tail = (self._tail + piece)[-3:]
        self._body_seen = True
        events = msg.events
        try:
            self._parser_obj.feed_data(piece)
        except httptools.HttpParserUpgrade:
            msg.done = True
        except httptools.HttpParserError as exc:
            raise _protocol_error(str(exc), 400, "HPE_INVALID") from exc
        # httptools builds a header (trailer) line up in memory, by concatenation,
        # until it ends: bytes that produced no callback at all are such a line.
        self._silent = 0 if msg.events != events or msg.done else self._silent + size
        if self._silent > self._max_header_size + MAX_CHUNK_LINE:
            raise _protocol_error("trailer section too large", 431, "HPE_HEADER_OVERFLOW")
        trailers = msg.trailers
        if trailers and (
            len(trailers) > self._max_headers_count
            or sum(len(name) + len(value) + 4 for name, value in trailers) > self._max_header_size
        ):
            raise _protocol_error("trailer section too large", 431, "HPE_HEADER_OVERFLOW")
        return True

    @staticmethod
    def _check_raw_content_length(pending: bytes) -> None:
        """Nothing to do: llhttp reports every field as sent (h11 folds repeats), so
        :meth:`_check_fields` has already seen each Content-Length."""

    def _tell_parser(self, method: str, headers: HeaderPairs) -> None:
        self._request_method = method

    # --------------------------------------------------------------- lifecycle

    def detach(self) -> tuple[socket.socket | BioSSLSocket, bytes]:
        data = bytes(self._buf) + bytes(self._early)
        self._buf.clear()
        self._early.clear()
        self.closed = True
        return self.sock, data


def _declares_body(head: bytes) -> bool:
    """The head says a body follows: a Transfer-Encoding, or a non-zero Content-Length."""
    if _TRANSFER_ENCODING_LINE.search(head):
        return True
    length = _CONTENT_LENGTH.search(head)
    return length is not None and length.group(1) != b"0"


def _says_close(connection: bytes) -> bool:
    """``close`` is one of the (lower-cased, comma-separated) Connection tokens."""
    # find() first: ``bytes in bytes`` costs a TypeError built and dropped (see _wire).
    return connection.find(b"close") >= 0 and b"close" in (token.strip() for token in connection.split(b","))
