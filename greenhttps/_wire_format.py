"""HTTP/1.1 serialisation: message heads, chunks, and counting a body (pure, no I/O).

greenhttps writes its own bytes (neither parser writes any): a head is a handful of
``bytes.join`` calls, where h11's writer re-validates every field (already validated
by :class:`~greenhttps._headers.OutgoingHeaders`) and runs its state machine three
times per response.  That was a third of the server's per-request cost.

Outgoing framing is decided once, by the message layer (:mod:`._outgoing`:
``response_framing`` and ``request_framing``), from the message's own fields; it
hands this module the final fields to serialise (:func:`response_bytes`,
:func:`request_bytes`) and :meth:`Wire.send_head <greenhttps._wire.Wire.send_head>`
the :class:`OutgoingFraming`, which the wire only counts the body against.  Nothing
here reads the fields for their meaning.  Response heads come from a cache: a server
answers most requests with the same fields (the Date changes once a second), and
serialising them anew was a tenth of the per-request cost.
"""

from __future__ import annotations

import re
from typing import Sequence

from . import errors

__all__ = ["Framing", "OutgoingFraming", "request_bytes", "response_bytes", "request_head", "response_head",
           "chunk_prefix", "last_chunk"]

HeaderPairs = Sequence[tuple[bytes, bytes]]


class Framing:
    """How the body of the message being sent is delimited."""

    NONE = "none"  # no body may follow (HEAD, 204, 304, or a request without one)
    LENGTH = "length"  # Content-Length
    CHUNKED = "chunked"
    UNTIL_CLOSE = "until-close"  # the end of the body is the end of the connection


_TOKEN = re.compile(rb"[-!#$%&'*+.^_`|~0-9A-Za-z]+")
# A request target: no whitespace, no control characters (RFC 9112 §3.2).
_TARGET = re.compile(rb"[\x21-\x7e\x80-\xff]+")


def _mismatch(message: str) -> errors.InvalidArgumentError:
    return errors.InvalidArgumentError(message, "ERR_HTTP_CONTENT_LENGTH_MISMATCH")


class OutgoingFraming:
    """What the head being sent says about its body, and the body's progress."""

    __slots__ = ("kind", "remaining", "close")

    def __init__(self, kind: str, remaining: int = 0, close: bool = False) -> None:
        self.kind = kind
        #: Content-Length only: body bytes still owed.
        self.remaining = remaining
        #: The connection ends with this message (``Connection: close`` or
        #: close-delimited).
        self.close = close

    def frame(self, data: bytes) -> Sequence[bytes]:
        """The wire pieces for one piece of body."""
        kind = self.kind
        if kind is Framing.CHUNKED:
            return (chunk_prefix(len(data)), data, b"\r\n")
        if kind is Framing.LENGTH:
            if len(data) > self.remaining:
                raise _mismatch("Too much data for declared Content-Length")
            self.remaining -= len(data)
            return (data,)
        if kind is Framing.UNTIL_CLOSE:
            return (data,)
        raise errors.InvalidArgumentError("This message cannot have a body", "ERR_HTTP_BODY_NOT_ALLOWED")

    def end(self, trailers: HeaderPairs | None) -> bytes:
        """The bytes that end the body (checks that a Content-Length was honoured)."""
        if self.kind is Framing.CHUNKED:
            return last_chunk(trailers)
        if self.kind is Framing.LENGTH and self.remaining:
            raise _mismatch("Too little data for declared Content-Length")
        return b""


def _head(first_line: bytes, headers: HeaderPairs) -> bytes:
    parts = [first_line]
    for name, value in headers:
        parts.append(name + b": " + value)
    parts.append(b"\r\n")
    head = b"\r\n".join(parts)
    # The values come validated from OutgoingHeaders; this one count is the last
    # line of defence against a header that would split the head (response splitting).
    if head.count(b"\n") != len(parts) or head.count(b"\r") != len(parts):
        raise errors.InvalidArgumentError("Invalid character in header content", "ERR_INVALID_CHAR")
    return head


def response_head(status: int, reason: bytes, headers: HeaderPairs) -> bytes:
    return _head(b"HTTP/1.1 %d %s" % (status, reason), headers)


def request_head(method: bytes, target: bytes, headers: HeaderPairs) -> bytes:
    if not _TOKEN.fullmatch(method):
        raise errors.InvalidArgumentError(f"Method must be a valid HTTP token [{method!r}]", "ERR_INVALID_HTTP_TOKEN")
    if not _TARGET.fullmatch(target):
        raise errors.InvalidArgumentError("Request path contains unescaped characters", "ERR_UNESCAPED_CHARACTERS")
    return _head(method + b" " + target + b" HTTP/1.1", headers)


def chunk_prefix(size: int) -> bytes:
    return b"%x\r\n" % size


def last_chunk(trailers: HeaderPairs | None) -> bytes:
    if not trailers:
        return b"0\r\n\r\n"
    return _head(b"0", trailers)


#: Response heads already serialised (see :func:`response_bytes`).
_RESPONSE_HEADS: dict[tuple[object, ...], bytes] = {}
_RESPONSE_HEADS_MAX = 512


def response_bytes(status: int, reason: str, headers: HeaderPairs) -> bytes:
    """A response head's bytes, from a cache: the message layer has decided its
    framing and final fields; a server sends most of its heads many times over."""
    key = (status, reason, tuple(headers))
    head = _RESPONSE_HEADS.get(key)
    if head is None:
        head = response_head(status, reason.encode("latin-1"), headers)
        if len(_RESPONSE_HEADS) >= _RESPONSE_HEADS_MAX:
            _RESPONSE_HEADS.clear()
        _RESPONSE_HEADS[key] = head
    return head


#: A request head's field lines (CRLF before each, the blank line after), by its
#: fields: a client sends the same fields again and again, to other targets.  None
#: is kept for a head with credentials (see _SECRET_NAMES).  Cleared when full.
_REQUEST_FIELDS: dict[tuple[tuple[bytes, bytes], ...], bytes] = {}
_REQUEST_FIELDS_MAX = 512
#: Only heads this small are kept (each twice: key and bytes), so that 512 entries
#: stay small whatever the fields (an API key, a long custom field) hold.
_REQUEST_FIELDS_BYTES = 2048
_SECRET_NAMES = frozenset({b"authorization", b"proxy-authorization", b"cookie"})


def request_bytes(method: str, target: str, headers: HeaderPairs) -> bytes:
    """A request head's bytes (checks the method and the target): what
    :func:`request_head` makes, its field lines from a cache."""
    bmethod, btarget = method.encode("ascii", "replace"), target.encode("latin-1", "replace")
    key = tuple(headers)
    try:
        fields = _REQUEST_FIELDS.get(key)
    except TypeError:  # an unhashable value (a bytearray): not cached
        return request_head(bmethod, btarget, headers)
    if fields is None:
        head = request_head(bmethod, btarget, headers)
        if len(head) <= _REQUEST_FIELDS_BYTES and not any(name.lower() in _SECRET_NAMES for name, _ in headers):
            if len(_REQUEST_FIELDS) >= _REQUEST_FIELDS_MAX:
                _REQUEST_FIELDS.clear()
            # What follows the request line: it held no CR or LF (request_head's
            # checks), so the lines after it are all that _head counted.
            _REQUEST_FIELDS[key] = head[head.index(b"\r\n"):]
        return head
    if not _TOKEN.fullmatch(bmethod):
        raise errors.InvalidArgumentError(f"Method must be a valid HTTP token [{bmethod!r}]", "ERR_INVALID_HTTP_TOKEN")
    if not _TARGET.fullmatch(btarget):
        raise errors.InvalidArgumentError("Request path contains unescaped characters", "ERR_UNESCAPED_CHARACTERS")
    return bmethod + b" " + btarget + b" HTTP/1.1" + fields
