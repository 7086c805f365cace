"""HTTP/1.1 serialisation: message heads, framing decisions, chunks (pure, no I/O).

greenhttps writes its own bytes (neither parser writes any): a head is a handful of
``bytes.join`` calls, where h11's writer re-validates every field (already validated
by :class:`~greenhttps._headers.OutgoingHeaders`) and runs its state machine three
times per response.  That was a third of the server's per-request cost.

Outgoing framing is decided once, here, called by the message layer
(:mod:`._outgoing`, :mod:`._client`): :func:`response_message` and
:func:`request_message` return the head's bytes and its :class:`OutgoingFraming`,
which the message hands to :meth:`Wire.send_head <greenhttps._wire.Wire.send_head>`;
the wire only counts the body against it and writes.  Responses come from a cache:
a server answers most requests with the same fields (the Date changes once a
second), and framing and serialising them anew was a tenth of the per-request cost.

The framing rules are RFC 9112 §6 (and what h11 did before): a ``Transfer-Encoding``
that ends in ``chunked`` means chunked; else a ``Content-Length`` counts the body;
a response with neither is chunked for an HTTP/1.1 peer and close-delimited for an
HTTP/1.0 one; a request with neither has no body.
"""

from __future__ import annotations

import re
from typing import Sequence

from . import errors

__all__ = ["Framing", "OutgoingFraming", "request_message", "response_message", "request_head", "response_head",
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
_DIGITS = re.compile(rb"[0-9]+")


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


def _tokens(value: bytes) -> list[bytes]:
    return [token.strip().lower() for token in value.split(b",")]


def _framing_fields(headers: HeaderPairs) -> tuple[bytes | None, bytes | None, int | None]:
    """(Transfer-Encoding value, Content-Length value, index of Connection) in one pass."""
    te = cl = None
    connection = None
    for index, (name, value) in enumerate(headers):
        if len(name) not in (10, 14, 17):  # cheap pre-filter: most fields are none of these
            continue
        lname = name.lower()
        if lname == b"transfer-encoding":
            te = value if te is None else te + b", " + value
        elif lname == b"content-length":
            cl = value
        elif lname == b"connection":
            connection = index
    return te, cl, connection


def _content_length(value: bytes) -> int:
    if not _DIGITS.fullmatch(value.strip()):
        raise errors.InvalidArgumentError(
            f"Invalid Content-Length {value.decode('latin-1')!r}", "ERR_HTTP_INVALID_HEADER_VALUE"
        )
    return int(value)


def frame_request(headers: HeaderPairs) -> OutgoingFraming:
    """The framing a request head declares (RFC 9112 §6.3; no length means no body)."""
    te, cl, connection = _framing_fields(headers)
    close = connection is not None and b"close" in _tokens(headers[connection][1])
    if te is not None:
        return OutgoingFraming(Framing.CHUNKED, close=close)
    if cl is not None:
        return OutgoingFraming(Framing.LENGTH, _content_length(cl), close=close)
    return OutgoingFraming(Framing.LENGTH, 0, close=close)


def frame_response(
    headers: list[tuple[bytes, bytes]],
    *,
    status: int,
    head_request: bool,
    peer_http10: bool,
    keep_alive: bool,
) -> OutgoingFraming:
    """Decide a response's framing, adjusting ``headers`` in place where needed.

    Adds ``Transfer-Encoding: chunked`` to an HTTP/1.1 response that has no length,
    turns a chunked response to an HTTP/1.0 peer (which cannot decode it) into a
    close-delimited one, and makes sure ``Connection: close`` is said whenever the
    connection will end (the peer asked, or the body is close-delimited).
    """
    te, cl, connection = _framing_fields(headers)
    no_body = head_request or status in (204, 304)
    if te is not None:
        if peer_http10 or _tokens(te)[-1] != b"chunked":
            kind = Framing.UNTIL_CLOSE
            if peer_http10:
                headers[:] = [pair for pair in headers if pair[0].lower() != b"transfer-encoding"]
                te, cl, connection = _framing_fields(headers)
        else:
            kind = Framing.CHUNKED
        framing = OutgoingFraming(kind)
    elif cl is not None:
        framing = OutgoingFraming(Framing.LENGTH, _content_length(cl))
    elif status in (204, 304):
        framing = OutgoingFraming(Framing.NONE)
    elif peer_http10:
        framing = OutgoingFraming(Framing.UNTIL_CLOSE)
    else:
        # HEAD gets the headers a GET would have had (as h11 and Node do).
        headers.append((b"Transfer-Encoding", b"chunked"))
        framing = OutgoingFraming(Framing.CHUNKED)
    if no_body:
        framing.kind, framing.remaining = Framing.NONE, 0
    close = not keep_alive or framing.kind is Framing.UNTIL_CLOSE
    if connection is not None:
        tokens = _tokens(headers[connection][1])
        if close and b"close" not in tokens:
            kept = [t for t in tokens if t and t != b"keep-alive"]
            headers[connection] = (headers[connection][0], b", ".join([*kept, b"close"]))
        close = close or b"close" in tokens
    elif close:
        headers.append((b"Connection", b"close"))
    framing.close = close
    return framing


#: Response heads already framed and serialised (see :func:`response_message`).
_RESPONSE_HEADS: dict[tuple[object, ...], tuple[bytes, str, int, bool]] = {}
_RESPONSE_HEADS_MAX = 512


def response_message(
    status: int,
    reason: str,
    headers: HeaderPairs,
    *,
    head_request: bool,
    peer_http10: bool,
    keep_alive: bool,
) -> tuple[bytes, OutgoingFraming]:
    """A response head's bytes and framing (see :func:`frame_response`), cached.

    ``head_request``: it answers HEAD; ``peer_http10``: the request was HTTP/1.0;
    ``keep_alive``: the request allows another exchange."""
    key = (status, reason, tuple(headers), head_request, peer_http10, keep_alive)
    cached = _RESPONSE_HEADS.get(key)
    if cached is not None:
        head, kind, remaining, close = cached
        return head, OutgoingFraming(kind, remaining, close)
    pairs = list(headers)
    out = frame_response(pairs, status=status, head_request=head_request, peer_http10=peer_http10,
                         keep_alive=keep_alive)
    head = response_head(status, reason.encode("latin-1"), pairs)
    if len(_RESPONSE_HEADS) >= _RESPONSE_HEADS_MAX:
        _RESPONSE_HEADS.clear()
    _RESPONSE_HEADS[key] = (head, out.kind, out.remaining, out.close)
    return head, out


def request_message(method: str, target: str, headers: HeaderPairs) -> tuple[bytes, OutgoingFraming]:
    """A request head's bytes and framing (see :func:`frame_request`)."""
    head = request_head(method.encode("ascii", "replace"), target.encode("latin-1", "replace"), headers)
    return head, frame_request(headers)
