"""``greenhttps.fetch()``: the everyday client call, on top of ``request()`` and the agents.

Theory of operation
-------------------
``fetch(url)`` blocks the calling greenlet until the final response head has
arrived and returns a :class:`~greenhttps._fetch_response.Response`; the body is
read when asked for (``content``, ``text()``, ``json()``, ``read(n)``, iteration),
decoded on the way (:mod:`._decode`).  Each hop is one ``greenhttps.request()`` (or
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
* retries (:class:`~greenhttps._retry.Retry`, the policy): connection refused/reset before any response byte, and
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
import datetime
import json as _json
import re
import time
from collections.abc import Mapping  # isinstance() with it: typing's alias checks ~10x slower
from typing import TYPE_CHECKING, Any, Iterable, cast
from urllib.parse import quote, unquote, urlencode, urljoin, urlsplit

import gevent

from . import _agent, _client, _decode, _proxy, errors, http
from ._fetch_response import Response, Timings
from ._options import CLIENT_TLS_KEYS, REQUEST_OPTIONS, format_ms, snake_case
from ._retry import Retry, duration_ms

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from ._types import FetchOptions, RequestOptions

__all__ = ["Response", "Retry", "fetch"]

#: greenhttps.__version__ (a private module may not import the package face:
#: tests/test_fetch.py checks that the two agree).
_VERSION = "0.1.0"
#: The User-Agent fetch() sends unless the caller sets one.
USER_AGENT = f"greenhttps/{_VERSION}"

#: The fields fetch() adds unless the caller gives them: lowercase name -> (name, value).
#: Their values are checked once, by the first request (_headers keeps the ones that passed).
_DEFAULT_FIELDS: dict[str, tuple[str, str]] = {
    "user-agent": ("User-Agent", USER_AGENT),
    "accept": ("Accept", "*/*"),
    "accept-encoding": ("Accept-Encoding", _decode.ACCEPT_ENCODING),
}
#: The same as request() takes them (read only: request() copies what it is given).
_DEFAULT_HEADERS: dict[str, str] = dict(_DEFAULT_FIELDS.values())

#: fetch()'s default policy (retry=0 or None): no retries.
_NO_RETRY = Retry()

_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
#: Fetch's "request-body-header names": dropped with the body when a redirect turns
#: the request into a GET (plus the framing headers, which described that body).
_BODY_HEADERS = frozenset({
    "content-encoding", "content-language", "content-location", "content-type",
    "content-length", "transfer-encoding",
})
#: Headers that carry credentials: never sent to another origin after a redirect.
_CREDENTIAL_HEADERS = frozenset({"authorization", "cookie", "proxy-authorization"})
#: A redirect's own body is read (so the connection goes back to the pool) up to
#: this much; a longer one closes its connection instead.
_DRAIN_LIMIT = 64 * 1024
#: Options fetch() sets itself (``**tls_options`` may not name them).
_MANAGED = frozenset({
    "protocol", "host", "hostname", "port", "path", "method", "headers", "auth", "agent",
    "timeout", "deadline", "default_port", "socket_path",
})


# ------------------------------------------------------------------ headers


class _RequestHeaders:
    """The headers fetch() sends: the caller's spelling kept, looked up in any case.

    With nothing given but fetch()'s defaults, ``_items`` is the shared
    :data:`_DEFAULT_FIELDS` itself (copied on the first change) and :meth:`as_dict`
    the shared :data:`_DEFAULT_HEADERS`: a crawl's thousand waiting fetches hold no
    header dicts of their own.
    """

    __slots__ = ("_items",)

    def __init__(self, given: Mapping[str, Any] | Iterable[tuple[str, Any]] | None) -> None:
        self._items: dict[str, tuple[str, Any]] = {}
        if given is None:
            return
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

    def _own(self) -> dict[str, tuple[str, Any]]:
        """``_items``, made this instance's own before a change."""
        if self._items is _DEFAULT_FIELDS:
            self._items = dict(_DEFAULT_FIELDS)
        return self._items

    def set_default(self, name: str, value: Any) -> None:
        self._own().setdefault(name.lower(), (name, value))

    def add_defaults(self, credentials: str | None) -> None:
        """``Authorization`` from the URL's user-info (unless given), then fetch()'s
        ``User-Agent``, ``Accept`` and ``Accept-Encoding`` unless given, in that order."""
        if not self._items and credentials is None:
            self._items = _DEFAULT_FIELDS  # nothing given, the usual case: shared until changed
            return
        if credentials is not None and "authorization" not in self._items:
            token = base64.b64encode(credentials.encode("utf-8")).decode("ascii")
            self.set_default("Authorization", f"Basic {token}")
        for key, field in _DEFAULT_FIELDS.items():
            self._items.setdefault(key, field)

    def drop(self, names: Iterable[str]) -> None:
        items = self._own()
        for name in names:
            items.pop(name, None)

    def as_dict(self) -> dict[str, Any]:
        """What ``request(headers=...)`` takes: the caller's spelling, a list repeats.
        (Read only: it may be the shared :data:`_DEFAULT_HEADERS`.)"""
        if self._items is _DEFAULT_FIELDS:
            return _DEFAULT_HEADERS
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


#: What quote() leaves alone in a path and in a query (its always-safe characters and
#: ``safe``): a string made only of these is its own quoted form.
_PATH_SAFE = "/%:@!$&'()*+,;=-._~"
_QUERY_SAFE = "/?%:@!$&'()*+,;=-._~"
_PLAIN_PATH = re.compile(r"[A-Za-z0-9/%:@!$&'()*+,;=\-._~]*")
_PLAIN_QUERY = re.compile(r"[A-Za-z0-9/?%:@!$&'()*+,;=\-._~]*")


#: The usual URL, split by one match: http(s), a host in lowercase letters, digits,
#: dots and hyphens (a DNS name or IPv4; no user-info), an optional port, a path and
#: query that need no escaping, no fragment.  Anything else takes urlsplit's path
#: (tests/test_fetch.py checks both give the same).
_PLAIN_URL = re.compile(
    r"(https?)://([a-z0-9.\-]+)(?::([0-9]{1,5}))?"
    r"(/[A-Za-z0-9/%:@!$&'()*+,;=\-._~]*)?(?:\?([A-Za-z0-9/?%:@!$&'()*+,;=\-._~]*))?"
)
_DEFAULT_PORTS = {"http": 80, "https": 443}


def _normalise_url(url: Any) -> tuple[str, str | None]:
    """(the URL to request, ``user:password`` from its user-info or None).

    Fetch's URL parser, in the parts HTTP needs: http(s) only, an IDNA host, the
    path and query percent-encoded where they hold what may not be sent as is, no
    fragment, no credentials (they become the first hop's ``Authorization``).
    """
    normal, credentials, _target = _parse_url(url)
    return normal, credentials


def _parse_url(url: Any) -> tuple[str, str | None, dict[str, Any]]:
    """:func:`_normalise_url`'s two, and the request options for that URL
    (``protocol``, ``hostname``, ``path``, and ``port`` unless the scheme's
    default): what ``request()`` would take from the URL string, given to it
    as a dict so that it does not split the URL again."""
    match = _PLAIN_URL.fullmatch(url) if type(url) is str else None
    if match is not None:
        scheme, host, port_text, path, query = match.groups()
        port = int(port_text) if port_text is not None else None
        if port is None or port <= 65535:
            target: dict[str, Any] = {"protocol": scheme + ":", "hostname": host}
            if port is None or port == _DEFAULT_PORTS[scheme]:
                netloc = host
            else:
                netloc = f"{host}:{port}"
                target["port"] = port
            path = path or "/"
            if query:
                path = f"{path}?{query}"
            target["path"] = path
            return f"{scheme}://{netloc}{path}", None, target
    return _parse_url_slowly(url)


def _parse_url_slowly(url: Any) -> tuple[str, str | None, dict[str, Any]]:
    """:func:`_parse_url` for any URL, with urlsplit."""
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
    if ":" not in host and not host.isascii():
        try:
            host = host.encode("idna").decode("ascii")
        except UnicodeError as exc:
            raise errors.InvalidURLError(f"Invalid host in URL: {url!r}", "ERR_INVALID_URL") from exc
    target: dict[str, Any] = {"protocol": scheme + ":", "hostname": host}
    name = f"[{host}]" if ":" in host else host
    if port is None or port == _DEFAULT_PORTS[scheme]:
        netloc = name
    else:
        netloc = f"{name}:{port}"
        target["port"] = port
    path = parts.path or "/"
    if not _PLAIN_PATH.fullmatch(path):  # most paths need no escaping: skip quote()'s work
        path = quote(path, safe=_PATH_SAFE)
    query = parts.query
    if query and not _PLAIN_QUERY.fullmatch(query):
        query = quote(query, safe=_QUERY_SAFE)
    if query:
        path = f"{path}?{query}"
    target["path"] = path
    credentials = None
    if parts.username is not None:
        credentials = unquote(parts.username) + ":" + unquote(parts.password or "")
    # urlunsplit's result for these parts (a netloc, a path starting with "/"), built directly.
    return f"{scheme}://{netloc}{path}", credentials, target


def _origin(url: str) -> tuple[str, str, int]:
    parts = urlsplit(url)
    return parts.scheme, (parts.hostname or "").lower(), parts.port or (443 if parts.scheme == "https" else 80)


# ------------------------------------------------------------------ retries


def _retryable_error(exc: BaseException) -> bool:
    """A failure that says the server never saw (or never answered) the request."""
    return isinstance(exc, (errors.ConnectionRefusedError, errors.ConnectionResetError)) and not isinstance(
        exc, errors.ProxyError
    )


# ------------------------------------------------------------------ fetch()


#: Pools of connections to a proxy that forwards plain http: requests, one per
#: (proxy, origin), the most recently used kept.  Per origin because a proxy may
#: turn a connection into a pipe to the first request's origin (pproxy does): a
#: pooled connection must never carry a request for another origin.
_FORWARD_AGENTS: collections.OrderedDict[tuple[str, str], Any] = collections.OrderedDict()
_MAX_FORWARD_AGENTS = 64
#: One pool per proxy for https: URLs fetch() sends through it (created on first
#: use), the most recently used kept: a crawler that rotates through proxies (or
#: credentials) must not keep an agent for each forever.
_TUNNEL_AGENTS: collections.OrderedDict[str, _agent.Agent] = collections.OrderedDict()
_MAX_TUNNEL_AGENTS = 64


def _kept(table: collections.OrderedDict[Any, Any], key: Any, limit: int, make: Any) -> Any:
    """``table[key]``, made by ``make()`` if missing; the least recently used beyond
    ``limit`` are dropped, not destroyed: a request may be using one, and its idle
    connections close at their 5 s timeout (the agent's sweeper)."""
    agent = table.get(key)
    if agent is None:
        agent = table[key] = make()
        while len(table) > limit:
            table.popitem(last=False)
    else:
        table.move_to_end(key)
    return agent


def _forward_agent(proxy_url: str, origin: str) -> Any:
    """The agent whose connections go to ``proxy_url`` (over TLS for an https://
    proxy) to ask it for ``origin``'s http: URLs in absolute-form."""
    secure = _proxy.parse_proxy(proxy_url).scheme == "https"
    return _kept(_FORWARD_AGENTS, (proxy_url, origin), _MAX_FORWARD_AGENTS,
                 lambda: (_agent.Agent if secure else http.Agent)(keep_alive=True, timeout=5000))


def _tunnel_agent(proxy_url: str) -> _agent.Agent:
    """The agent whose connections are tunnels through ``proxy_url``: as the global
    agent (keep-alive, 5 s idle), a pool of its own so that proxied and direct
    connections never mix."""
    return _kept(_TUNNEL_AGENTS, proxy_url, _MAX_TUNNEL_AGENTS,  # type: ignore[no-any-return]
                 lambda: _agent.Agent(keep_alive=True, timeout=5000, proxy=proxy_url))


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
    agent: _agent.Agent | None = None,
    retry: int | Retry | None = 0,
    allow_downgrade: bool = False,
    **tls_options: Unpack[FetchOptions],
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
    ``datetime.timedelta``); ``deadline``: the whole fetch (connecting, a proxy's
    tunnel, TLS, redirects, retries, the body), in milliseconds or a timedelta; both
    raise ``TimeoutError`` (ETIMEDOUT; ``fetch deadline of ... exceeded``).
    ``retry``: an int (retries) or a :class:`Retry` policy.  ``agent``: the
    :class:`~greenhttps.Agent` for URLs of its protocol (else the global agent of
    the URL's protocol); an https: agent also decides the proxy for its URLs
    (``Agent(proxy=...)``), since its pool is all tunnels or none.  ``proxy``: a
    proxy URL (``http://user:pass@host:port``; ``https://``, checked with the
    ``proxy_ca`` option or else the default roots; ``socks5://``, ``socks5h://``),
    ``False`` for none; None (the
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
    extra = {snake_case(key): value for key, value in tls_options.items()} if tls_options else {}
    for name in extra:
        if name not in REQUEST_OPTIONS:
            raise TypeError(f"fetch: unknown option {name!r}")
        if name in _MANAGED:
            raise TypeError(f"fetch: {name!r} is set by fetch() itself")
    # The default (no retry) needs no policy object of its own: Retry is frozen.
    policy = _NO_RETRY if retry is None or (type(retry) is int and retry == 0) else Retry.of(retry)
    idle_ms = None if timeout is None else duration_ms(timeout, "timeout")
    deadline_ms = None if deadline is None else duration_ms(deadline, "deadline")
    ends_at = started + deadline_ms / 1000.0 if deadline_ms else None
    if agent is not None and not isinstance(agent, _agent.Agent):
        raise errors.InvalidArgumentError(f"agent must be an Agent or None, not {agent!r}", "ERR_INVALID_ARG_TYPE")

    method = method.upper()
    current, credentials, target = _parse_url(url)
    out = _RequestHeaders(headers)
    content, replayable = _encode_body(body, json, out)
    out.add_defaults(credentials)
    timings = Timings()

    hop = _Hop(extra, idle_ms, ends_at, agent, proxy, deadline_ms)
    while True:
        req, res = hop.send_with_retries(method, current, target, out, content, replayable, policy, timings)
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
            next_url, _, next_target = _parse_url(urljoin(current, location))
        except errors.InvalidArgumentError:
            req.destroy()
            raise errors.RedirectError(f"{current} redirected to {location!r}, not an http(s) URL",
                                       "ERR_INVALID_REDIRECT", url=current, location=location) from None
        if current.startswith("https:") and next_url.startswith("http:") and not allow_downgrade:
            req.destroy()
            raise errors.RedirectError(
                f"{current} redirected to plain http: {next_url} (allow_downgrade=True to follow)",
                "ERR_UNSAFE_REDIRECT", url=current, location=location)
        status = res.status_code
        if (status == 303 and method not in ("GET", "HEAD")) or (status in (301, 302) and method == "POST"):
            method, content, replayable = "GET", None, True
            out.drop(_BODY_HEADERS)
        elif content is not None and not replayable:
            req.destroy()
            raise errors.RedirectError(f"{current} redirected ({status}) a streamed body, which cannot be sent again",
                                       url=current, location=location)
        if _origin(next_url) != _origin(current):
            # A Host the caller set named the old origin (undici drops it too).
            out.drop(_CREDENTIAL_HEADERS | {"host"})
        _drain(res, req)
        current, target = next_url, next_target
        timings.redirects += 1
    timings.headers = (time.monotonic() - started) * 1000.0
    timings.reused = bool(req.reused_socket)
    return Response(res, req, current, redirected=timings.redirects > 0, decompress=decompress,
                    max_decoded_size=max_decoded_size, started=started, timings=timings)


class _Hop:
    """One request of a fetch, sent as often as the retry policy allows."""

    # A crawl holds a thousand fetches waiting at once: no __dict__ each.
    __slots__ = ("extra", "deadline_ms", "idle_ms", "ends_at", "agent", "proxy")

    def __init__(self, extra: dict[str, Any], idle_ms: float | None, ends_at: float | None, agent: Any,
                 proxy: str | bool | None, deadline_ms: float | None = None) -> None:
        self.extra = extra
        self.deadline_ms = deadline_ms  # for the error message
        self.idle_ms = idle_ms
        self.ends_at = ends_at
        self.agent = agent
        self.proxy = proxy

    def _remaining_ms(self) -> float | None:
        if self.ends_at is None:
            return None
        left = (self.ends_at - time.monotonic()) * 1000.0
        if left <= 0:
            raise errors.TimeoutError(f"fetch deadline of {format_ms(self.deadline_ms or 0)} exceeded", "ETIMEDOUT")
        return left

    def send(self, method: str, url: str, target: dict[str, Any], headers: _RequestHeaders,
             content: Any) -> tuple[Any, Any]:
        """Send one request for ``url`` (``target``: its request options, from
        :func:`_parse_url`); return it and its response (head read, body not)."""
        protocol = target["protocol"]
        scheme = protocol[:-1]
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
        forwarding: str | None = None  # the proxy asked in absolute-form, by its display name
        if (proxy_url is None and given is None) or (proxy_url is not None and scheme == "http"):
            options["proxy"] = False  # fetch() chose (direct, or forwarding): no agent's proxy_env
        if proxy_url is not None and scheme == "http" and not _proxy.parse_proxy(proxy_url).socks:
            # A plain origin through a proxy: ask the proxy, in absolute-form.
            agent = _forward_agent(proxy_url, urlsplit(url).netloc)
            target = _proxy.forward_options(proxy_url, url)
            forwarding = _proxy.parse_proxy(proxy_url).display
            mine = options["headers"]
            given_names = {name.lower() for name in mine}
            proxy_headers: dict[str, str] = target.pop("headers")  # type: ignore[assignment]
            options["headers"] = {**{k: v for k, v in proxy_headers.items() if k.lower() not in given_names}, **mine}
            if target["protocol"] == "https:":
                # TLS with the proxy itself: its own CAs (proxy_ca), not the
                # origin's TLS options (an http: origin has no TLS to configure).
                options = {k: v for k, v in options.items() if k not in CLIENT_TLS_KEYS and k != "proxy_ca"}
                if self.extra.get("proxy_ca") is not None:
                    options["ca"] = self.extra["proxy_ca"]
                req = _client.request(cast("RequestOptions", target), agent=agent, **options)
            else:
                req = http.request(cast("RequestOptions", target), agent=agent, **options)
        elif proxy_url is not None and scheme == "http":
            # Through a SOCKS proxy: a tunnel, as for https: (SOCKS cannot forward).
            agent = _kept(_FORWARD_AGENTS, (proxy_url, ""), _MAX_FORWARD_AGENTS,
                          lambda: http.Agent(keep_alive=True, timeout=5000, proxy=proxy_url))
            options.pop("proxy")
            req = http.request(url, agent=agent, **options)
        else:
            make = _client.request if scheme == "https" else http.request
            req = make(cast("RequestOptions", target), agent=agent, **options)  # the URL's parts: request() need not split it again
        # getresponse() follows in this greenlet, before it yields, and nobody else
        # holds the request to listen to it: no reader to decide on later (as get()).
        req._blocking = True
        del options  # request() took its own copy: not held through the wait below
        try:
            if content is None or isinstance(content, bytes):
                req.end(content)
            else:
                for chunk in content:
                    req.write(chunk)
                req.end()
            res = req.getresponse(timeout=remaining)
        except BaseException as exc:
            req.destroy()
            if isinstance(exc, errors.TimeoutError) and self.ends_at is not None and time.monotonic() >= self.ends_at:
                # The request's deadline was what is left of ours: say it is fetch's
                # (and where it ran out, if the dial says so).
                where = "" if str(exc).startswith("request deadline of") else f": {exc.message}"
                expired = errors.TimeoutError(f"fetch deadline of {format_ms(self.deadline_ms or 0)} exceeded{where}",
                                              "ETIMEDOUT")
                if getattr(exc, "proxy", None) is not None:
                    expired.proxy = exc.proxy  # type: ignore[attr-defined]
                raise expired from exc
            if forwarding is not None and isinstance(exc, errors.NetworkError) and getattr(exc, "proxy", None) is None:
                # The connection was to the proxy: say so (as a tunnel's errors do).
                exc.args = (f"{exc.message} (proxy {forwarding})", *exc.args[1:])
                exc.proxy = forwarding  # type: ignore[attr-defined]
            raise
        return req, res

    def send_with_retries(self, method: str, url: str, target: dict[str, Any], headers: _RequestHeaders,
                          content: Any, replayable: bool, policy: Retry, timings: Timings) -> tuple[Any, Any]:
        allowed = policy.total > 0 and replayable and policy.allows(method)
        while True:
            attempt = timings.retries
            can_retry = allowed and attempt < policy.total
            try:
                req, res = self.send(method, url, target, headers, content)
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


# The public name lives in the package face (reprs, help(), pickle).
fetch.__module__ = "greenhttps"
