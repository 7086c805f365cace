"""The ``Response`` that ``fetch()`` returns: its headers, its timings, its body decoded as read.

The body comes from the :class:`~greenhttps.IncomingMessage` underneath, a piece at
a time, through a :class:`~greenhttps._decode.BodyDecoder` when the response has a
``Content-Encoding`` (and ``decompress`` is on): ``content`` reads it all once and
keeps it (a body of at most 1 MiB announced by its Content-Length is read whole,
then decoded in one call), ``read(n)`` and iteration stream it.  A decoding error (corrupt data, the
size cap) closes the connection: the rest of that body is not worth reading.
Nothing here owns a socket; ``close()`` asks the request to let its connection go.
"""

from __future__ import annotations

import dataclasses
import json as _json
import time
from typing import Any, Iterator

from . import _decode, errors
from ._headers import Headers, _text, fetch_headers

#: ``content`` of an encoded body with a Content-Length up to this: read the bytes
#: whole, then decode them in one call.  A crawl holds a thousand responses at once;
#: decoding as pieces arrive keeps a decompressor (zlib: ~40 KiB) alive across every
#: wait for the next piece, and costs a feed() per piece.  Bigger (or unannounced)
#: bodies stream through the decoder, so the decoded-size cap stops a bomb early.
_WHOLE_DECODE_MAX = 2**20

__all__ = ["Headers", "Response", "Timings"]


@dataclasses.dataclass(slots=True)  # no __dict__: a crawl holds a thousand at once
class Timings:
    """What fetch() measured, in milliseconds.

    From the call (``time.monotonic()``): ``headers``, until the final response head
    arrived; ``sent``, until the final request had been written; ``first_byte``,
    until the final request's first response head (1xx included) arrived;
    ``total``, until the body had been read to the end (None before).  The final
    request's phases, each how long it took (None when it did not happen):
    ``queued`` (waiting for the agent), ``dns``, ``connect`` (Happy Eyeballs
    included), ``tls``; a pooled connection (``reused``) has ``dns``, ``connect`` and
    ``tls`` None.  ``redirects`` and ``retries``: hops and repeated attempts made.
    Earlier hops and attempts count in ``headers`` and ``total``, not in the phases.
    """

    headers: float = 0.0
    total: float | None = None
    redirects: int = 0
    retries: int = 0
    reused: bool = False
    queued: float | None = None
    dns: float | None = None
    connect: float | None = None
    tls: float | None = None
    sent: float | None = None
    first_byte: float | None = None

    def _take_phases(self, request: Any, started: float) -> None:
        """Copy the final request's ``timings`` (a RequestTimings), its moments moved
        to count from the fetch() call at ``started``."""
        if request is None:
            return
        self.dns, self.connect, self.tls = request.dns, request.connect, request.tls
        # The RequestTimings' moments themselves (time.monotonic() values): its
        # properties would each be a call, and count from its start, not ours.
        acquired, sent, first = request._acquired, request._sent, request._first_byte
        self.queued = None if acquired is None else (acquired - request.start) * 1000.0
        self.sent = None if sent is None else (sent - started) * 1000.0
        self.first_byte = None if first is None else (first - started) * 1000.0


class Response:
    """What :func:`fetch` returns: the final response, its body read on demand
    (Node's fetch ``Response``, with Python's names and a blocking body).

    ``status``, ``status_text`` (the reason phrase as sent), ``ok`` (2xx), ``url``
    (the final URL, after redirects), ``redirected``, ``headers`` (the
    case-insensitive :class:`~greenhttps._headers.Headers` of ``IncomingMessage``,
    with Fetch's rule: a repeated field reads as its values joined by ``", "``;
    ``get_all()``/``get_set_cookie()`` give the lines),
    ``timings`` (:class:`Timings`), and ``raw``: the :class:`~greenhttps.IncomingMessage`
    underneath (its body as sent, not decoded).  The body, decoded unless
    ``decompress=False``: ``content`` (all of it, read once and kept), ``text()``,
    ``json()`` (both callable again), or streamed: ``read(n)`` and iteration.  Once
    part of it has been streamed, ``content`` raises; after ``content``, the
    streaming calls serve the kept bytes.  ``close()`` (or leaving a ``with`` block)
    gives up an unread body and closes its connection; a body read to its end has
    already given the connection back to the pool.
    """

    def __init__(self, raw: Any, request: Any, url: str, *, redirected: bool, decompress: bool,
                 max_decoded_size: int | None, started: float, timings: Timings) -> None:
        """Made by :func:`fetch`, not by users: ``raw`` (the IncomingMessage) and
        ``request`` (its ClientRequest), the final ``url``, whether it was
        ``redirected``, ``decompress`` and ``max_decoded_size`` as fetch() was given
        them, when it ``started`` (``time.monotonic()``) and its ``timings``."""
        self.raw = raw
        self._request = request
        self.status: int = raw.status_code
        self.status_text: str = raw.status_message or ""
        self.url = url
        self.redirected = redirected
        self.timings = timings
        timings._take_phases(raw.timings, started)
        self._started = started
        self._decompress = decompress
        self._max_decoded_size = max_decoded_size
        self._decoder: _decode.BodyDecoder | None = None
        self._decoder_made = False
        self._pending = b""  # decoded, not handed out yet
        self._content: bytes | None = None
        self._position = 0  # in _content, for read()/iteration after it
        self._streamed = False
        self._ended = False

    #: Fetch's headers, built on first use (see :attr:`headers`).
    _headers: Headers | None = None

    @property
    def headers(self) -> Headers:
        """The response's headers, case-insensitive, by Fetch's rule: a repeated
        field reads as its values joined by ``", "``.  Built on first use (a crawl
        that reads only the body never pays for it); a copy of the message's own
        :attr:`~greenhttps.IncomingMessage.headers` when no field repeats (then the
        two rules agree, ``Set-Cookie`` aside), else from the fields as received."""
        headers = self._headers
        if headers is None:
            node = self.raw.headers
            fields = node._raw if node._raw is not None else ()
            if len(node) == len(fields) and "set-cookie" not in node:
                headers = Headers._wrap(node, fields)  # one C-level copy of the dict
            else:
                headers = fetch_headers((_text(name), _text(value)) for name, value in fields)
            self._headers = headers
        return headers

    @headers.setter
    def headers(self, value: Headers) -> None:
        self._headers = value

    @property
    def ok(self) -> bool:
        """True for a 2xx status (Fetch's ``response.ok``)."""
        return 200 <= self.status < 300

    def __repr__(self) -> str:
        return f"<greenhttps.fetch Response [{self.status}] {self.url}>"

    def __enter__(self) -> Response:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -------------------------------------------------------------- the body

    def _make_decoder(self) -> None:
        if not self._decoder_made:
            self._decoder_made = True
            if self._decompress:
                try:
                    # The message's headers (built already: fetch() looked for a
                    # Location): Content-Encoding is joined with ", " by both rules.
                    self._decoder = _decode.decoder_for(self.raw.headers.get("content-encoding"),
                                                        self._max_decoded_size)
                except errors.ContentDecodingError:
                    self.close()
                    raise

    def _body_ended(self) -> None:
        self._ended = True
        self.timings.total = (time.monotonic() - self._started) * 1000.0

    def _next_piece(self) -> bytes:
        """The next decoded piece of the body from the wire; b'' at its end."""
        self._make_decoder()
        decoder = self._decoder
        while not self._ended:
            chunk = self.raw.read(65536)
            try:
                if not chunk:
                    self._body_ended()
                    return decoder.finish() if decoder is not None else b""
                piece = decoder.feed(chunk) if decoder is not None else chunk
            except errors.ContentDecodingError:
                self.close()  # the rest is not worth reading: the connection goes
                raise
            if piece:
                return piece
        return b""

    def _read_all(self) -> bytes:
        parts = [self._pending] if self._pending else []
        self._pending = b""
        if not parts and not self._decoder_made and not self._ended and self._small_body():
            raw = self.raw.read()  # the message's own whole-body read: one buffer
            self._body_ended()
            if self._decompress and self.raw.headers.get("content-encoding") == "gzip":
                # The usual compressed page: decoded in one call, no decoder kept.
                self._decoder_made = True
                try:
                    return _decode.gunzip_whole(raw, self._max_decoded_size)
                except errors.ContentDecodingError:
                    self.close()
                    raise
            self._make_decoder()
            decoder = self._decoder
            if decoder is None:
                return raw
            try:
                return decoder.decode_all(raw)
            except errors.ContentDecodingError:
                self.close()
                raise
        self._make_decoder()
        if self._decoder is None and not self._ended:
            # Undecoded: the message's own whole-body read (one buffer for a Content-Length).
            parts.append(self.raw.read())
            self._body_ended()
        while piece := self._next_piece():
            parts.append(piece)
        return b"".join(parts)

    def _small_body(self) -> bool:
        """The body's announced length is at most :data:`_WHOLE_DECODE_MAX`."""
        length = self.raw.headers.get("content-length")  # Node keeps the first of repeats
        return length is not None and length.isascii() and length.isdigit() and int(length) <= _WHOLE_DECODE_MAX

    @property
    def content(self) -> bytes:
        """The whole body (decoded unless ``decompress=False``), read on first use and
        kept.  Raises the read's errors (``ContentDecodingError``, ``DecodedSizeError``,
        network errors), and ``ERR_GREENHTTPS_BODY_USED`` if ``read()``/iteration took
        part of it first."""
        if self._content is None:
            if self._streamed:
                raise errors.Error("the body was streamed with read()/iteration: content is not kept",
                                   "ERR_GREENHTTPS_BODY_USED")
            self._content = self._read_all()
        return self._content

    def text(self, encoding: str | None = None, errors: str = "replace") -> str:
        """The body as text: ``encoding``, else the Content-Type charset, else UTF-8;
        ``errors`` is the codec's error handler.  Can be called again."""
        charset = encoding or self._charset()
        try:
            return self.content.decode(charset, errors)
        except LookupError:  # a charset Python does not know: Fetch's UTF-8
            if encoding is not None:
                raise
            return self.content.decode("utf-8", errors)

    def json(self, **kwargs: Any) -> Any:
        """The body parsed as JSON (``kwargs`` go to ``json.loads``); can be called again."""
        return _json.loads(self.content, **kwargs)

    def _charset(self) -> str:
        for param in self.headers.get("content-type", "").split(";")[1:]:
            key, _, value = param.strip().partition("=")
            if key.lower() == "charset" and value:
                return value.strip().strip('"')
        return "utf-8"

    def read(self, size: int = -1) -> bytes:
        """Up to ``size`` bytes of the (decoded) body, all of the rest when ``size`` < 0;
        b'' at the end.  Blocks the calling greenlet while the body arrives."""
        if self._content is not None:
            end = len(self._content) if size is None or size < 0 else self._position + size
            out = self._content[self._position:end]
            self._position += len(out)
            return out
        self._streamed = True
        if size is None or size < 0:
            return self._read_all()
        while len(self._pending) < size:
            piece = self._next_piece()
            if not piece:
                break
            self._pending += piece
        out, self._pending = self._pending[:size], self._pending[size:]
        return out

    def __iter__(self) -> Iterator[bytes]:
        """The (decoded) body piece by piece, as it arrives."""
        if self._content is not None:
            rest = self.read()
            if rest:
                yield rest
            return
        self._streamed = True
        if self._pending:
            piece, self._pending = self._pending, b""
            yield piece
        while piece := self._next_piece():
            yield piece

    def close(self) -> None:
        """Give up the rest of the body: its connection is closed (never pooled half
        read).  Nothing to do once the body has been read to its end."""
        if not self._ended and not self.raw.complete:
            self._request.destroy()
        self._ended = True


# The public name lives in the package face (reprs, help(), pickle).
Response.__module__ = "greenhttps"
