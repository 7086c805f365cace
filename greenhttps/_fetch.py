"""``greenhttps.fetch()``: the everyday client call, on top of ``request()`` and the agents.

Theory of operation
-------------------
``fetch(url)`` blocks the calling greenlet until the final response head has
arrived and returns a :class:`Response`; the body is read when asked for
(``content``, ``text()``, ``json()``, ``read(n)``, iteration), decoded on the way
(:mod:`._decode`).  Each hop is one ``greenhttps.request()`` (or
``greenhttps.http.request()`` for ``http:`` URLs) through an :class:`Agent` pool:
the caller's ``agent`` for URLs of its protocol, else that protocol's global agent.
Nothing here touches a socket; connections, TLS and the pool are the client core's.

Around each hop, the policies Node's ``fetch`` (undici) and the WHATWG Fetch
standard give, plus the ones crawlers need:

* redirects (Fetch §4.4 "HTTP-redirect fetch"): 303 turns any method but GET/HEAD
  into a body-less GET, 301/302 do so for POST only, 307/308 keep method and body;
  ``Authorization``, ``Cookie`` and ``Proxy-Authorization`` are dropped when the
  origin changes; at most ``max_redirects`` (20, as Fetch); an https: page that
  redirects to plain http: is refused unless ``allow_downgrade``;
* retries (:class:`Retry`): connection refused/reset before any response byte, and
  429/503 (honouring a bounded ``Retry-After``), for idempotent methods only unless
  the caller says otherwise; exponential backoff with jitter; never once a response
  has been handed to the caller, so never after part of a body was read;
* one ``deadline`` for everything (redirects, retries, waits, the body), and the
  request's idle ``timeout`` on every hop.

Every request body fetch sends is bytes it holds (``body`` as bytes/str/dict,
``json``), so it can be sent again for a 307/308 or a retry; an iterable body is
streamed and so cannot be: then a 307/308 fails and no retry is made.
"""

from __future__ import annotations

import base64
import collections
import dataclasses
import datetime
import email.utils
import json as _json
import random
import time
from typing import Any, Iterable, Iterator, Mapping
from urllib.parse import quote, unquote, urlencode, urljoin, urlsplit, urlunsplit

import gevent

from . import _agent, _client, _decode, _proxy, errors, http
from ._options import REQUEST_OPTIONS, snake_case

__all__ = ["Headers", "Response", "Retry", "Timings", "fetch"]

#: greenhttps.__version__ (a private module may not import the package face:
#: tests/test_fetch.py checks that the two agree).
_VERSION = "0.1.0"
#: The User-Agent fetch() sends unless the caller sets one.
USER_AGENT = f"greenhttps/{_VERSION}"

_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
#: Fetch's "request-body-header names": dropped with the body when a redirect turns
#: the request into a GET (plus the framing headers, which described that body).
_BODY_HEADERS = frozenset({
    "content-encoding", "content-language", "content-location", "content-type",
    "content-length", "transfer-encoding",
})
#: Headers that carry credentials: never sent to another origin after a redirect.
_CREDENTIAL_HEADERS = frozenset({"authorization", "cookie", "proxy-authorization"})
#: RFC 9110 §9.2.2.
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})
#: A redirect's own body is read (so the connection goes back to the pool) up to
#: this much; a longer one closes its connection instead.
_DRAIN_LIMIT = 64 * 1024
#: Options fetch() sets itself (``**tls_options`` may not name them).
_MANAGED = frozenset({
    "protocol", "host", "hostname", "port", "path", "method", "headers", "auth", "agent",
    "timeout", "deadline", "default_port", "socket_path",
})


def _ms(value: Any, name: str) -> float | None:
    """A duration in milliseconds: a number of ms or a ``datetime.timedelta``; None stays None."""
    if value is None:
        return None
    if isinstance(value, datetime.timedelta):
        value = value.total_seconds() * 1000.0
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
        raise errors.InvalidArgumentError(
            f"{name} must be a number of milliseconds >= 0 or a timedelta, not {value!r}", "ERR_INVALID_ARG_VALUE"
        )
    return float(value)


# ------------------------------------------------------------------ retries


@dataclasses.dataclass(frozen=True)
class Retry:
    """How ``fetch(..., retry=...)`` tries again; ``retry=N`` is ``Retry(total=N)``.
    (Node's fetch does not retry; undici's ``RetryAgent`` is the nearest thing.)

    ``total``: attempts after the first.  What is retried: a connection refused
    (ECONNREFUSED), reset or closed before any response byte (ECONNRESET), and a
    response whose status is in ``statuses`` (429 and 503); only for ``methods``
    (the idempotent ones: GET, HEAD, OPTIONS, TRACE, PUT, DELETE -- name POST here
    to retry it) and only while the body can be sent again.  The wait before retry
    *n* (from 0) is ``backoff * 2**n`` milliseconds, at most ``max_backoff``, with
    jitter (a uniform draw from its upper half); a ``Retry-After`` (seconds or an
    HTTP date) replaces it, and one longer than ``max_retry_after`` milliseconds is
    not waited for: the 429/503 is returned as it is.  Timeouts are not retried
    (the server may be working on the request), nor is anything past the fetch's
    ``deadline``.  Times are milliseconds (or ``datetime.timedelta``).
    """

    total: int = 0
    backoff: float | datetime.timedelta = 100.0
    max_backoff: float | datetime.timedelta = 10_000.0
    max_retry_after: float | datetime.timedelta = 60_000.0
    statuses: frozenset[int] = frozenset({429, 503})
    methods: frozenset[str] = IDEMPOTENT_METHODS

    @classmethod
    def of(cls, retry: int | Retry | None) -> Retry:
        """``retry`` as a policy: an int is ``Retry(total=retry)``; None is no retry."""
        if retry is None:
            return cls()
        if isinstance(retry, Retry):
            return retry
        if isinstance(retry, bool) or not isinstance(retry, int) or retry < 0:
            raise errors.InvalidArgumentError(f"retry must be an int >= 0 or a Retry, not {retry!r}")
        return cls(total=retry)

    def allows(self, method: str) -> bool:
        """True if requests with ``method`` may be sent again under this policy."""
        return method.upper() in {m.upper() for m in self.methods}

    def delay(self, attempt: int) -> float:
        """Seconds to wait before retry number ``attempt`` (0 for the first)."""
        base = _ms(self.backoff, "backoff") or 0.0
        cap = _ms(self.max_backoff, "max_backoff") or 0.0
        wait = min(cap, base * 2**attempt)
        return random.uniform(wait / 2, wait) / 1000.0

    def retry_after(self, value: Any) -> float | None:
        """Seconds a ``Retry-After`` value asks for (0 for a past date), or None if it
        is missing, unreadable, or longer than ``max_retry_after``: then the caller
        gives up rather than wait."""
        if not isinstance(value, str) or not value.strip():
            return None
        value = value.strip()
        if value.isdigit():
            seconds = float(value)
        else:
            try:
                when = email.utils.parsedate_to_datetime(value)
            except (TypeError, ValueError):
                return None
            if when.tzinfo is None:
                when = when.replace(tzinfo=datetime.timezone.utc)
            seconds = max(0.0, (when - datetime.datetime.now(datetime.timezone.utc)).total_seconds())
        bound = _ms(self.max_retry_after, "max_retry_after") or 0.0
        return seconds if seconds * 1000.0 <= bound else None


def _retryable_error(exc: BaseException) -> bool:
    """A failure that says the server never saw (or never answered) the request."""
    return isinstance(exc, (errors.ConnectionRefusedError, errors.ConnectionResetError)) and not isinstance(
        exc, errors.ProxyError
    )


# ------------------------------------------------------------------ headers


class Headers(Mapping[str, str]):
    """Response headers: a read-only, case-insensitive mapping.

    Names come out lowercase, in the order received (as Node's ``message.headers``);
    a repeated field reads as its values joined by ``", "`` (as Fetch's
    ``Headers.get()``); :meth:`get_all` gives them one by one, and
    :meth:`get_set_cookie` the ``Set-Cookie`` lines (Fetch's ``getSetCookie()``).
    ``raw`` is the ``(name, value)`` pairs as received.
    """

    __slots__ = ("raw", "_values")

    def __init__(self, raw: Iterable[tuple[str, str]]) -> None:
        self.raw: list[tuple[str, str]] = list(raw)
        self._values: dict[str, list[str]] = {}
        for name, value in self.raw:
            self._values.setdefault(name.lower(), []).append(value)

    def __getitem__(self, name: str) -> str:
        return ", ".join(self._values[name.lower()])

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._values

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def get_all(self, name: str) -> list[str]:
        """Every value of field ``name`` (any case), in order; ``[]`` if absent."""
        return list(self._values.get(name.lower(), ()))

    def get_set_cookie(self) -> list[str]:
        """The ``Set-Cookie`` values, one per line received (Fetch's ``getSetCookie()``)."""
        return self.get_all("set-cookie")

    def __repr__(self) -> str:
        return f"Headers({dict(self.items())!r})"


class _RequestHeaders:
    """The headers fetch() sends: the caller's spelling kept, looked up in any case."""

    def __init__(self, given: Mapping[str, Any] | Iterable[tuple[str, Any]] | None) -> None:
        self._items: dict[str, tuple[str, Any]] = {}
        pairs = given.items() if isinstance(given, Mapping) else (given or ())
        for name, value in pairs:
            if not isinstance(name, str):
                raise errors.InvalidArgumentError(f"header names are str, not {name!r}", "ERR_INVALID_HTTP_TOKEN")
            key = name.lower()
            if key in self._items:  # a name twice in a list: the values add up
                values = self._items[key][1]
                values = (values if isinstance(values, list) else [values]) + (
                    value if isinstance(value, list) else [value])
                self._items[key] = (self._items[key][0], values)
            else:
                self._items[key] = (name, value)

    def __contains__(self, name: str) -> bool:
        return name.lower() in self._items

    def set_default(self, name: str, value: Any) -> None:
        self._items.setdefault(name.lower(), (name, value))

    def drop(self, names: Iterable[str]) -> None:
        for name in names:
            self._items.pop(name, None)

    def as_dict(self) -> dict[str, Any]:
        """What ``request(headers=...)`` takes: the caller's spelling, a list repeats."""
        return dict(self._items.values())


# ------------------------------------------------------------------ bodies


def _encode_body(body: Any, json: Any, headers: _RequestHeaders) -> tuple[bytes | Iterable[bytes] | None, bool]:
    """(what to send, whether it can be sent again), setting a content type as Fetch does."""
    if json is not None:
        if body is not None:
            raise errors.InvalidArgumentError("give body or json, not both")
        headers.set_default("Content-Type", "application/json")
        return _json.dumps(json, ensure_ascii=False, separators=(",", ":")).encode("utf-8"), True
    if body is None:
        return None, True
    if isinstance(body, str):
        headers.set_default("Content-Type", "text/plain;charset=UTF-8")
        return body.encode("utf-8"), True
    if isinstance(body, (bytes, bytearray, memoryview)):
        return bytes(body), True
    if isinstance(body, Mapping):
        headers.set_default("Content-Type", "application/x-www-form-urlencoded;charset=UTF-8")
        return urlencode(body, doseq=True).encode("ascii"), True
    if isinstance(body, Iterable):
        return body, False  # streamed (chunked); cannot be sent twice
    raise errors.InvalidArgumentError(
        f"body must be bytes, str, a dict (a form) or an iterable of bytes, not {type(body).__name__}",
        "ERR_INVALID_ARG_TYPE",
    )


# ------------------------------------------------------------------ URLs


def _normalise_url(url: Any) -> tuple[str, str | None]:
    """(the URL to request, ``user:password`` from its user-info or None).

    Fetch's URL parser, in the parts HTTP needs: http(s) only, an IDNA host, the
    path and query percent-encoded where they hold what may not be sent as is, no
    fragment, no credentials (they become the first hop's ``Authorization``).
    """
    if not isinstance(url, str):
        raise errors.InvalidArgumentError(f"url must be a str, not {type(url).__name__}", "ERR_INVALID_ARG_TYPE")
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise errors.InvalidURLError(f"fetch() takes http: and https: URLs, not {url!r}", "ERR_INVALID_URL")
    try:
        host, port = parts.hostname, parts.port
    except ValueError as exc:
        raise errors.InvalidURLError(f"Invalid URL: {url!r}", "ERR_INVALID_URL") from exc
    if not host:
        raise errors.InvalidURLError(f"Invalid URL: {url!r}", "ERR_INVALID_URL")
    if ":" in host:
        host = f"[{host}]"
    elif not host.isascii():
        try:
            host = host.encode("idna").decode("ascii")
        except UnicodeError as exc:
            raise errors.InvalidURLError(f"Invalid host in URL: {url!r}", "ERR_INVALID_URL") from exc
    netloc = host if port is None or port == (443 if scheme == "https" else 80) else f"{host}:{port}"
    path = quote(parts.path or "/", safe="/%:@!$&'()*+,;=-._~")
    query = quote(parts.query, safe="/?%:@!$&'()*+,;=-._~")
    credentials = None
    if parts.username is not None:
        credentials = unquote(parts.username) + ":" + unquote(parts.password or "")
    return urlunsplit((scheme, netloc, path, query, "")), credentials


def _origin(url: str) -> tuple[str, str, int]:
    parts = urlsplit(url)
    return parts.scheme, (parts.hostname or "").lower(), parts.port or (443 if parts.scheme == "https" else 80)


# ------------------------------------------------------------------ the response


@dataclasses.dataclass
class Timings:
    """What fetch() measured, in milliseconds from the call (``time.monotonic()``).

    ``headers``: until the final response head arrived; ``total``: until its body
    had been read to the end (None before); ``redirects`` and ``retries``: hops and
    repeated attempts made; ``reused``: the final request went over a pooled
    connection.  (The phases inside one request -- waiting for a pool slot, DNS,
    connect, TLS -- are the client core's to measure; they are not here yet.)
    """

    headers: float = 0.0
    total: float | None = None
    redirects: int = 0
    retries: int = 0
    reused: bool = False


class Response:
    """What :func:`fetch` returns: the final response, its body read on demand
    (Node's fetch ``Response``, with Python's names and a blocking body).

    ``status``, ``status_text`` (the reason phrase as sent), ``ok`` (2xx), ``url``
    (the final URL, after redirects), ``redirected``, ``headers`` (:class:`Headers`),
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
        self.headers = Headers(zip(raw.raw_headers[::2], raw.raw_headers[1::2]))
        self.timings = timings
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
                    self._decoder = _decode.decoder_for(self.headers.get("content-encoding"),
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
        self._make_decoder()
        if self._decoder is None and not self._ended:
            # Undecoded: the message's own whole-body read (one buffer for a Content-Length).
            parts.append(self.raw.read())
            self._body_ended()
        while piece := self._next_piece():
            parts.append(piece)
        return b"".join(parts)

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


# ------------------------------------------------------------------ fetch()


#: Pools of connections to a proxy that forwards plain http: requests, one per
#: (proxy, origin), the most recently used kept.  Per origin because a proxy may
#: turn a connection into a pipe to the first request's origin (pproxy does): a
#: pooled connection must never carry a request for another origin.
_FORWARD_AGENTS: collections.OrderedDict[tuple[str, str], Any] = collections.OrderedDict()
_MAX_FORWARD_AGENTS = 64


def _forward_agent(proxy_url: str, origin: str) -> Any:
    key = (proxy_url, origin)
    agent = _FORWARD_AGENTS.get(key)
    if agent is None:
        agent = _FORWARD_AGENTS[key] = http.Agent(keep_alive=True, timeout=5000)
        if len(_FORWARD_AGENTS) > _MAX_FORWARD_AGENTS:
            # Dropped, not destroyed: a request may be using it; its idle
            # connections close at their 5 s timeout.
            _FORWARD_AGENTS.popitem(last=False)
    else:
        _FORWARD_AGENTS.move_to_end(key)
    return agent


#: One pool per proxy for https: URLs fetch() sends through it (created on first use).
_TUNNEL_AGENTS: dict[str, _agent.Agent] = {}


def _tunnel_agent(proxy_url: str) -> _agent.Agent:
    """The agent whose connections are CONNECT tunnels through ``proxy_url``: as the
    global agent (keep-alive, 5 s idle), a pool of its own so that proxied and
    direct connections never mix."""
    agent = _TUNNEL_AGENTS.get(proxy_url)
    if agent is None:
        agent = _TUNNEL_AGENTS[proxy_url] = _agent.Agent(keep_alive=True, timeout=5000, proxy=proxy_url)
    return agent


def _drain(res: Any, req: Any) -> None:
    """Read a response we do not return (a redirect, a retried 503) so its connection
    can be reused; a long one is not worth it: its connection is closed."""
    taken = 0
    try:
        while chunk := res.read(16384):
            taken += len(chunk)
            if taken > _DRAIN_LIMIT:
                req.destroy()
                return
    except errors.Error:
        req.destroy()


def fetch(
    url: str,
    *,
    method: str = "GET",
    headers: Mapping[str, Any] | Iterable[tuple[str, Any]] | None = None,
    body: Any = None,
    json: Any = None,
    redirect: str = "follow",
    max_redirects: int = 20,
    decompress: bool = True,
    max_decoded_size: int | None = _decode.DEFAULT_MAX_DECODED_SIZE,
    timeout: float | datetime.timedelta | None = None,
    deadline: float | datetime.timedelta | None = None,
    proxy: str | bool | None = None,
    agent: Any = None,
    retry: int | Retry | None = 0,
    allow_downgrade: bool = False,
    **tls_options: Any,
) -> Response:
    """Fetch ``url`` (http: or https:), blocking the calling greenlet until the final
    response head arrives; returns a :class:`Response` whose body is read on demand.
    Python's counterpart of Node's global ``fetch()`` (undici), on the Node-style pool.

    ``method`` and ``headers`` (a dict or ``(name, value)`` pairs; a list value
    repeats the field) as sent; ``User-Agent: greenhttps/<version>``, ``Accept: */*``
    and ``Accept-Encoding`` (the codings installed, see ``decompress``) are added
    unless given.  ``body``: bytes, str (``text/plain;charset=UTF-8``), a dict (an
    urlencoded form) or an iterable of bytes (streamed, chunked); ``json``: an object
    sent as JSON (``application/json``; None means no JSON body, so a JSON ``null``
    goes as ``body="null"``).  A URL's ``user:password@`` becomes Basic
    ``Authorization``.

    ``redirect``: ``'follow'`` (at most ``max_redirects`` hops, then
    :class:`~greenhttps.errors.RedirectError` ``ERR_TOO_MANY_REDIRECTS``),
    ``'manual'`` (the 3xx is returned) or ``'error'`` (RedirectError).  An https:
    URL redirecting to http: raises ``ERR_UNSAFE_REDIRECT`` unless
    ``allow_downgrade``.  ``decompress`` (default True) decodes gzip, deflate, br and
    zstd bodies, the decoded size capped at ``max_decoded_size`` bytes (None: no
    cap; :class:`~greenhttps.errors.DecodedSizeError` past it); with False the body
    comes as sent (the same ``Accept-Encoding`` is offered either way).

    ``timeout``: the socket idle timeout of each request, in milliseconds (or a
    ``datetime.timedelta``); ``deadline``: the whole fetch, body included, in
    milliseconds or a timedelta; both raise ``TimeoutError`` (ETIMEDOUT).
    ``retry``: an int (retries) or a :class:`Retry` policy.  ``agent``: the
    :class:`~greenhttps.Agent` for URLs of its protocol (else the global agent of
    the URL's protocol); an https: agent also decides the proxy for its URLs
    (``Agent(proxy=...)``), since its pool is all tunnels or none.  ``proxy``: a
    proxy URL (``http://user:pass@host:port``), ``False`` for none; None (the
    default) takes ``HTTPS_PROXY``/``HTTP_PROXY``/``ALL_PROXY``/``NO_PROXY`` from
    the environment, as curl does.  ``tls_options``: more request
    options (``ca``, ``cert``, ``key``, ``reject_unauthorized``, ``servername``,
    ``connect_timeout``...), as :func:`greenhttps.request` takes them.

    Raises what :func:`greenhttps.request` raises (bad URL, network and TLS errors),
    :class:`~greenhttps.errors.RedirectError`, and ``ProxyError``.
    """
    started = time.monotonic()
    if redirect not in ("follow", "manual", "error"):
        raise errors.InvalidArgumentError(f"redirect must be 'follow', 'manual' or 'error', not {redirect!r}")
    if isinstance(max_redirects, bool) or not isinstance(max_redirects, int) or max_redirects < 0:
        raise errors.InvalidArgumentError(f"max_redirects must be an int >= 0, not {max_redirects!r}")
    if not isinstance(method, str) or not method:
        raise errors.InvalidArgumentError(f"method must be a str, not {method!r}", "ERR_INVALID_HTTP_TOKEN")
    extra = {snake_case(key): value for key, value in tls_options.items()}
    for name in extra:
        if name not in REQUEST_OPTIONS:
            raise TypeError(f"fetch: unknown option {name!r}")
        if name in _MANAGED:
            raise TypeError(f"fetch: {name!r} is set by fetch() itself")
    policy = Retry.of(retry)
    idle_ms = _ms(timeout, "timeout")
    deadline_ms = _ms(deadline, "deadline")
    ends_at = started + deadline_ms / 1000.0 if deadline_ms else None
    if agent is not None and not isinstance(agent, _agent.Agent):
        raise errors.InvalidArgumentError(f"agent must be an Agent or None, not {agent!r}", "ERR_INVALID_ARG_TYPE")

    method = method.upper()
    current, credentials = _normalise_url(url)
    out = _RequestHeaders(headers)
    content, replayable = _encode_body(body, json, out)
    if credentials is not None and "authorization" not in out:
        token = base64.b64encode(credentials.encode("utf-8")).decode("ascii")
        out.set_default("Authorization", f"Basic {token}")
    out.set_default("User-Agent", USER_AGENT)
    out.set_default("Accept", "*/*")
    out.set_default("Accept-Encoding", _decode.ACCEPT_ENCODING)
    timings = Timings()

    hop = _Hop(extra, idle_ms, ends_at, agent, proxy)
    while True:
        req, res = hop.send_with_retries(method, current, out, content, replayable, policy, timings)
        location = res.headers.get("location")
        if res.status_code not in _REDIRECT_STATUSES or location is None or redirect == "manual":
            break
        if redirect == "error":
            req.destroy()
            raise errors.RedirectError(f"{current} redirected ({res.status_code}) and redirect='error'",
                                       url=current, location=location)
        if timings.redirects >= max_redirects:
            req.destroy()
            raise errors.RedirectError(f"more than {max_redirects} redirects (the last from {current})",
                                       "ERR_TOO_MANY_REDIRECTS", url=current, location=location)
        try:
            target, _ = _normalise_url(urljoin(current, location))
        except errors.InvalidArgumentError:
            req.destroy()
            raise errors.RedirectError(f"{current} redirected to {location!r}, not an http(s) URL",
                                       "ERR_INVALID_REDIRECT", url=current, location=location) from None
        if current.startswith("https:") and target.startswith("http:") and not allow_downgrade:
            req.destroy()
            raise errors.RedirectError(
                f"{current} redirected to plain http: {target} (allow_downgrade=True to follow)",
                "ERR_UNSAFE_REDIRECT", url=current, location=location)
        status = res.status_code
        if (status == 303 and method not in ("GET", "HEAD")) or (status in (301, 302) and method == "POST"):
            method, content, replayable = "GET", None, True
            out.drop(_BODY_HEADERS)
        elif content is not None and not replayable:
            req.destroy()
            raise errors.RedirectError(f"{current} redirected ({status}) a streamed body, which cannot be sent again",
                                       url=current, location=location)
        if _origin(target) != _origin(current):
            # A Host the caller set named the old origin (undici drops it too).
            out.drop(_CREDENTIAL_HEADERS | {"host"})
        _drain(res, req)
        current = target
        timings.redirects += 1
    timings.headers = (time.monotonic() - started) * 1000.0
    timings.reused = bool(req.reused_socket)
    return Response(res, req, current, redirected=timings.redirects > 0, decompress=decompress,
                    max_decoded_size=max_decoded_size, started=started, timings=timings)


class _Hop:
    """One request of a fetch, sent as often as the retry policy allows."""

    def __init__(self, extra: dict[str, Any], idle_ms: float | None, ends_at: float | None, agent: Any,
                 proxy: str | bool | None) -> None:
        self.extra = extra
        self.idle_ms = idle_ms
        self.ends_at = ends_at
        self.agent = agent
        self.proxy = proxy

    def _remaining_ms(self) -> float | None:
        if self.ends_at is None:
            return None
        left = (self.ends_at - time.monotonic()) * 1000.0
        if left <= 0:
            raise errors.TimeoutError("fetch deadline exceeded", "ETIMEDOUT")
        return left

    def send(self, method: str, url: str, headers: _RequestHeaders, content: Any) -> tuple[Any, Any]:
        """Send one request; return it and its response (head read, body not)."""
        scheme = urlsplit(url).scheme
        protocol = scheme + ":"
        # The caller's agent serves URLs of its protocol; for https: it also decides
        # the proxy (Agent(proxy=...)), since its pool is either all tunnels or none.
        given = self.agent if self.agent is not None and self.agent.protocol == protocol else None
        proxy_url = None if given is not None and scheme == "https" else _proxy.proxy_for(url, self.proxy)
        # Read now, not at import: assigning greenhttps.global_agent takes effect.
        agent = given or (_tunnel_agent(proxy_url) if proxy_url and scheme == "https"
                          else _agent.get_global_agent(protocol))
        remaining = self._remaining_ms()
        options: dict[str, Any] = {**self.extra, "method": method, "headers": headers.as_dict()}
        if self.idle_ms:
            options["timeout"] = self.idle_ms
        if remaining is not None:
            options["deadline"] = remaining
        if proxy_url is not None and scheme == "http":
            # A plain origin through a proxy: ask the proxy, in absolute-form.
            agent = _forward_agent(proxy_url, urlsplit(url).netloc)
            target = _proxy.forward_options(proxy_url, url)
            mine = options["headers"]
            given_names = {name.lower() for name in mine}
            proxy_headers: dict[str, str] = target.pop("headers")  # type: ignore[assignment]
            options["headers"] = {**{k: v for k, v in proxy_headers.items() if k.lower() not in given_names}, **mine}
            req = http.request(target, agent=agent, **options)
        else:
            make = _client.request if scheme == "https" else http.request
            req = make(url, agent=agent, **options)
        try:
            if content is None or isinstance(content, bytes):
                req.end(content)
            else:
                for chunk in content:
                    req.write(chunk)
                req.end()
            res = req.getresponse(timeout=remaining)
        except BaseException:
            req.destroy()
            raise
        return req, res

    def send_with_retries(self, method: str, url: str, headers: _RequestHeaders, content: Any, replayable: bool,
                          policy: Retry, timings: Timings) -> tuple[Any, Any]:
        allowed = policy.allows(method) and replayable
        while True:
            attempt = timings.retries
            can_retry = allowed and attempt < policy.total
            try:
                req, res = self.send(method, url, headers, content)
            except errors.Error as exc:
                if not (can_retry and _retryable_error(exc)):
                    raise
                self._wait(policy.delay(attempt), exc)
                timings.retries += 1
                continue
            if not (can_retry and res.status_code in policy.statuses):
                return req, res
            header = res.headers.get("retry-after")
            wait = policy.retry_after(header) if header is not None else policy.delay(attempt)
            if wait is None or not self._has_time_for(wait):
                return req, res  # asked to wait too long: the caller gets the answer
            _drain(res, req)
            gevent.sleep(wait)
            timings.retries += 1

    def _has_time_for(self, seconds: float) -> bool:
        return self.ends_at is None or time.monotonic() + seconds < self.ends_at

    def _wait(self, seconds: float, exc: BaseException) -> None:
        if not self._has_time_for(seconds):
            raise exc
        gevent.sleep(seconds)


# The public names live in the package face (reprs, help(), pickle).
for _obj in (fetch, Response, Retry):
    _obj.__module__ = "greenhttps"
del _obj
