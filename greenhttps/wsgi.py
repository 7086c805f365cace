"""Serve any PEP 3333 (WSGI) application with a greenhttps server.

::

    from greenhttps.wsgi import WSGIHandler

    server = greenhttps.create_server(tls_options, WSGIHandler(app))
    server.listen(8443)

Theory of operation
-------------------
:class:`WSGIHandler` is an ordinary request listener: it runs in the connection's
greenlet, builds the environ from the :class:`~greenhttps.IncomingMessage`, calls the
application, and writes what it returns through the
:class:`~greenhttps.ServerResponse`, which does all the framing (``Content-Length``
when the application gives one or returns a one-item list, chunked otherwise on
HTTP/1.1, no body for HEAD/204/304) and keep-alive.

The fast path (:meth:`WSGIHandler._serve_head`): when the handler is the server's
only ``'request'`` listener (and no access log wants the response), a request
without a body (no ``Content-Length``, no ``Transfer-Encoding``, no ``Expect``, no
upgrade) is served from its parsed head -- no IncomingMessage, no ServerResponse,
no ``'request'`` event, since nothing could listen to them.  A response of one
block (:class:`_FastResponse`) goes to the wire in one send; any other asks the
connection for the two objects at that moment and goes on as above.  The bytes on
the wire are the same either way (``tests/test_wsgi_fast.py`` holds the two paths
to it).  Measured with ``benchmarks/instructions.py --what wsgi`` (Flask, the same
request repeated): 573,248 instructions per keep-alive request before it, 532,651
with it (and the environ caches below); requests alternating two targets, 573,967
and 540,011.

* ``wsgi.input`` reads the request body from the message as the application asks
  for it (never buffered whole); ``100 Continue`` goes out on the first read.
* Blocks are written as the application yields them (PEP 3333: never delayed);
  ``res.write`` blocks until the kernel took the bytes, which is the back-pressure.
* A response of known length whose headers leave the framing to the server
  (:meth:`_Response._fast_start`) leaves in one send -- status line, fields and
  body -- from a head checked and serialised once per distinct (status, headers)
  and completed once per second (``Date``); the environ keys a connection's
  requests share are built at its first request, a request the same as the
  connection's last one gets a copy of its environ, and one with the same fields
  starts from the keys they gave last time.  Everything else goes through
  the ServerResponse as above.
* The result's ``close()`` is always called: at the end, when the application
  raises, when the client goes away, when the greenlet is killed.
* An application that raises before anything was sent gets the server's 500; after
  that the connection is aborted (the client sees a truncated response).  Either
  way the error is logged and the server keeps serving (SPEC: "a handler that
  raises").

Behind a proxy (opt-in, as gunicorn's ``forwarded_allow_ips``): from a peer in
``forwarded_allow_ips`` -- and from a Unix socket peer, a local process -- the
``secure_scheme_headers`` decide ``wsgi.url_scheme`` (gunicorn's rule and default:
``X-Forwarded-Proto: https``, ``X-Forwarded-Ssl: on``, ``X-Forwarded-Protocol: ssl``;
headers that disagree get a 400), and ``X-Forwarded-For`` decides ``REMOTE_ADDR``:
its rightmost address not itself in the allow list (the proxies' own hops are
skipped; what a client put further left is not believed), with ``REMOTE_PORT``
empty.  Any other peer's forwarded headers are only ``HTTP_*`` keys.  ``REMOTE_ADDR``
shows an IPv4-mapped peer (``::ffff:127.0.0.1``, a dual-stack listener) as IPv4.

Request headers whose names contain ``_`` are dropped: ``X_Forwarded_For`` and
``X-Forwarded-For`` would both become ``HTTP_X_FORWARDED_FOR``, letting a client
spoof what a proxy set (gunicorn and gevent.pywsgi drop them too).  Repeated headers
are joined with ``,`` (``Cookie`` with ``; ``, the only separator cookie parsers
accept).
"""

from __future__ import annotations

import ipaddress
import logging
import sys
from time import time
from typing import Any, Callable, Iterable, Iterator, Mapping
from urllib.parse import unquote_to_bytes

from . import __version__, errors
from ._headers import check_name, check_value
from ._outgoing import STATUS_CODES, _date_cache, http_date
from ._proxy_protocol import AllowList, allow_list, unmapped
from ._response import ServerResponse
from ._wire_format import Framing, OutgoingFraming

__all__ = ["WSGIHandler", "FileWrapper", "Input", "SECURE_SCHEME_HEADERS"]

logger = logging.getLogger("greenhttps.wsgi")

SERVER_SOFTWARE = f"greenhttps/{__version__}"

_Environ = dict[str, Any]
_StartResponse = Callable[..., Callable[[bytes], None]]
Application = Callable[[_Environ, _StartResponse], Iterable[bytes]]

# Header names that are not HTTP_*: PEP 3333 names them without the prefix.
_SPECIAL = {b"content-type": "CONTENT_TYPE", b"content-length": "CONTENT_LENGTH"}

#: Request header name as received -> its environ key ("" for a name with "_", which
#: is dropped); filled as names are seen, so a name is converted once per process.
_KEYS: dict[bytes, str] = {}
_KEYS_MAX = 4096


def _key_for(raw_name: bytes) -> str:
    if b"_" in raw_name:
        key = ""
    else:
        name = raw_name.lower()
        key = _SPECIAL.get(name) or "HTTP_" + name.decode("latin-1").upper().replace("-", "_")
    if len(_KEYS) >= _KEYS_MAX:
        _KEYS.clear()  # a client sending ever new names cannot grow it without bound
    _KEYS[raw_name] = key
    return key

#: gunicorn's default ``secure_scheme_headers``: header -> the value that means https.
SECURE_SCHEME_HEADERS = {"X-FORWARDED-PROTOCOL": "ssl", "X-FORWARDED-PROTO": "https", "X-FORWARDED-SSL": "on"}


class BadForwardedHeaders(errors.ProtocolError):
    """A trusted proxy's scheme headers disagree (gunicorn's InvalidSchemeHeaders): 400."""


class Input:
    """``wsgi.input``: the request body, read from the connection on demand.

    ``read(n)``, ``readline(limit)``, ``readlines(hint)`` and iteration, as PEP 3333
    asks.  At most one received piece plus one line is held in memory.
    """

    __slots__ = ("_req", "_buf")

    def __init__(self, req: Any) -> None:
        self._req = req
        self._buf = b""

    def _more(self) -> bytes:
        """The next received piece of the body (b'' at its end)."""
        return self._req.read(65536)  # type: ignore[no-any-return]

    def read(self, size: int | None = -1) -> bytes:
        """Up to ``size`` bytes (all of the rest if None or negative); ``b''`` at the end.

        Raises the request's error (e.g. a ProtocolError for a malformed body).
        """
        if size is None or size < 0:
            data = self._buf + self._req.read()
            self._buf = b""
            return data
        # As a buffered file (and gunicorn's and pywsgi's inputs): ``size`` bytes
        # unless the body ends first.  Frameworks rely on it (Falcon's bounded
        # stream reads Content-Length bytes once and takes a short read as the end).
        if len(self._buf) >= size:
            data, self._buf = self._buf[:size], self._buf[size:]
            return data
        parts = [self._buf]
        have = len(self._buf)
        self._buf = b""
        while have < size:
            piece = self._req.read(size - have)
            if not piece:
                break
            parts.append(piece)
            have += len(piece)
        return b"".join(parts)

    def readline(self, size: int | None = -1) -> bytes:
        """One line, newline included, at most ``size`` bytes if that is not None or negative."""
        limit = -1 if size is None else size
        buf = self._buf
        while True:
            end = buf.find(b"\n") + 1
            if end:
                cut = end if limit < 0 else min(end, limit)
                break
            if 0 <= limit <= len(buf):
                cut = limit
                break
            piece = self._more()
            if not piece:
                cut = len(buf)
                break
            buf += piece
        line, self._buf = buf[:cut], buf[cut:]
        return line

    def readlines(self, hint: int | None = -1) -> list[bytes]:
        """The remaining lines; stops once ``hint`` bytes (if positive) have been read."""
        lines: list[bytes] = []
        total = 0
        while True:
            line = self.readline()
            if not line:
                return lines
            lines.append(line)
            total += len(line)
            if hint is not None and 0 < hint <= total:
                return lines

    def __iter__(self) -> Iterator[bytes]:
        while True:
            line = self.readline()
            if not line:
                return
            yield line

    def close(self) -> None:
        """No-op: the server owns the connection (present for file-likes' sake)."""


class FileWrapper:
    """``wsgi.file_wrapper``: iterate over ``filelike`` in ``block_size`` reads (bytes),
    and close it when the server closes the response."""

    def __init__(self, filelike: Any, block_size: int = 8192) -> None:
        self.filelike = filelike
        self.block_size = block_size

    def __iter__(self) -> Iterator[bytes]:
        read = self.filelike.read
        size = self.block_size
        while True:
            data = read(size)
            if not data:
                return
            yield data

    def close(self) -> None:
        """Close the wrapped file, if it has a ``close()`` (PEP 3333)."""
        close = getattr(self.filelike, "close", None)
        if close is not None:
            close()


class _ErrorStream:
    """``wsgi.errors`` default: text written by the application goes to stderr."""

    def write(self, text: str) -> None:
        sys.stderr.write(text)

    def writelines(self, lines: Iterable[str]) -> None:
        sys.stderr.writelines(lines)

    def flush(self) -> None:
        sys.stderr.flush()


class _Head:
    """An application's status and headers, checked and serialised once.

    The fast path's unit (see :meth:`_Response._fast_start`): the status line and the
    application's fields as bytes, and what the framing needs to know of them.
    Cached by ``(status, headers)``: an application sends the same few heads over
    and over, and a cached one costs a dict lookup instead of a check, a
    lower-casing and an encoding per field.
    """

    __slots__ = ("code", "message", "first", "fields", "length", "has_date", "repeated", "last", "last_bytes")

    def __init__(self, code: int, message: str | None, first: bytes,
                 fields: dict[str, tuple[str, str | list[str]]], length: int | None, has_date: bool) -> None:
        self.code = code
        self.message = message
        #: ``HTTP/1.1 200 OK\\r\\n`` and the application's fields, each with its CRLF.
        self.first = first
        #: The fields as ServerResponse keeps them (``get_headers()`` stays true).
        self.fields = fields
        #: The application's Content-Length (None: it gave none).
        self.length = length
        self.has_date = has_date
        #: A field repeats (its value is a list: each response gets its own copy).
        self.repeated = any(isinstance(value, list) for _, value in fields.values())
        #: The last whole head sent with it: ((Date, keep-alive, Keep-Alive value, our
        #: Content-Length), head bytes, fields).  Within a second, on keep-alive
        #: connections, every response of this head is the same bytes.
        self.last: tuple[tuple[Any, ...], bytes, dict[str, tuple[str, str | list[str]]]] | None = None
        #: The same for the fast path (:meth:`_FastResponse._send_whole`): ((Date,
        #: Keep-Alive value or None for a close, our Content-Length), head bytes).
        self.last_bytes: tuple[tuple[Any, ...], bytes] | None = None


#: Fields that decide the framing or the connection: a head with one of them takes
#: ServerResponse's general path, which knows every rule about them.
_FRAMING_FIELDS = frozenset({"connection", "transfer-encoding", "keep-alive", "trailer"})

#: (status, headers) -> its _Head, or None when the general path must send it.  A key
#: here was checked by start_response() once (an equal status and equal pairs of str).
_HEADS: dict[tuple[str, tuple[tuple[str, str], ...]], _Head | None] = {}
_HEADS_MAX = 512
_MISSING: Any = object()


def _compile_head(status: str, headers: list[tuple[str, str]]) -> _Head | None:
    """The _Head for an application's status and headers; None if the general path
    must take them (a framing field, a repeated or bad Content-Length, a 1xx, an
    invalid name or value: that path raises the same errors it always did)."""
    code = int(status[:3])
    message = status[4:] or None
    if code < 200:
        return None
    try:
        reason = check_value("statusMessage", message) if message is not None else STATUS_CODES.get(code, "unknown")
        assert isinstance(reason, str)
        lines = [b"HTTP/1.1 %d %s\r\n" % (code, reason.encode("latin-1"))]
        fields: dict[str, tuple[str, str | list[str]]] = {}
        length = None
        for name, value in headers:
            lname = check_name(name).lower()
            checked = check_value(name, value)
            assert isinstance(checked, str)
            if lname in _FRAMING_FIELDS:
                return None
            if lname == "content-length":
                text = value.strip()
                if length is not None or not (text.isascii() and text.isdigit()):
                    return None
                length = int(text)
            lines.append(b"%s: %s\r\n" % (name.encode("latin-1"), checked.encode("latin-1")))
            if lname in fields:  # repeated: one line each, in the application's order
                given, before = fields[lname]
                fields[lname] = (given, [*(before if isinstance(before, list) else [before]), checked])
            else:
                fields[lname] = (name, checked)
    except (errors.InvalidArgumentError, UnicodeEncodeError, TypeError, ValueError):
        return None  # (TypeError, ValueError: headers changed after start_response checked them)
    return _Head(code, message, b"".join(lines), fields, length, "date" in fields)


#: Fields whose head is never cached: credentials do not outlive their response in
#: a module-wide table (and a per-user Set-Cookie makes every head new anyway).
_SECRET_FIELDS = frozenset({"set-cookie", "authorization", "proxy-authorization", "cookie"})


def _head_for(status: str, headers: list[tuple[str, str]]) -> _Head | None:
    """The head of a (status, headers) as the application has them now: from
    :data:`_HEADS`, else compiled (and cached unless a field is a secret)."""
    try:
        key = (status, tuple(headers))
        head = _HEADS.get(key, _MISSING)
    except TypeError:  # made unhashable after start_response: the general path says what
        return None
    if head is not _MISSING:
        return head
    head = _compile_head(status, headers)
    if head is not None and not _SECRET_FIELDS.isdisjoint(head.fields):
        return head
    if len(_HEADS) >= _HEADS_MAX:
        _HEADS.clear()  # an application whose heads all differ cannot grow it without bound
    _HEADS[key] = head
    return head


def _complete_head(head: _Head, key: tuple[Any, ...]) -> tuple[bytes, dict[str, tuple[str, str | list[str]]]]:
    """The whole head and the response's fields: the application's, then what
    ServerResponse's ``_decide`` and ``response_framing`` would add, in their order.
    ``key`` is (Date or None, keep-alive, Keep-Alive value or None, our Content-Length
    or None)."""
    date, keep_alive, timeout, auto_length = key
    fields = dict(head.fields)
    auto = [head.first]
    if auto_length is not None:
        text = str(auto_length)
        fields["content-length"] = ("Content-Length", text)
        auto.append(b"Content-Length: %s\r\n" % text.encode())
    if date is not None:
        fields["date"] = ("Date", date)
        auto.append(b"Date: %s\r\n" % date.encode())
    if keep_alive:
        fields["connection"] = ("Connection", "keep-alive")
        auto.append(b"Connection: keep-alive\r\n")
        if timeout:
            fields["keep-alive"] = ("Keep-Alive", timeout)
            auto.append(b"Keep-Alive: %s\r\n" % timeout.encode())
    else:
        fields["connection"] = ("Connection", "close")
        auto.append(b"Connection: close\r\n")
    auto.append(b"\r\n")
    return b"".join(auto), fields


class _Response:
    """One request's WSGI response state (``start_response``, ``write``).

    The fast path (:meth:`_fast_start`): for a response whose headers leave the
    framing to us (no ``Connection``, ``Transfer-Encoding``, ``Keep-Alive`` or
    ``Trailer`` from the application) and whose length is known -- the
    application's ``Content-Length``, or the one block it returned -- the status
    line, the fields and the body go out in one send from a cached head, without
    ServerResponse's header machinery.  Everything else (chunked bodies, framing
    fields, a response a listener touched, the access log's response class) takes
    the general path through the ServerResponse, which frames it by Node's rules.
    """

    __slots__ = ("res", "status", "headers", "remaining", "started", "head_sent", "sent_all", "sent")

    def __init__(self, res: Any) -> None:
        self.res = res
        self.status: str | None = None
        self.headers: list[tuple[str, str]] = []
        #: Bytes the application's Content-Length still allows (None: no length).
        self.remaining: int | None = None
        self.started = False
        self.head_sent = False
        #: The fast path put the whole response on the wire with its first block.
        self.sent_all = False
        #: Body bytes sent (gunicorn's ``resp.sent``: its access log's ``%(b)s``).
        self.sent = 0

    def start_response(
        self, status: str, headers: list[tuple[str, str]], exc_info: Any = None
    ) -> Callable[[bytes], None]:
        if exc_info:
            try:
                if self.head_sent:
                    # PEP 3333: too late to change the response; re-raise the original.
                    raise exc_info[1].with_traceback(exc_info[2])
            finally:
                exc_info = None  # no reference cycle through the traceback
        elif self.started:
            raise AssertionError("start_response() called again without exc_info")
        try:
            seen = (status, tuple(headers)) in _HEADS
        except TypeError:  # something unhashable: the checks below say what
            seen = False
        if seen:
            # Seen before: the same status and pairs passed the checks below then.  The
            # head is looked up again when it is sent (_fast_start): an application may
            # still change its headers list until then.
            self.status = status
            self.headers = headers
            self.started = True
            return self.write
        if not isinstance(status, str):
            raise TypeError(f"status must be str, not {type(status).__name__}")
        code = status[:3]
        if len(status) < 4 or not code.isdigit() or status[3] != " ":
            raise ValueError(f"status must look like '200 OK', not {status!r}")
        for pair in headers:
            if not (isinstance(pair, tuple) and len(pair) == 2 and isinstance(pair[0], str)
                    and isinstance(pair[1], str)):
                raise TypeError(f"headers must be (str, str) tuples, not {pair!r}")
        self.status = status
        self.headers = headers
        self.started = True
        return self.write

    def _fast_start(self, data: bytes, end: bool) -> bool:
        """Send the head with the first block ``data`` (and the end of the response,
        if ``end`` or the block completes the application's Content-Length) in one
        write; False (nothing done) if this response takes the general path."""
        res = self.res
        if res.__class__ is not ServerResponse or res.headers_sent or res.destroyed or res._out._fields or res._removed:
            return False  # a listener touched it, or the access log counts its bytes
        status = self.status
        assert status is not None
        head = _head_for(status, self.headers)
        if head is None:
            return False
        length = head.length
        code = head.code
        no_body = code == 204 or code == 304
        counted = not no_body and not res._is_head  # a HEAD, 204 or 304 sends no body
        if counted and length is not None:
            self.remaining = length
            data = self._clip(data)
            if self.remaining:
                if end:
                    return False  # shorter than promised: end() says so
            else:
                end = True  # the block is the whole body
        elif length is None and not end:
            return False  # unknown length: chunked or close-delimited, the general path
        conn = res._conn
        res.status_code, res.status_message = code, head.message
        keep_alive = conn.keep_alive_after(res)
        if not keep_alive:
            res.should_keep_alive = False
        auto_length = len(data) if length is None and not no_body else None
        key = (http_date() if res.send_date and not head.has_date else None, keep_alive,
               conn.keep_alive_header if keep_alive else None, auto_length)
        last = head.last
        if last is not None and last[0] == key:
            wire_head, fields = last[1], last[2]
        else:
            wire_head, fields = _complete_head(head, key)
            head.last = (key, wire_head, fields)
        if auto_length is not None:
            length = auto_length
        if counted:
            framing = OutgoingFraming(Framing.LENGTH, length or 0, close=not keep_alive)
        else:
            framing = OutgoingFraming(Framing.NONE, close=not keep_alive)
            if no_body:
                res._has_body = res._is_head = False
        # A copy: get_headers() hands out this dict's lists, which a caller may change.
        own = dict(fields)
        if head.repeated:
            for lname, (name, value) in fields.items():
                if isinstance(value, list):
                    own[lname] = (name, list(value))
        res._out._fields = own
        res._framing = framing
        res._head_written = res.headers_sent = True
        self.head_sent = True
        if end:
            res.finished = self.sent_all = True
        body = data if counted and data else None
        res._wire.send_head(wire_head, framing, body=body, end=end)
        if body:
            self.sent += len(body)
        return True

    def _send_head(self) -> None:
        """Put the status and headers on the response (they go out with the first
        body bytes or the end, so a one-block body gets its Content-Length)."""
        res = self.res
        status = self.status
        assert status is not None
        res.status_code = int(status[:3])
        res.status_message = status[4:] or None
        # A HEAD, 204 or 304 response announces a length it never sends.
        counted = res.req.method != "HEAD" and res.status_code not in (204, 304)
        grouped: dict[str, list[str]] = {}
        names: dict[str, str] = {}
        for name, value in self.headers:
            key = name.lower()
            if key == "content-length" and counted:
                try:
                    self.remaining = int(value)
                except ValueError:
                    raise ValueError(f"invalid Content-Length from the application: {value!r}") from None
            if key in grouped:
                grouped[key].append(value)
            else:
                grouped[key] = [value]
                names[key] = name
        for key, values in grouped.items():
            res.set_header(names[key], values[0] if len(values) == 1 else values)
        self.head_sent = True

    def _clip(self, data: bytes) -> bytes:
        """Never send more than the application's Content-Length (gunicorn does the
        same): extra bytes would be read as the start of the next response."""
        if self.remaining is not None:
            if len(data) > self.remaining:
                data = data[: self.remaining]
            self.remaining -= len(data)
        return data

    def write(self, data: bytes) -> None:
        """PEP 3333's ``write()`` callable (and the path every block takes)."""
        if not self.started:
            raise AssertionError("write() before start_response()")
        if not isinstance(data, (bytes, bytearray)):
            raise TypeError(f"WSGI body blocks must be bytes, not {type(data).__name__}")
        if self.sent_all:
            return  # the body is complete: what follows is past its Content-Length
        if not self.head_sent:
            if self._fast_start(data, False):
                return
            self._send_head()
        data = self._clip(data)
        if not self.res.write(data):
            raise errors.ConnectionResetError("client went away during the response")
        if self.res._has_body:
            self.sent += len(data)

    def end(self, data: bytes = b"") -> None:
        if not self.started:
            raise AssertionError("the application returned without calling start_response()")
        if not isinstance(data, (bytes, bytearray)):
            raise TypeError(f"WSGI body blocks must be bytes, not {type(data).__name__}")
        if self.sent_all:
            # The first block completed the body and went out with the end: only the
            # ServerResponse's own end is left ('finish', then the connection goes on).
            self.res._finish()
            return
        if not self.head_sent:
            if self._fast_start(data, True):
                self.res._finish()
                return
            self._send_head()
        data = self._clip(data)
        if self.remaining:
            # Shorter than promised: an application error.  The server answers 500 if
            # nothing was sent yet, else it closes the connection, which is the only
            # way left to tell the client that the body is incomplete.
            raise errors.Error(
                f"the application sent {self.remaining} bytes fewer than its Content-Length"
            )
        res = self.res
        # Counted first: end() emits 'finish', where gunicorn's access log reads it.
        if res.req.method != "HEAD" and res.status_code not in (204, 304):
            self.sent += len(data)
        res.end(data)


class WSGIHandler:
    """A request listener that runs the WSGI application ``app``.

    ``environ`` adds or overrides environ keys for every request (e.g.
    ``{'wsgi.multiprocess': True}`` when several processes serve the app, or
    ``{'SCRIPT_NAME': '/mount'}``).  ``server_name`` replaces ``SERVER_NAME``, which
    otherwise is the address the connection came in on (``SERVER_PORT`` its port),
    as wsgiref and gevent.pywsgi do; the ``Host`` header is ``HTTP_HOST``.

    ``forwarded_allow_ips`` (addresses, networks, ``'*'``; a comma-separated string
    or a list; default none) are the proxies whose ``X-Forwarded-For`` and
    ``secure_scheme_headers`` (default :data:`SECURE_SCHEME_HEADERS`) are believed:
    see the module docstring.
    """

    def __init__(
        self,
        app: Application,
        *,
        environ: Mapping[str, Any] | None = None,
        server_name: str | None = None,
        forwarded_allow_ips: str | Iterable[str] | None = None,
        secure_scheme_headers: Mapping[str, str] | None = None,
    ) -> None:
        self.app = app
        self.server_name = server_name
        trusted = allow_list(forwarded_allow_ips)
        #: The proxies believed (None: nobody, and forwarded headers cost nothing).
        self.forwarded_allow: AllowList | None = trusted if trusted.everyone or trusted.networks else None
        schemes = SECURE_SCHEME_HEADERS if secure_scheme_headers is None else secure_scheme_headers
        #: environ key (``HTTP_X_FORWARDED_PROTO``) -> the value that means https.
        self._scheme_keys = {"HTTP_" + name.upper().replace("-", "_"): value for name, value in schemes.items()}
        self.base_environ: _Environ = {
            "SCRIPT_NAME": "",
            "SERVER_SOFTWARE": SERVER_SOFTWARE,
            "wsgi.version": (1, 0),
            "wsgi.errors": _ErrorStream(),
            "wsgi.multithread": False,
            "wsgi.multiprocess": False,
            "wsgi.run_once": False,
            "wsgi.input_terminated": True,
            "wsgi.file_wrapper": FileWrapper,
        }
        if environ:
            self.base_environ.update(environ)
        cls = type(self)
        #: The connection's fast path for a request without a body (see
        #: :meth:`_serve_head`); None in a subclass that changes how a request is
        #: served (the gunicorn worker's counts and logs each one).
        self.greenhttps_fast_path: Callable[[Any, Any, Any], bool] | None = (
            self._serve_head if (cls.__call__ is WSGIHandler.__call__ and cls.serve is WSGIHandler.serve
                                 and cls.make_environ is WSGIHandler.make_environ
                                 and cls.environ_or_reject is WSGIHandler.environ_or_reject) else None)

    def __repr__(self) -> str:
        return f"<greenhttps.wsgi.WSGIHandler {self.app!r}>"

    def make_environ(self, req: Any) -> _Environ:
        """The PEP 3333 environ for ``req`` (without ``wsgi.input``)."""
        sock = req.socket
        cached = sock.__dict__.get("_wsgi_environ")
        if cached is None or cached[0] is not self:
            cached = sock._wsgi_environ = [self, self._connection_environ(sock), None, None, None, None]
        return self._environ(sock, cached, req.url, req.method, req.http_version, req._head.headers)

    def _environ(self, sock: Any, cached: list[Any], target: str, method: str, version: str,
                 headers: Iterable[tuple[bytes, bytes]]) -> _Environ:
        """The environ of a request (:meth:`make_environ`), from its parts: the fast
        path has a parsed head where the general one has an IncomingMessage.

        ``cached`` is the connection's ``[handler, connection environ, last request,
        its environ, last fields, their environ]``.  What every request of a
        connection shares (the fixed keys, the scheme, the peer's and our address) is
        built at its first request and copied after.  And the environ is a function
        of the request's line and fields on the connection: a request the same as
        the connection's last one (a client polling, an API client repeating a call)
        gets a copy of its environ, and one with the same fields (a client's rarely
        change) starts from a copy of what they gave last time.  Kept per
        connection, not per process: the fields (cookies, credentials) are one
        client's.  A miss costs a comparison and a dict copy."""
        request = (target, method, version, headers)
        if request == cached[2]:
            return cached[3].copy()  # type: ignore[no-any-return]
        if headers == cached[4]:
            # The same fields as the connection's last request (a client's fields
            # rarely change between its requests): the keys they decide, and what the
            # forwarded headers and the Host decide, are those of last time.
            env = cached[5].copy()
        else:
            env = cached[1].copy()
            keys = _KEYS
            joined: dict[str, str] = {}
            for raw_name, raw_value in headers:
                key = keys.get(raw_name)
                if key is None:
                    key = _key_for(raw_name)
                if not key:
                    continue  # a name with "_": see the module docstring (spoofing)
                value = raw_value.decode("latin-1")
                if key in joined:
                    joined[key] += ("; " if key == "HTTP_COOKIE" else ",") + value
                else:
                    joined[key] = value
            env.update(joined)
            allowed = self.forwarded_allow
            if allowed is not None and _trusted(sock, allowed):
                self._forwarded(env, allowed)
            if "SERVER_NAME" not in env:
                _server_address(env, sock)  # a Unix socket: after the headers, it uses Host
            cached[4], cached[5] = headers, env.copy()
        if target.startswith("/"):
            path, _, query = target.partition("?")
        elif target == "*":  # OPTIONS *
            path, query = "*", ""
        else:  # absolute-form (a proxy-style request): keep the path and query
            rest = target.partition("://")[2]
            slash = rest.find("/")
            path, _, query = (rest[slash:] if slash >= 0 else "/").partition("?")
        env["REQUEST_METHOD"] = method
        # PEP 3333: the decoded path as bytes carried in a latin-1 str.
        env["PATH_INFO"] = unquote_to_bytes(path).decode("latin-1") if "%" in path else path
        env["QUERY_STRING"] = query
        env["RAW_URI"] = env["REQUEST_URI"] = target
        env["SERVER_PROTOCOL"] = "HTTP/1.1" if version == "1.1" else "HTTP/" + version
        cached[2], cached[3] = request, env.copy()
        return env

    def _connection_environ(self, sock: Any) -> _Environ:
        """The environ keys that are the same for every request of ``sock``'s connection."""
        env = self.base_environ.copy()
        env["wsgi.url_scheme"] = "https" if sock.encrypted else "http"
        env["REMOTE_ADDR"] = unmapped(sock.remote_address or "")
        port = sock.remote_port
        env["REMOTE_PORT"] = "" if port is None else str(port)
        if self.server_name is not None:
            env["SERVER_NAME"] = self.server_name
            env["SERVER_PORT"] = str(sock.local_port or "")
        else:
            try:
                name = sock.getsockname()
            except OSError:
                name = ""
            if isinstance(name, tuple):
                env["SERVER_NAME"], env["SERVER_PORT"] = name[0], str(name[1])
        return env

    def _forwarded(self, env: _Environ, allowed: AllowList) -> None:
        """A trusted proxy's word: the scheme and the client's address (see above)."""
        scheme = None
        for key, secure in self._scheme_keys.items():
            value = env.get(key)
            if value is not None:
                said = "https" if value.strip() == secure else "http"
                if scheme is not None and said != scheme:
                    raise BadForwardedHeaders("the proxy's scheme headers disagree", "ERR_FORWARDED_SCHEME")
                scheme = said
        if scheme is not None:
            env["wsgi.url_scheme"] = scheme
        forwarded_for = env.get("HTTP_X_FORWARDED_FOR")
        if forwarded_for:
            client = _client_from(forwarded_for, allowed)
            if client is not None:
                env["REMOTE_ADDR"], env["REMOTE_PORT"] = client, ""

    def environ_or_reject(self, req: Any, res: Any) -> _Environ | None:
        """:meth:`make_environ` for the request ``req``, or None after answering 400
        through its response ``res`` to forwarded headers that contradict each other."""
        try:
            return self.make_environ(req)
        except BadForwardedHeaders as exc:
            _refuse(req, res, exc)
            return None

    def __call__(self, req: Any, res: Any) -> None:
        env = self.environ_or_reject(req, res)
        if env is not None:
            self.serve(env, req, res)

    def _serve_head(self, conn: Any, wire: Any, head: Any) -> bool:
        """The fast path (``greenhttps_fast_path``, see
        :class:`~greenhttps._server_conn.FastListener`): a request without a body,
        served from its parsed head.  The environ is :meth:`_environ`'s; a response
        of one block (a one-item list, or nothing) with a head
        :func:`_compile_head` takes goes out in one send without a ServerResponse
        (:class:`_FastResponse`); any other asks the connection for the
        IncomingMessage and ServerResponse and goes on as :meth:`serve` does.
        Returns whether the connection may carry another request."""
        cached = conn.listener_state  # this connection's environ cache (see make_environ)
        if cached is None or cached[0] is not self:
            cached = conn.listener_state = [self, self._connection_environ(conn.socket), None, None, None, None]
        try:
            env = self._environ(conn.socket, cached, head.target, head.method, head.http_version, head.headers)
        except BadForwardedHeaders as exc:
            req, res = conn.materialize(wire, head)
            _refuse(req, res, exc)
            return False
        env["wsgi.input"] = _EMPTY_INPUT
        out = _FastResponse(conn, wire, head)
        _run_app(self.app, env, out)
        return out.keep

    def serve(self, env: _Environ, req: Any, res: Any, out: _Response | None = None) -> None:
        """Run the application with ``env`` (from :meth:`make_environ`) for ``req``,
        answering through the ServerResponse ``res`` (wrapped in ``out``, if given:
        the gunicorn worker reads the body bytes sent from it)."""
        env["wsgi.input"] = Input(req)
        if out is None:
            out = _Response(res)
        _run_app(self.app, env, out)


def _run_app(app: Any, env: _Environ, out: Any) -> None:
    """Call the application and send what it returns through ``out`` (a _Response
    or the fast path's _FastResponse); its result's ``close()`` always called."""
    result = app(env, out.start_response)
    try:
        if isinstance(result, (list, tuple)) and len(result) == 1:
            # The whole body at once: end() sends it with its Content-Length in one
            # write (the common case: frameworks return [body]).
            out.end(result[0])
            return
        for data in result:
            if data:
                out.write(data)
            elif not out.started:
                raise AssertionError("the application yielded before calling start_response()")
        out.end()
    finally:
        close = getattr(result, "close", None)
        if close is not None:
            close()


def _refuse(req: Any, res: Any, exc: BadForwardedHeaders) -> None:
    """Answer 400 to a request whose trusted proxy's headers contradict each other."""
    logger.info("request from %s refused: %s", req.socket.remote_address, exc)
    res.status_code = 400
    res.set_header("Connection", "close")
    res.end()


class _NoBody:
    """The body source of a request that has none (the fast path's ``wsgi.input``)."""

    __slots__ = ()

    def read(self, size: int = -1) -> bytes:
        return b""


#: ``wsgi.input`` of every request without a body: it holds nothing, ever (its
#: buffer only ever gets what the source gave), so one serves them all.
_EMPTY_INPUT = Input(_NoBody())


class _FastResponse(_Response):
    """:class:`_Response` for the fast path: no ServerResponse until one is needed.

    A response sent whole at its end (:meth:`end`: the one block of a one-item
    list, or an empty body) whose head :func:`_head_for` takes goes straight to the
    wire: the same bytes :meth:`_Response._fast_start` sends, without a response
    object to keep true.  Anything else -- ``write()``, a generator, a framing
    field, a 1xx -- reads ``self.res``, which asks the connection for the request
    and response objects (the :attr:`res` property), and goes on as :class:`_Response`.
    """

    __slots__ = ("conn", "wire", "head", "keep", "whole", "_res")

    def __init__(self, conn: Any, wire: Any, head: Any) -> None:  # no super(): no ServerResponse yet
        self.conn = conn
        self.wire = wire
        self.head = head
        self._res = None
        #: The connection may carry another request (the fast send decided it).
        self.keep = False
        self.status = None
        self.headers = []
        self.remaining = None
        self.started = self.head_sent = self.sent_all = False
        #: The whole response went out in one send, from here (no ServerResponse).
        self.whole = False
        self.sent = 0

    @property  # type: ignore[override]
    def res(self) -> Any:
        """The ServerResponse, made when first needed (a property, not ``__getattr__``:
        that would slow every other attribute of this object down)."""
        res = self._res
        if res is None:
            res = self._res = self.conn.materialize(self.wire, self.head)[1]
        return res

    def write(self, data: bytes) -> None:
        if not self.head_sent and self.started and type(data) is bytes and self._send_whole(data, False):
            return
        _Response.write(self, data)

    def end(self, data: bytes = b"") -> None:
        if self.whole:
            return  # the first block was the whole body, and it went out with the head
        if not self.head_sent and self.started and type(data) is bytes and self._send_whole(data, True):
            return
        _Response.end(self, data)

    def _send_whole(self, data: bytes, end: bool) -> bool:
        """The whole response, head and ``data``, in one send; False (nothing done) if
        the general path must take it.  ``end``: ``data`` is the last block, else
        it must be the whole body by the application's Content-Length (later blocks
        are past it: :meth:`_Response.write` drops them).  (_Response._fast_start,
        for a response nobody else sees.)"""
        status = self.status
        assert status is not None
        head = _head_for(status, self.headers)
        if head is None:
            return False
        length = head.length
        code = head.code
        no_body = code == 204 or code == 304
        counted = not no_body and self.head.method != "HEAD"  # a HEAD, 204 or 304 sends no body
        if not end and not (counted and length is not None):
            return False  # a body of unknown length, or a head to send before the end
        if counted and length is not None:
            if len(data) < length:
                return False  # shorter than promised: _Response.end says so
            if len(data) > length:
                data = data[:length]  # never more than the Content-Length (see _clip)
        conn = self.conn
        if conn._lost is not None:
            return False  # the general path raises what was lost (a reset, the idle timeout)
        keep = conn.keep_alive_value(self.head)
        keep_alive = keep is not None
        auto_length = len(data) if length is None and not no_body else None
        # As head.last, without the fields (nobody reads them here): (Date, Keep-Alive
        # value or None for close, our Content-Length) -> the head's bytes.
        date = None
        if conn.server.send_date and not head.has_date:
            date = _date_cache[1] if _date_cache[0] == int(time()) else http_date()  # (http_date, one call fewer)
        key = (date, keep, auto_length)
        last = head.last_bytes
        if last is not None and last[0] == key:
            wire_head = last[1]
        else:
            wire_head = _complete_head(head, (key[0], keep_alive, keep or None, auto_length))[0]
            head.last_bytes = (key, wire_head)
        if counted:
            framing = OutgoingFraming(Framing.LENGTH, len(data), close=not keep_alive)
        else:
            framing = OutgoingFraming(Framing.NONE, close=not keep_alive)
        self.head_sent = self.sent_all = self.whole = True
        body = data if counted and data else None
        self.wire.send_head(wire_head, framing, body=body, end=True)
        if body:
            self.sent = len(body)
        self.keep = keep_alive
        return True


def _trusted(sock: Any, allowed: AllowList) -> bool:
    """Is the connection's peer a trusted proxy?  Decided once per connection."""
    trusted = sock.__dict__.get("_wsgi_trusted")
    if trusted is None:
        # A Unix socket peer is a local process: trusted, as gunicorn does.
        trusted = sock._wsgi_trusted = sock.remote_family is None or (sock.remote_address or "") in allowed
    return bool(trusted)


def _client_from(forwarded_for: str, allowed: AllowList) -> str | None:
    """The client an ``X-Forwarded-For`` list names: its rightmost address that is
    not a trusted proxy (each proxy appends the address it saw, so entries left of
    that one are the client's own claims); the leftmost if every one is trusted.
    None if that entry is no IP address (``unknown``, an obfuscated name)."""
    hops = [hop.strip() for hop in forwarded_for.split(",")]
    chosen = hops[0]
    for hop in reversed(hops):
        if hop not in allowed:
            chosen = hop
            break
    try:
        ip = ipaddress.ip_address(chosen)
    except ValueError:
        return None
    mapped = getattr(ip, "ipv4_mapped", None)
    return str(mapped if mapped is not None else ip)


def _server_address(env: _Environ, sock: Any) -> None:
    """SERVER_NAME and SERVER_PORT for a Unix socket, which has no address to give:
    from the Host header (PEP 3333 asks for both)."""
    host = env.get("HTTP_HOST", "")
    default_port = "443" if env["wsgi.url_scheme"] == "https" else "80"
    if host.startswith("["):
        name, _, rest = host[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else default_port
    else:
        name, _, port = host.partition(":")
    env["SERVER_NAME"] = name or "localhost"
    env["SERVER_PORT"] = port or default_port
