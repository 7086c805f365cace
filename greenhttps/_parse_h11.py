"""H11Parser: the sans-I/O parser on h11 (used without httptools, or when asked for).

Theory of operation
-------------------
This is the only module that imports h11, and h11 is only a parser here: what we
send is serialised by :mod:`._wire_format` (h11's writer and state machine cost as
much again as its parser, and re-validate what ``OutgoingHeaders`` validated).  Each
message gets a fresh ``h11.Connection`` fed exactly its head (the base class finds
the end); the client tells it the request's method, Upgrade and Connection through
a body-less stand-in of the request head, so that h11 accepts a 101 or a response to
CONNECT.  Framing is decided by :class:`~greenhttps._parse.Parser` from the fields,
as for llhttp; h11 reads the body only when it is chunked, fed from the buffer as
bytes come, and hands back what it received past the end.  A few limits h11 does
not keep (chunk sizes, chunk lines, trailer sections that arrive whole) are checked
against h11's reader state, which is why h11 is pinned to one minor version.
"""

from __future__ import annotations

import re
from typing import Any

import h11

from . import errors
from ._parse import Head, HeaderPairs, Parser
from ._strict import (
    HEAD_END,
    MAX_CHUNK_LINE,
    MAX_CHUNK_SIZE,
    MAX_REQUEST_LINE,
    STRICT_STATUS_LINE,
    check_head_bytes,
    chunk_line,
    protocol_error,
    transfer_coding_status,
)

__all__ = ["H11Parser"]

_VERSIONS = (b"1.1", b"1.0")
_ChunkedReader = h11._readers.ChunkedReader  # type: ignore[attr-defined]
#: h11 events are immutable: one body-less stand-in per distinct request shape.
_SHADOW_REQUESTS: dict[tuple[str, tuple[tuple[bytes, bytes], ...]], h11.Request] = {}


#: A Host field in a request head (not at its start: that is the request line).
_HAS_HOST = re.compile(rb"\nhost[ \t]*:", re.IGNORECASE)
_LENT_HOST = b"Host: greenhttps.invalid\r\n"


class H11Parser(Parser):
    """A :class:`~greenhttps._parse.Parser` whose heads and chunked bodies h11 parses."""

    __slots__ = ("_h11", "_shadow")

    def __init__(self, **kwargs: Any) -> None:
        self._shadow: h11.Request | None = None
        super().__init__(**kwargs)

    def _reset(self) -> None:
        super()._reset()
        self._h11: Any = None

    def expect_response_to(self, method: str, headers: HeaderPairs) -> None:
        """Client: give h11 what it needs to parse the response to our request -- the
        method (HEAD, CONNECT), Upgrade and Connection -- without the cost of the rest."""
        self.request_method = method
        fields = tuple(
            (name, value) for name, value in headers
            if len(name) in (7, 10) and name.lower() in (b"upgrade", b"connection")
        )
        key = (method, fields)
        shadow = _SHADOW_REQUESTS.get(key)
        if shadow is None:
            try:
                shadow = h11.Request(method=method, target="/", headers=[(b"host", b"_"), *fields])
            except h11.LocalProtocolError as exc:
                raise errors.InvalidArgumentError(str(exc), "ERR_HTTP_INVALID_MESSAGE") from exc
            if len(_SHADOW_REQUESTS) >= 256:
                _SHADOW_REQUESTS.clear()
            _SHADOW_REQUESTS[key] = shadow
        self._shadow = shadow

    # ------------------------------------------------------------- heads

    def _event(self, raw: bytes) -> Any:
        # h11's own limit on an incomplete event must not answer first: the head is
        # fed whole (its limit was kept above), and a chunk line (413) or trailer
        # section (431) is held to its limit by _check_chunked_body, as for llhttp.
        h = h11.Connection(h11.CLIENT if self.client else h11.SERVER,
                           max_incomplete_event_size=max(self.max_header_size, MAX_CHUNK_LINE) + 8)
        if self.client:
            h.send(self._shadow or h11.Request(method=self.request_method or "GET", target="/", headers=[(b"host", b"_")]))
        h.receive_data(raw)
        try:
            event = h.next_event()
        except h11.RemoteProtocolError as exc:
            raise self._head_error(exc, raw) from exc
        if event is h11.NEED_DATA:  # not expected: the head is whole
            raise protocol_error("malformed head", 400)
        self._h11 = h
        return event

    def _parse_response_head(self, raw: bytes) -> Head:
        event = self._event(raw)
        if not isinstance(event, (h11.Response, h11.InformationalResponse)):
            raise protocol_error(f"unexpected {type(event).__name__} instead of a response")
        if event.http_version not in _VERSIONS:
            raise protocol_error(f"unsupported HTTP version {event.http_version!r}", 502, "HPE_INVALID_VERSION")
        if self.strict and not self._clean and STRICT_STATUS_LINE.match(raw) is None:
            # (A clean status line: its field lines passed Parser._check_lines.)
            check_head_bytes(raw)
        return Head(status=event.status_code, reason=event.reason.decode("latin-1"),
                    http_version=event.http_version.decode("ascii"), headers=event.headers.raw_items())

    def _parse_request_head(self, raw: bytes) -> Head:
        lent = not self.require_host and not _HAS_HOST.search(raw)
        if lent:
            # h11 refuses an HTTP/1.1 request without Host whatever we want: lend it
            # one as the last field (earlier offsets stay true), and take it back.
            blank = 2 if raw.endswith(b"\r\n") else 1  # the closing empty line (LF alone when lenient)
            raw = raw[:-blank] + _LENT_HOST + raw[-blank:]
        event = self._event(raw)
        assert isinstance(event, h11.Request), event
        fields = event.headers.raw_items()
        if lent:
            fields = fields[:-1]
        if event.http_version not in _VERSIONS:
            # h11 takes any 1.x/2.x digit pair; only HTTP/1.0 and 1.1 are spoken here.
            status = 505 if event.http_version[:1] >= b"2" else 400
            raise protocol_error(f"unsupported HTTP version {event.http_version!r}", status, "HPE_INVALID_VERSION")
        if raw.find(b"\n") > MAX_REQUEST_LINE:
            raise protocol_error("request line too long", 414, "HPE_URI_TOO_LONG")
        # (Strict: its lines were checked as they arrived, Parser._check_lines.)
        return Head(method=event.method.decode("ascii"), target=event.target.decode("latin-1"),
                    http_version=event.http_version.decode("ascii"), headers=fields)

    def _head_error(self, exc: h11.RemoteProtocolError, raw: bytes) -> Exception:
        status = exc.error_status_hint
        if status == 431 and not self.client and b"\n" not in raw[: MAX_REQUEST_LINE + 1]:
            status = 414
        elif status == 501 and transfer_coding_status(raw[: raw.find(HEAD_END) + 4]) == 400:
            # h11 says 501 for any Transfer-Encoding but "chunked"; a repeated coding
            # (two headers, or "chunked, chunked") is malformed, not unsupported.
            status = 400
        code = {431: "HPE_HEADER_OVERFLOW", 414: "HPE_URI_TOO_LONG", 501: "HPE_INVALID_TRANSFER_ENCODING"}
        return protocol_error(str(exc), status, code.get(status, "HPE_INVALID"))

    # ------------------------------------------------------- chunked body

    def _next_chunk(self) -> bytes | None:
        h = self._h11
        buf = self._buf
        if buf:
            h.receive_data(bytes(buf))
            buf.clear()
        if self.eof:
            h.receive_data(b"")
        while True:
            if type(h._reader) is _ChunkedReader:
                self._check_chunked_body(h._reader, h._receive_buffer._data)
            try:
                event = h.next_event()
            except h11.RemoteProtocolError as exc:
                if h.trailing_data[1]:  # the peer closed mid-body
                    return None
                raise protocol_error(str(exc), exc.error_status_hint) from exc
            if event is h11.NEED_DATA:
                return None
            if type(event) is h11.Data:
                data = event.data  # h11 hands out bytearray slices of its buffer
                if not data:
                    continue
                return data if type(data) is bytes else bytes(data)
            if type(event) is h11.EndOfMessage:
                self.trailers = event.headers.raw_items()
                # Whatever came past the end is the next message's: back in the buffer.
                rest, _ = h.trailing_data
                buf[:0] = rest
                return b""
            if type(event) is h11.ConnectionClosed:
                return None
            raise protocol_error(f"unexpected {type(event).__name__} in body")

    def _check_chunked_body(self, reader: Any, buffered: bytearray) -> None:
        """Limits h11 does not keep in a chunked body (it reads h11's private reader
        state; h11 is pinned to 0.16): a chunk size of at most 16 hex digits (llhttp:
        below 2**64), a chunk line with its extensions within 16 KiB (Node: 413), and
        a trailer section within ``max_header_size`` (431), even when one arrives
        whole in a single read, where h11's incomplete-event limit does not look."""
        if reader._bytes_in_chunk > MAX_CHUNK_SIZE:
            raise protocol_error("chunk size too large", 400, "HPE_INVALID_CHUNK_SIZE")
        skip = 0
        if reader._reading_trailer:
            self._check_trailer_section(bytes(buffered[: self.max_header_size + 4]))
            if buffered[:2] == b"\r\n":
                return  # no trailers: what follows is the next message
            limit, status, code, end = self.max_header_size, 431, "HPE_HEADER_OVERFLOW", b"\n\r\n"
        elif reader._bytes_in_chunk == 0:
            # At a chunk boundary (perhaps with the CRLF after the last chunk's data
            # still to skip): h11 will read the next size line, and after a "0" the
            # trailers, in the same call -- check them first.
            skip = len(reader._bytes_to_discard)
            self._check_chunk_line(buffered, skip)
            limit, status, code, end = MAX_CHUNK_LINE + 2, 413, "HPE_CHUNK_EXTENSIONS_OVERFLOW", b"\n"
        else:
            return
        if len(buffered) > skip + limit and buffered.find(end, skip, skip + limit) < 0:
            raise protocol_error("chunk extensions or trailers too large", status, code)

    def _check_chunk_line(self, buffered: bytearray, start: int) -> None:
        """A whole chunk-size line is hex digits, optional extensions, CRLF (h11 also
        takes whitespace and a bare LF, which llhttp refuses); after the last chunk,
        the trailer section is held to the rules of a head."""
        line = chunk_line(buffered, start)
        if line is None:
            return  # not all here yet (what is here was checked)
        size, end = line
        if not size:  # the last chunk
            self._check_trailer_section(bytes(buffered[end : end + self.max_header_size + 4]))

    def _check_trailer_section(self, section: bytes) -> None:
        if section[:2] == b"\r\n" or not section:
            return  # no trailers (or nothing yet)
        ends = [i + 4 for i in (section.find(b"\r\n\r\n"),) if i >= 0]
        ends += [i + 2 for i in (section.find(b"\n\n"),) if i >= 0]
        if section[:1] == b"\n" or ends:
            # CRLF only, no obs-fold, no control characters: as in a head.
            check_head_bytes(b"\r\n" + section[: min(ends)] if ends else section)
