"""LlhttpParser: the sans-I/O parser on llhttp (Node's parser, via httptools).

Theory of operation
-------------------
h11 costs ~40 us per request/response on this kind of machine; llhttp parses a head
in ~1 us.  Used when httptools is installed (see :mod:`._parsers`).

llhttp is a push parser that would happily run on into the next pipelined message,
and httptools does not say where a message ended.  So it is fed exactly one message
head (:class:`~greenhttps._parse.Parser` finds its end), and its framing is decided
by the base class from the fields (llhttp cannot be told that a response answers a
HEAD or CONNECT request).  A Content-Length (or close-delimited) body needs no parser
at all; a chunked body is fed only up to the next ``CRLF CRLF`` (every chunked
message ends with one, so it can never overrun the end), and its chunk-size lines one
at a time, which is also how their 16 KiB limit (Node's) is kept.

A response head that the strict checks found clean line by line, with no
Transfer-Encoding (so no chunked body for llhttp to read), is not given to llhttp
at all: :func:`~greenhttps._strict.clean_response_head` has read its fields, as
llhttp reports them, while checking its lines (most of a client's heads).
"""

from __future__ import annotations

import re
from typing import Any

import httptools  # type: ignore[import-not-found,unused-ignore]

from ._parse import Head, HeaderPairs, Parser
from ._strict import (
    CLEAN_PLAIN_FRAMING,
    MAX_CHUNK_LINE,
    MAX_REQUEST_LINE,
    STRICT_STATUS_LINE,
    TRANSFER_ENCODING_LINE,
    check_head_bytes,
    chunk_line,
    protocol_error,
    transfer_coding_status,
)

__all__ = ["LlhttpParser"]

#: Largest piece of a chunked body handed to llhttp at once.
_FEED_SLICE = 65536
_UPGRADE_FIELD = re.compile(rb"\r\nupgrade[ \t]*:", re.IGNORECASE)
_CONTENT_LENGTH = re.compile(rb"\r\ncontent-length[ \t]*:[ \t]*0*([0-9])", re.IGNORECASE)
_STATUS_LINE = re.compile(rb"HTTP/(\d)\.(\d) (\d{3})(?: [^\r\n]*)?\r?")
_REQUEST_LINE = re.compile(rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+ [^ \x00-\x1f\x7f]+ HTTP/(\d)\.(\d)\r?")


class _Message:
    """What llhttp reported about the message being read (its callback target)."""

    __slots__ = ("url", "reason", "fields", "trailers", "body", "headers_done", "done", "events")

    def __init__(self) -> None:
        self.url = b""
        self.reason = b""
        self.fields: HeaderPairs = []
        self.trailers: HeaderPairs = []
        self.body: list[bytes] = []
        self.headers_done = False
        self.done = False
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

    def on_chunk_complete(self) -> None:
        self.events += 1


class LlhttpParser(Parser):
    """A :class:`~greenhttps._parse.Parser` whose heads and chunked bodies llhttp parses."""

    __slots__ = ("_msg", "_llhttp", "_in_size_line", "_chunk_left", "_tail", "_silent", "_spare")

    def __init__(self, **kwargs: Any) -> None:
        #: The request parser of the last message, when llhttp saw all of it (a head
        #: with no body, or a chunked body fed to it): the next head reuses it, as
        #: llhttp itself goes on to the next message.  Making one per head cost about
        #: a fifth of a keep-alive request's parsing.
        self._spare: tuple[_Message, Any] | None = None
        super().__init__(**kwargs)

    def _reset(self) -> None:
        super()._reset()
        self._msg: Any = None  # set with the head
        self._llhttp: Any = None
        self._in_size_line = True
        self._chunk_left = 0
        self._tail = b""
        self._silent = 0

    # ------------------------------------------------------------- heads

    def _parse_response_head(self, raw: bytes) -> Head:
        if self._clean == CLEAN_PLAIN_FRAMING and raw[9:12] != b"101":
            # Parser._check_lines matched the whole head (see below) and read its
            # fields, as llhttp reports them (tests/test_parse_table.py compares the
            # two), and no Transfer-Encoding names a chunked body that llhttp would
            # have to read: llhttp has nothing left to do (a parser, a message and
            # a callback per field, ~10k instructions a response).  Not a 101: llhttp
            # decides what a protocol switch without its fields means.
            if raw[5:8] not in (b"1.1", b"1.0"):
                raise protocol_error(f"unsupported HTTP version {raw[:8]!r}", 502, "HPE_INVALID_VERSION")
            return Head(status=int(raw[9:12]), reason=raw[13:raw.find(b"\r\n")].decode("latin-1"),
                        http_version="1.1" if raw[7] == 49 else "1.0", headers=self._fields)  # b"1"
        if self._clean:
            # Parser._check_lines matched the whole head, this status line as
            # STRICT_STATUS_LINE (HTTP/d.d ddd[ reason] CRLF, nothing for
            # check_head_bytes to find): only the version is left to check.
            if raw[5:8] not in (b"1.1", b"1.0"):
                raise protocol_error(f"unsupported HTTP version {raw[:8]!r}", 502, "HPE_INVALID_VERSION")
            status, minor = int(raw[9:12]), raw[7:8]
        else:
            status_line = self._status_line(raw)
            status, minor = int(status_line.group(3)), status_line.group(2)
        msg = _Message()
        parser = httptools.HttpResponseParser(msg)
        try:
            parser.feed_data(raw)
        except httptools.HttpParserUpgrade:
            pass  # 101: what follows is not HTTP
        except httptools.HttpParserError as exc:
            raise protocol_error(str(exc), 400, "HPE_INVALID") from exc
        if not msg.headers_done:
            raise protocol_error("malformed response head", 400)
        # (Strict: check_raw_framing refused any such head before llhttp saw it.)
        if not self.strict and transfer_coding_status(raw) is not None:
            raise protocol_error("unsupported or repeated Transfer-Encoding", 400, "HPE_INVALID_TRANSFER_ENCODING")
        self._msg, self._llhttp = msg, parser
        return Head(status=status, reason=msg.reason.decode("latin-1"),
                    http_version="1.1" if minor == b"1" else "1.0", headers=msg.fields)

    def _status_line(self, raw: bytes) -> Any:
        """The status line's match (groups: version digits, status) for a head that
        Parser._check_lines did not match whole, with check_head_bytes when strict."""
        strict = self.strict
        status_line = STRICT_STATUS_LINE.match(raw) if strict else None
        if status_line is None:
            status_line = _STATUS_LINE.fullmatch(raw, 0, raw.find(b"\n"))
            if status_line is None:
                raise protocol_error("malformed status line", 400)
            clean = False
        else:
            # Strict, and the status line holds nothing check_head_bytes refuses:
            # the field lines passed Parser._check_lines, so the whole head is clean.
            clean = True
        if status_line.group(1, 2) not in ((b"1", b"1"), (b"1", b"0")):
            raise protocol_error(f"unsupported HTTP version {raw[:8]!r}", 502, "HPE_INVALID_VERSION")
        if strict and not clean:
            check_head_bytes(raw)
        return status_line

    def _parse_request_head(self, raw: bytes) -> Head:
        line_end = raw.find(b"\n")
        if line_end > MAX_REQUEST_LINE:
            raise protocol_error("request line too long", 414, "HPE_URI_TOO_LONG")
        if self.strict and raw[line_end - 4 : line_end] in (b"1.1\r", b"1.0\r"):
            # Parser._check_lines matched the line (one SP between the parts, llhttp
            # takes several; it ends in HTTP/d.d CRLF): only the version was left.
            version: Any = True
            http_version = "1.1" if raw[line_end - 2] == 49 else "1.0"  # b"1"
        else:
            version = _REQUEST_LINE.fullmatch(raw, 0, line_end)
            if version is None and self.strict:
                # RFC 9112 §3: exactly one SP between the parts (llhttp takes several).
                raise protocol_error("malformed request line", 400)
        if version is not None and version is not True and version.group(1, 2) not in ((b"1", b"1"), (b"1", b"0")):
            status = 505 if version.group(1) >= b"2" else 400
            raise protocol_error(f"unsupported HTTP version {version.group(0)!r}", status, "HPE_INVALID_VERSION")
        # (Strict: its lines were checked as they arrived, Parser._check_lines.)
        spare, self._spare = self._spare, None
        if spare is not None and spare[0].done:
            msg, parser = spare
            msg.__init__()  # type: ignore[misc]  # the parser holds its bound callbacks
        else:
            msg = _Message()
            parser = httptools.HttpRequestParser(msg)
        method = raw[: raw.find(b" ")]
        plain = True  # llhttp read this head as it is (no stand-in, no upgrade)
        try:
            try:
                parser.feed_data(raw)
            except httptools.HttpParserInvalidMethodError:
                plain = False
                if version is None:
                    raise
                # llhttp knows a fixed list of methods; any token is a method (RFC
                # 9110 §9, and h11).  Parse the rest as a POST, keep the real name.
                msg = _Message()
                parser = httptools.HttpRequestParser(msg)
                parser.feed_data(b"POST" + raw[len(method):])
        except httptools.HttpParserUpgrade:
            plain = False
            if method != b"CONNECT" and _declares_body(raw):
                # llhttp ends an Upgrade request at its head even when it declares a
                # body; read as such, the body would be taken for the next request
                # (smuggling) whenever nobody takes the upgrade.  Parse it again with
                # the Upgrade field hidden so that llhttp reads the body.
                msg, parser = _reparse_without_upgrade(raw, msg)
        except httptools.HttpParserError as exc:
            # h11's answers where llhttp refuses: 400/501 for codings, else 400.
            status = transfer_coding_status(raw) or 400
            code = "HPE_INVALID_TRANSFER_ENCODING" if status == 501 else "HPE_INVALID"
            raise protocol_error(str(exc), status, code) from exc
        if not msg.headers_done:
            raise protocol_error("malformed request head", 400)
        self._msg, self._llhttp = msg, parser
        if plain:
            self._spare = (msg, parser)  # reused if llhttp sees this message to its end
        if version is not True:
            http_version = parser.get_http_version()
        return Head(method=method.decode("ascii"), target=msg.url.decode("latin-1"),
                    http_version=http_version, headers=msg.fields)

    # ------------------------------------------------------- chunked body

    def _next_chunk(self) -> bytes | None:
        msg = self._msg
        while not msg.body and not msg.done:
            if not self._buf or not self._feed_chunked():
                return None
        if msg.body:
            data = msg.body[0] if len(msg.body) == 1 else b"".join(msg.body)
            msg.body.clear()
            return data
        self.trailers, msg.trailers = msg.trailers, []
        return b""

    def _feed_chunked(self) -> bool:
        """Feed llhttp the next piece of a chunked body; False if it needs more bytes first."""
        buf, msg = self._buf, self._msg
        if self._in_size_line:
            # A chunk-size line is fed whole, so its checks see all of it however
            # the bytes arrive, and its size says where the next one starts.
            line = chunk_line(buf, 0)
            if line is None:
                return False
            chunk_size, size = line
            # The chunk's data and its CRLF; a last chunk (0) is followed by trailers.
            self._chunk_left = chunk_size + 2 if chunk_size else 0
            self._in_size_line = False
        elif self._chunk_left:
            size = min(len(buf), self._chunk_left, _FEED_SLICE)
            self._chunk_left -= size
            self._in_size_line = not self._chunk_left
        else:
            # Trailers: never past the next CRLF CRLF, where the message must end.
            window = self._tail + bytes(buf[:_FEED_SLICE])
            stop = window.find(b"\r\n\r\n")
            size = min(len(buf), _FEED_SLICE) if stop < 0 else stop + 4 - len(self._tail)
        piece = bytes(buf[:size])
        del buf[:size]
        self._tail = (self._tail + piece)[-3:]
        events = msg.events
        try:
            self._llhttp.feed_data(piece)
        except httptools.HttpParserUpgrade:
            msg.done = True
        except httptools.HttpParserError as exc:
            raise protocol_error(str(exc), 400, "HPE_INVALID") from exc
        # httptools builds a header (trailer) line up in memory, by concatenation,
        # until it ends: bytes that produced no callback at all are such a line.
        self._silent = 0 if msg.events != events or msg.done else self._silent + size
        if self._silent > self.max_header_size + MAX_CHUNK_LINE:
            raise protocol_error("trailer section too large", 431, "HPE_HEADER_OVERFLOW")
        trailers = msg.trailers
        if trailers and (
            len(trailers) > self.max_headers_count
            or sum(len(name) + len(value) + 4 for name, value in trailers) > self.max_header_size
        ):
            raise protocol_error("trailer section too large", 431, "HPE_HEADER_OVERFLOW")
        return True


def _reparse_without_upgrade(head: bytes, upgraded: _Message) -> tuple[_Message, Any]:
    msg = _Message()
    parser = httptools.HttpRequestParser(msg)
    try:
        parser.feed_data(_UPGRADE_FIELD.sub(rb"\r\nX-Greenhttps-Upgrade:", head))
    except httptools.HttpParserError as exc:  # llhttp took it once: not expected
        raise protocol_error(str(exc), 400, "HPE_INVALID") from exc
    msg.fields = upgraded.fields  # the head as sent, Upgrade included
    return msg, parser


def _declares_body(head: bytes) -> bool:
    """The head says a body follows: a Transfer-Encoding, or a non-zero Content-Length."""
    if TRANSFER_ENCODING_LINE.search(head):
        return True
    length = _CONTENT_LENGTH.search(head)
    return length is not None and length.group(1) != b"0"
