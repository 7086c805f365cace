"""Agent: Node's connection pool, on gevent primitives.

Theory of operation
-------------------
The shape is Node's ``lib/_http_agent.js``: ``sockets`` (in use), ``free_sockets``
(idle, reusable) and ``requests`` (waiting for a socket) are dicts of lists keyed by
:meth:`Agent.get_name`, and a key is deleted the moment its list empties.

A request asks :meth:`Agent.acquire` for a connection.  It gets an idle one that is
still alive, or a *permit* to dial a new one (None) when the name is under
``max_sockets`` and the agent under ``max_total_sockets``, or it waits in a FIFO
queue.  When a connection is released it goes **straight to the next waiter** for
its name (Node's ``'free'`` hand-off), else it is parked (LIFO or FIFO per
``scheduling``) or closed.  A destroyed connection hands its slot to the next waiter
as a permit.

Invariant: no method here blocks, resolves names, touches a socket or calls user
code between reading and writing the pool's dicts.  Under gevent that makes every
bookkeeping step atomic without locks.  Sockets to close are collected and closed
after the bookkeeping is done.  Waiting is a ``gevent.event.AsyncResult`` per waiter,
removed in ``finally`` so that ``gevent.Timeout`` and ``GreenletExit`` never strand
a slot.

*Pacing* (``Agent(pace=ms)``, off by default): a minimum interval between the
starts of two requests to one origin (host and port), for crawlers that must be
polite.  A start is when the request gets its connection, a pooled one or the
permit to dial one (a new connection's TCP and TLS handshakes come after).  A request first books the origin's next start time (the origin's
frontier moves one interval on, so a crowd of greenlets is spread out without
waking together) and sleeps until it, holding nothing; only then does it ask the
pool.  Because a pool wait can bunch requests again (two waiters handed
connections at once), the start itself is checked once more after acquisition,
and the later one sleeps the rest of the interval (the one case where a slot is
held while waiting).  Off, it costs one attribute test per request.

Size: about 650 lines, past STYLE's guide: Node's ``Agent`` surface (``get_name``,
``sockets``/``free_sockets``/``requests``, its options and errors) and the pool's
bookkeeping (permits, the waiter queue, free-socket watchers and expiry, the TLS
session cache) share one state, easier to read in one place.
"""

from __future__ import annotations

import collections
import hashlib
import operator
import os
import time
import types
from collections.abc import Mapping  # isinstance() with it: typing's alias checks ~10x slower
from typing import TYPE_CHECKING, Any

import gevent
from gevent.event import AsyncResult

from . import errors
from ._dial import ClientConnection, dial
from ._dns import DnsCache
from ._events import EventEmitter
from ._options import (
    AGENT_OPTIONS,
    CLIENT_TLS_KEYS,
    REQUEST_OPTIONS,
    attribute_aliases,
    merge_options,
    node_aliases,
)
from ._proxy import USE_ENV_PROXY, env_proxy_for, parse_proxy
from ._retry import duration_ms
from ._url import server_name

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from ._net_socket import Socket
    from ._types import AgentOptions

__all__ = ["Agent", "get_global_agent", "set_global_agent", "package_face"]

_INF = float("inf")
#: Methods a request may be sent again with, on a new connection, when the reused one
#: proves closed before any response byte (RFC 9110 §9.2.2; _exchange._may_retry).
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})


def _check_at_least_one(name: str, value: object) -> None:
    """Node's ``validateNumber(value, name, 1)``: the errors an Agent's limits raise
    (:class:`~greenhttps.errors.InvalidArgumentError`, a ValueError, with Node's code)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise errors.InvalidArgumentError(
            f'The "{name}" argument must be of type number. Received {value!r}', "ERR_INVALID_ARG_TYPE"
        )
    if not value >= 1:  # NaN too
        raise errors.InvalidArgumentError(
            f'The value of "{name}" is out of range. It must be >= 1. Received {value!r}', "ERR_OUT_OF_RANGE"
        )


#: The request options a pool key is computed from.
_NAME_KEYS = frozenset({"host", "port", "local_address", "family", "socket_path", "proxy", "proxy_ca"}) | CLIENT_TLS_KEYS
#: Those options in the order a request's options dict has them (REQUEST_OPTIONS'),
#: and a C-level getter of their values (see Agent._name_of_request).
_NAME_KEY_ORDER = tuple(name for name in REQUEST_OPTIONS if name in _NAME_KEYS)
_name_values = operator.itemgetter(*_NAME_KEY_ORDER)

#: Node 20's https getName segments (20) after the http name, in order, as our option
#: names ('' for the options greenhttps does not have: always empty).  ``digest``:
#: named by a digest of the value (with the passphrase that unlocks it).
_TLS_SEGMENTS = (
    ("ca", "digest"), ("cert", "digest"), ("", ""), ("ciphers", ""), ("key", "digest"), ("pfx", "digest"),
    ("reject_unauthorized", ""), ("servername", ""), ("min_version", ""), ("max_version", ""),
    ("secure_protocol", ""), ("", ""), ("", ""), ("", ""), ("", ""), ("", ""), ("", ""), ("", ""), ("", ""),
    ("", ""),
)
#: Options that change a connection but that Node's name leaves out.
_UNNAMED_TLS = ("ssl_context", "check_server_identity", "passphrase")


def _digest(value: object) -> str:
    return hashlib.sha1(repr(value).encode()).hexdigest()[:16]  # noqa: S324 (a key, not security)


def _tls_segments(opts: Mapping[str, Any], host: str) -> str:
    """The TLS half of an https pool key (see :meth:`Agent.get_name`)."""
    parts = []
    for option, how in _TLS_SEGMENTS:
        value = opts.get(option) if option else None
        if option == "servername" and value == host:
            value = None  # Node names the servername only when it differs from the host
        if value is None or value == "":
            parts.append("")
        elif how == "digest":
            parts.append(_digest((value, opts.get("passphrase"))))
        elif isinstance(value, bool):
            parts.append("true" if value else "false")  # Node's String(boolean)
        else:
            parts.append(str(value))
    unnamed = [(option, opts[option]) for option in _UNNAMED_TLS if opts.get(option) is not None]
    if unnamed and not (unnamed == [("passphrase", opts.get("passphrase"))] and (opts.get("key") or opts.get("pfx"))):
        parts.append(_digest(unnamed))
    return ":" + ":".join(parts)


def _origin_of(name: str, request: Any) -> str:
    """What pacing counts per: the request's host and port (any TLS options, any
    local address); the pool key when the asker is not a ClientRequest."""
    opts = getattr(request, "_opts", None)
    if isinstance(opts, Mapping) and opts.get("host"):
        return f"{opts['host']}:{opts.get('port')}"
    return name


def _sockets_of(pool: dict[str, list[ClientConnection]]) -> dict[str, list[Any]]:
    return {name: [conn.socket for conn in conns] for name, conns in pool.items() if conns}


@node_aliases
@attribute_aliases(
    "keep_alive", "keep_alive_msecs", "max_sockets", "max_total_sockets", "max_free_sockets",
    "max_cached_sessions", "proxy_env",
)
class Agent(EventEmitter):
    """A pool of keep-alive connections per origin (Node's ``https.Agent``).

    ``Agent(keep_alive=False, keep_alive_msecs=1000, max_sockets=inf,
    max_total_sockets=inf, max_free_sockets=256, timeout=None, max_cached_sessions=100,
    scheduling='lifo', pace=None, proxy=None, proxy_env=None, dns_cache=True,
    dns_cache_ttl=10000, dns_cache_negative_ttl=1000, dns_cache_size=1024, **defaults)``:
    times in milliseconds; ``timeout`` closes a free socket idle that long; ``pace`` (ms,
    or a ``datetime.timedelta``) is the least time between the starts of two
    requests to one origin (host and port), waited for by the greenlet whose
    request it is (not Node's).  ``proxy``: a proxy URL (``http://``, ``https://``,
    ``socks5://``, ``socks5h://``) for its requests (each may name its own, or
    ``proxy=False``; ``proxy_ca``: the CAs an https:// proxy is checked with, else
    the default roots, never ``ca``); ``proxy_env``: True to
    take the proxy from ``HTTPS_PROXY``/``HTTP_PROXY``/``NO_PROXY`` (read at each
    request), or a mapping of those variables (Node's ``proxyEnv``); None (the
    default) means True when ``GREENHTTPS_USE_ENV_PROXY=1`` as the agent is made.
    The ``dns_cache`` options keep resolver answers (and failures, for less) per
    agent (``dns_cache=False``: ask every time).  Request options given here
    (``hostname``, ``ca``, ``reject_unauthorized``, ``auto_select_family``...) are
    defaults for every request made through it.
    """

    secure = True
    default_port = 443
    protocol = "https:"
    #: Made for one request (``agent=False``): nothing it would cache is ever asked for.
    _one_off = False

    def __init__(self, options: AgentOptions | None = None, **kwargs: Unpack[AgentOptions]) -> None:
        super().__init__()
        opts = merge_options(AGENT_OPTIONS, options, kwargs, what=type(self).__name__)
        self.keep_alive: bool = bool(opts.pop("keep_alive"))
        self.keep_alive_msecs: float = opts.pop("keep_alive_msecs")
        self.max_sockets: float = opts.pop("max_sockets") or _INF  # Node: `|| Infinity`
        max_total = opts.pop("max_total_sockets")
        _check_at_least_one("max_total_sockets", max_total)  # Node's validateNumber(v, name, 1)
        self.max_total_sockets: float = max_total
        self.max_free_sockets: int = opts.pop("max_free_sockets")
        self.timeout: float | None = opts.pop("timeout")
        self.max_cached_sessions: int = opts.pop("max_cached_sessions")
        self.scheduling: str = opts.pop("scheduling")
        # The DNS cache (not in Node; see _dns): its settings stay readable here.
        self.dns_cache: bool = bool(opts.pop("dns_cache"))
        self.dns_cache_ttl: float = opts.pop("dns_cache_ttl")
        self.dns_cache_negative_ttl: float = opts.pop("dns_cache_negative_ttl")
        self.dns_cache_size: int = opts.pop("dns_cache_size")
        #: The cache itself (None with ``dns_cache=False``); ``agent.dns.clear()`` empties it.
        self.dns: DnsCache | None = DnsCache(
            ttl=self.dns_cache_ttl, negative_ttl=self.dns_cache_negative_ttl, max_entries=self.dns_cache_size,
        ) if self.dns_cache else None
        self.pace = opts.pop("pace")
        proxy_env = opts.pop("proxy_env")
        if proxy_env is None:
            proxy_env = os.environ.get(USE_ENV_PROXY, "").strip().lower() in ("1", "true")
        if not isinstance(proxy_env, (bool, Mapping)):
            raise errors.InvalidArgumentError(
                f"proxy_env must be True, False, None or a mapping, not {proxy_env!r}", "ERR_INVALID_ARG_TYPE"
            )
        #: Where request()/get() read proxies from: os.environ (True), a mapping, or nowhere.
        self.proxy_env: bool | Mapping[str, str] = proxy_env
        if opts.get("proxy"):
            parse_proxy(opts["proxy"])  # a bad URL fails here, not at the first request
        #: Per origin: [the next start time a request may book, the last start].
        self._paced: dict[str, list[float]] = {}
        if self.scheduling not in ("lifo", "fifo"):
            raise errors.InvalidArgumentError(
                f"The argument 'scheduling' must be one of: 'fifo', 'lifo'. Received {self.scheduling!r}",
                "ERR_INVALID_ARG_VALUE",
            )
        # Node takes any maxSockets; a pool of less than one socket could serve nobody.
        _check_at_least_one("max_sockets", self.max_sockets)
        #: Request options given to the agent: defaults for its requests.
        self.options = {name: value for name, value in opts.items() if value is not None}
        self.requests: dict[str, list[Any]] = {}
        self._in_use: dict[str, list[ClientConnection]] = {}
        self._free: dict[str, list[ClientConnection]] = {}
        self._waiters: dict[str, collections.deque[tuple[AsyncResult, Any]]] = {}
        self._dialing: dict[str, int] = {}
        self._total = 0
        self._sessions: collections.OrderedDict[str, Any] = collections.OrderedDict()
        #: get_name() results by their (hashable) options: a request asks once each.
        self._names: dict[frozenset[Any], str] = {}
        #: _name_of_request() results by the request's name-option values.
        self._names_by_value: dict[tuple[Any, ...], str] = {}
        self._sweeper: gevent.Greenlet | None = None
        self._sweep_at = _INF

    def __repr__(self) -> str:
        busy = sum(map(len, self._in_use.values()))
        free = sum(map(len, self._free.values()))
        waiting = sum(map(len, self._waiters.values()))
        return f"<greenhttps.Agent keep_alive={self.keep_alive} busy={busy} free={free} waiting={waiting}>"

    @property
    def pace(self) -> float | None:
        """The least time in milliseconds between the starts of two requests to one
        origin (None: no pacing); settable (a number of ms or a ``timedelta``)."""
        return self._pace_ms

    @pace.setter
    def pace(self, value: Any) -> None:
        ms = duration_ms(value, "pace")
        self._pace_ms = ms or None
        self._pace_s = ms / 1000.0 if ms else 0.0

    @property
    def total_socket_count(self) -> int:
        """Connections the agent holds or is dialing, in use and free (Node's ``totalSocketCount``)."""
        return self._total

    # ---------------------------------------------------------------- names

    def get_name(self, options: Mapping[str, Any] | None = None) -> str:
        """The pool key, in Node's shape: ``host:port:local_address``, then
        ``:family`` (4 or 6 only) and ``:socket_path`` when given (Node's
        ``http.Agent.getName``); an https agent adds Node 20's 20 TLS segments
        (``ca``, ``cert``, ..., ``servername`` when it differs from the host, ...).

        ``options`` are request options (camelCase or snake_case keys), as Node's
        ``agent.getName(options)``.  A certificate, key or pfx is named by a digest
        (Node copies the PEM text in); options Node leaves out of the name but which
        change the connection (``ssl_context``, ``check_server_identity``, a lone
        ``passphrase``) add a last segment, a digest of them.  Raises ``TypeError``
        for an unknown option.
        """
        key: frozenset[Any] | None
        try:
            key = frozenset(options.items()) if options else frozenset()
        except TypeError:  # an unhashable value (a list of CAs, say): compute it
            key = None
        if key is not None:
            cached = self._names.get(key)
            if cached is not None:
                return cached
        name = self._compute_name(options)
        if key is not None:
            if len(self._names) >= 256:
                self._names.clear()
            self._names[key] = name
        return name

    def _name_of_request(self, opts: Mapping[str, Any]) -> str:
        """``get_name()`` of a request's options (its pool key): the options Node
        names that are set, in the request's order.  Cached by their values (one
        C-level fetch), unless a subclass has its own ``get_name`` (then always
        asked) or a value is unhashable."""
        if type(self).get_name is Agent.get_name and "get_name" not in self.__dict__:
            try:
                values = _name_values(opts)
                name = self._names_by_value.get(values)
            except (KeyError, TypeError):  # options made elsewhere, a list of CAs...
                pass
            else:
                if name is None:
                    name = self.get_name({k: v for k, v in zip(_NAME_KEY_ORDER, values) if v is not None})
                    if len(self._names_by_value) >= 256:
                        self._names_by_value.clear()
                    self._names_by_value[values] = name
                return name
        return self.get_name({k: v for k in _NAME_KEY_ORDER if (v := opts.get(k)) is not None})

    def _compute_name(self, options: Mapping[str, Any] | None) -> str:
        opts = merge_options(REQUEST_OPTIONS, options, what="get_name", defaults=False)
        # As a request does: hostname is preferred over host.
        host = opts.get("hostname") or opts.get("host") or "localhost"
        name = f"{host}:{opts.get('port') or ''}:{opts.get('local_address') or ''}"
        family = opts.get("family")
        if family in (4, 6) and not isinstance(family, bool):
            name += f":{family}"
        if opts.get("socket_path"):
            name += f":{opts['socket_path']}"
        if self.secure:
            name += _tls_segments(opts, host)
        proxy = opts.get("proxy")
        if proxy:
            # Not Node's: connections through a proxy (each proxy, each set of its
            # credentials) never pool with direct ones.
            where = parse_proxy(proxy)
            name += f":proxy={where.display}"
            if where.authorization is not None:
                name += "#" + _digest(where.authorization)
            if where.scheme == "https" and opts.get("proxy_ca") is not None:
                name += "#ca=" + _digest(opts["proxy_ca"])
        return name

    def request_proxy(self, opts: Mapping[str, Any]) -> str | None:
        """The proxy URL a request with options ``opts`` goes through, or None.

        The request's ``proxy`` (the agent's as its default; False: none), else,
        with ``proxy_env``, the environment's for its protocol and host (curl's
        ``HTTPS_PROXY``/``HTTP_PROXY``/``ALL_PROXY``/``NO_PROXY``).  Raises
        ``InvalidArgumentError`` for a proxy URL of a scheme not supported."""
        proxy = opts.get("proxy")
        if proxy is None and self.proxy_env and not opts.get("socket_path"):
            environ = self.proxy_env if isinstance(self.proxy_env, Mapping) else os.environ
            scheme = "https" if (opts.get("protocol") or self.protocol) == "https:" else "http"
            proxy = env_proxy_for(scheme, opts.get("hostname") or opts.get("host") or "localhost", environ)
        if proxy is None or proxy is False:
            return None
        parse_proxy(proxy)
        return proxy  # type: ignore[no-any-return]

    # ----------------------------------------------------------- connecting

    def create_connection(self, port: Any = None, host: Any = None, options: Mapping[str, Any] | None = None) -> Socket:
        """Open a connection as this agent's requests do: TCP, then (https) TLS with the
        certificate and host-name checks; Node's ``agent.createConnection()``.

        Node's shapes: ``create_connection(options)``, ``(port, options)``, ``(port,
        host, options)``; ``options`` are request options (``host``, ``port``, ``ca``,
        ``servername``, ``session``...), the agent's own options filling the gaps,
        and the caller's dict is not changed.  Blocks until the connection is made
        and returns a :class:`~greenhttps.Socket` that belongs to the caller (not
        pooled).  Raises what a request would report as ``'error'`` (Node returns
        the socket at once and emits it there), e.g. ``CertificateError`` for a
        certificate the agent's options do not trust.

        A subclass may override it, as in Node: requests through that agent then
        use the Socket it returns (it must be a greenhttps Socket).
        """
        given: dict[str, Any] = {}
        if isinstance(port, Mapping):
            given.update(port)
        elif isinstance(host, Mapping):
            given.update(host)
        elif isinstance(options, Mapping):
            given.update(options)
        opts = merge_options(REQUEST_OPTIONS, self.options, given, what="create_connection")
        if isinstance(port, int) and not isinstance(port, bool):
            opts["port"] = port
        if isinstance(host, str):
            opts["host"] = host
        opts["host"] = opts["hostname"] or opts["host"] or "localhost"
        opts["port"] = int(opts["port"] or opts["default_port"] or self.default_port)
        opts["servername"] = server_name(opts, None)
        name = self.get_name({k: v for k, v in opts.items() if v is not None and k in _NAME_KEYS})
        conn = dial(opts, name, secure=self.secure, sessions=self, dns=self.dns,
                    keep_alive_msecs=self.keep_alive_msecs if self.keep_alive else None)
        conn.wire.detach()  # the caller reads and writes the socket itself
        return conn.socket

    def _overrides_create_connection(self) -> bool:
        """A subclass brought its own ``create_connection`` (Node's override point)."""
        return type(self).create_connection is not Agent.create_connection

    # ---------------------------------------------------------- acquisition

    def acquire(self, name: str, request: Any, timeout: float | None = None) -> ClientConnection | None:
        """A live idle connection for ``name``, or None: a permit to dial one.

        Pool internals, used by ``request``; ``request`` is the ClientRequest asking
        (counted in Node's ``agent.requests``).  Blocks (cooperatively, FIFO) while the
        name or the agent is at its limit, at most ``timeout`` seconds (None: no limit).
        Raises ``gevent.Timeout`` subclasses / ``GreenletExit`` untouched; the wait
        is withdrawn either way.  With ``pace``, first waits for the origin's turn
        (see the module docstring), within the same ``timeout``.
        """
        if self._pace_s:
            # ``timeout`` bounds the waits for the origin's turn as well as the pool's.
            timer = gevent.Timeout(timeout) if timeout is not None else None
            if timer is not None:
                timer.start()
            try:
                origin = _origin_of(name, request)
                self._book_start(origin)
                conn = self._acquire(name, request, timeout)
                try:
                    self._start_paced(origin)
                except BaseException:
                    if conn is None:
                        self._unreserve(name)
                    else:
                        self.release(conn, reusable=True)
                    raise
                return conn
            finally:
                if timer is not None:
                    timer.close()
        return self._acquire(name, request, timeout)

    # -------------------------------------------------------------- pacing

    def _pace_state(self, origin: str, now: float) -> list[float]:
        state = self._paced.get(origin)
        if state is None:
            if len(self._paced) >= 1024:
                # A crawl touches many origins: forget those that constrain nobody now.
                pace = self._pace_s
                for key in [k for k, (next_at, last) in self._paced.items() if next_at <= now and last + pace <= now]:
                    del self._paced[key]
            state = self._paced[origin] = [now, -_INF]
        return state

    def _book_start(self, origin: str) -> None:
        """Book the origin's next start time and sleep until it (holding nothing)."""
        interval = self.pace / 1000.0 if self.pace else 0.0
        now = time.monotonic()
        state = self._pace_state(origin, now)
        at = max(now, state[0])
        state[0] = at + interval
        if at > now:
            try:
                gevent.sleep(at - now)
            except BaseException:
                # Aborted, killed or timed out while waiting: give the turn back, or
                # every later request to the origin would wait for it too.  (Two
                # bookings may then share a time; _start_paced still spaces them.)
                state[0] -= interval
                raise

    def _start_paced(self, origin: str) -> None:
        """The request starts now, unless one started less than ``pace`` ago (a pool
        wait bunched them): then sleep the rest first."""
        while True:
            now = time.monotonic()
            state = self._pace_state(origin, now)
            wait = state[1] + self._pace_s - now
            if wait <= 0:
                state[1] = now
                state[0] = max(state[0], now + self._pace_s)
                return
            gevent.sleep(wait)

    def _acquire(self, name: str, request: Any, timeout: float | None) -> ClientConnection | None:
        # A request whose whole body is known (end() called) and whose method is
        # idempotent is sent again on a new connection if the reused one proves
        # closed before any response byte (_exchange._may_retry): only for it may a
        # freshly pooled socket skip the liveness poll (ClientConnection.is_alive).
        conn = self._take(name, getattr(request, "finished", False) and getattr(request, "method", "") in IDEMPOTENT_METHODS)
        if conn is None and not self._can_dial(name) and self._room_for(name):
            self._evict_idle()  # only the total limit is in the way
        if conn is not None or self._can_dial(name):
            if conn is None:
                self._reserve(name)
            return conn
        waiter: AsyncResult[ClientConnection | None] = AsyncResult()
        entry = (waiter, request)
        self._waiters.setdefault(name, collections.deque()).append(entry)
        self.requests.setdefault(name, []).append(request)
        try:
            result = waiter.get(timeout=timeout)
        except BaseException:
            self._withdraw(name, entry)
            if waiter.ready() and waiter.successful():
                # Handed a connection or a permit just as we gave up: pass it on.
                handed = waiter.value
                if handed is None:
                    self._unreserve(name)
                else:
                    self.release(handed, reusable=True)
            raise
        self._withdraw(name, entry)
        return result  # type: ignore[no-any-return]

    def _take(self, name: str, replayable: bool = False) -> ClientConnection | None:
        """Pop a reusable idle connection (checking that the server kept it open;
        ``replayable``: the request would be sent again if it did not)."""
        free = self._free.get(name)
        dead = []
        conn = None
        now = time.monotonic()
        while free:
            candidate = free.pop() if self.scheduling == "lifo" else free.pop(0)
            candidate.unpark()
            if not free:
                del self._free[name]  # Node deletes an origin's emptied list (as _sync)
            if candidate.expires_at > now and candidate.is_alive(now if replayable else None):
                conn = candidate
                break
            dead.append(candidate)
        for stale in dead:
            self._forget(stale)
            stale.close()
        if conn is not None:
            in_use = self._in_use.get(name)
            if in_use is None:
                self._in_use[name] = [conn]
            else:
                in_use.append(conn)
        return conn

    def _room_for(self, name: str) -> bool:
        """``name`` is under ``max_sockets`` (the total limit aside)."""
        return len(self._in_use.get(name, ())) + self._dialing.get(name, 0) < self.max_sockets

    def _can_dial(self, name: str) -> bool:
        return self._room_for(name) and self._total < self.max_total_sockets

    def _evict_idle(self) -> bool:
        """Close the free connection nearest its expiry to make room under
        ``max_total_sockets``: idle sockets of one origin must not starve requests
        for another (Node destroys a free socket in that case too)."""
        oldest: ClientConnection | None = None
        for conns in self._free.values():
            for conn in conns:
                if oldest is None or conn.expires_at < oldest.expires_at:
                    oldest = conn
        if oldest is None:
            return False
        self._free[oldest.name].remove(oldest)
        self._sync(oldest.name)
        self._total -= 1
        oldest.close()
        return True

    def _starved_waiters(self) -> bool:
        """Someone waits only because of ``max_total_sockets``."""
        return self._total >= self.max_total_sockets and any(self._room_for(n) for n in self._waiters)

    def _reserve(self, name: str) -> None:
        self._dialing[name] = self._dialing.get(name, 0) + 1
        self._total += 1

    def _unreserve(self, name: str) -> None:
        left = self._dialing.get(name, 0) - 1
        if left > 0:
            self._dialing[name] = left
        else:
            self._dialing.pop(name, None)
        self._total -= 1
        self._wake_for_permit(name)

    def connected(self, name: str, conn: ClientConnection) -> None:
        """A dial made with a permit for ``name`` succeeded: ``conn`` is now in use."""
        left = self._dialing.get(name, 0) - 1
        if left > 0:
            self._dialing[name] = left
        else:
            self._dialing.pop(name, None)
        self._in_use.setdefault(name, []).append(conn)
        self._sync(name)

    def dial_failed(self, name: str) -> None:
        """A dial made with a permit for ``name`` failed: give the slot to the next waiter."""
        self._unreserve(name)

    def _withdraw(self, name: str, entry: tuple[AsyncResult, Any]) -> None:
        queue = self._waiters.get(name)
        if queue is not None:
            try:
                queue.remove(entry)
            except ValueError:
                pass
            if not queue:
                del self._waiters[name]
        waiting = self.requests.get(name)
        if waiting is not None:
            try:
                waiting.remove(entry[1])
            except ValueError:
                pass
            if not waiting:
                del self.requests[name]

    def _next_waiter(self, name: str) -> AsyncResult | None:
        queue = self._waiters.get(name)
        while queue:
            waiter, request = queue.popleft()
            self._withdraw_request(name, request)
            if not queue:
                del self._waiters[name]
            if not waiter.ready():
                return waiter
        return None

    def _withdraw_request(self, name: str, request: Any) -> None:
        waiting = self.requests.get(name)
        if waiting and request in waiting:
            waiting.remove(request)
            if not waiting:
                del self.requests[name]

    def _wake_for_permit(self, freed_name: str) -> None:
        """A slot freed up: let the first waiter that may now dial do so."""
        names = [freed_name] + [n for n in self._waiters if n != freed_name]
        for name in names:
            if name in self._waiters and self._can_dial(name):
                waiter = self._next_waiter(name)
                if waiter is not None:
                    self._reserve(name)
                    waiter.set(None)
                    return

    # -------------------------------------------------------------- release

    def release(self, conn: ClientConnection, *, reusable: bool) -> None:
        """Return ``conn`` after its exchange; ``reusable`` if it may carry another."""
        name = conn.name
        in_use = self._in_use.get(name)
        if in_use is not None and conn in in_use:
            in_use.remove(conn)
            if not in_use:
                del self._in_use[name]  # as _sync: the free lists are not touched here
        else:
            conn.close()  # released twice, or the agent was destroyed meanwhile
            return
        if reusable and not conn.closed:
            waiter = self._next_waiter(name) if name in self._waiters else None
            if waiter is not None:
                # Node's 'free' hand-off: straight to the next request for this name.
                self._in_use.setdefault(name, []).append(conn)
                waiter.set(conn)
                return
            free = self._free.get(name)
            if (self.keep_alive and (len(free) if free is not None else 0) < self.max_free_sockets
                    and not (self._waiters and self._starved_waiters())):
                conn.park(self._idle_seconds(conn), self._free_socket_readable)
                if free is None:
                    self._free[name] = [conn]
                else:
                    free.append(conn)
                if conn.expires_at != _INF:  # no idle timeout (the default): nothing to sweep
                    self._ensure_sweeper(conn.expires_at)
                return
        self._total -= 1
        conn.close()
        self._wake_for_permit(name)

    def _free_socket_readable(self, conn: ClientConnection) -> None:
        """(From the hub.) A free socket became readable: the server closed it (or
        sent something unasked).  Drop it now, as Node's agent does on the socket's
        ``'end'``/``'close'``, rather than find it dead at the next request."""
        free = self._free.get(conn.name)
        if free is None or conn not in free:
            conn.unpark()
            return
        free.remove(conn)
        self._sync(conn.name)
        self._total -= 1
        conn.close()
        self._wake_for_permit(conn.name)

    def _forget(self, conn: ClientConnection) -> None:
        """Drop a connection that was neither in use nor free any more."""
        self._total -= 1

    def replace(self, conn: ClientConnection) -> None:
        """Close ``conn`` (in use) but keep its slot as a permit to dial anew."""
        self._detach(conn)
        self._reserve(conn.name)
        self._total -= 1  # _reserve counted the slot again
        conn.close()

    def detach(self, conn: ClientConnection) -> None:
        """Forget ``conn``, handed to user code (Upgrade): no longer pooled."""
        if self._detach(conn):
            self._total -= 1
            self._wake_for_permit(conn.name)

    def _detach(self, conn: ClientConnection) -> bool:
        in_use = self._in_use.get(conn.name)
        if in_use is None or conn not in in_use:
            return False
        in_use.remove(conn)
        self._sync(conn.name)
        return True

    def destroy_connection(self, conn: ClientConnection) -> None:
        """Close ``conn``, in use (error, abort), and free its slot."""
        conn.close()
        self.release(conn, reusable=False)

    def _idle_seconds(self, conn: ClientConnection) -> float:
        # Agent timeout, shortened by the server's "Keep-Alive: timeout=N" hint (minus
        # a second, as Node 20 does) so we never send on a socket the server is closing.
        idle = self.timeout / 1000.0 if self.timeout else _INF
        hint = conn.server_keep_alive
        if hint is not None and hint - 1.0 < idle:
            idle = max(hint - 1.0, 0.0)
        return idle

    def _sync(self, name: str) -> None:
        """Drop an origin's emptied lists (Node deletes the key)."""
        for internal in (self._in_use, self._free):
            if name in internal and not internal[name]:
                del internal[name]

    @property
    def sockets(self) -> dict[str, list[Any]]:
        """The sockets in use, per origin key (Node's ``agent.sockets``); a snapshot.

        Built when read: mirroring every change into it cost each request a copy of
        the whole pool's lists."""
        return _sockets_of(self._in_use)

    @property
    def free_sockets(self) -> dict[str, list[Any]]:
        """The idle pooled sockets, per origin key (Node's ``agent.freeSockets``); a snapshot."""
        return _sockets_of(self._free)

    def _ensure_sweeper(self, expires_at: float) -> None:
        """Make sure a sweep is due by ``expires_at``.

        The sweeper outlives a momentarily empty free list while connections are in
        use: a busy agent whose connection goes free and is taken again on every
        request would otherwise start (and end) a greenlet per request.
        """
        if expires_at == _INF:
            return  # no idle timeout: nothing to sweep
        sweeper = self._sweeper
        if sweeper is not None and not sweeper.dead:
            if expires_at >= self._sweep_at:
                return
            sweeper.kill(block=False)  # due later than this connection expires
        self._sweep_at = expires_at
        self._sweeper = gevent.spawn(self._sweep, max(expires_at - time.monotonic(), 0.0))

    def _sweep(self, first_delay: float) -> None:
        """Close free connections past their idle time (one greenlet per agent).

        Its sleeps do not keep the hub alive (``ref=False``), as Node unrefs a free
        socket: a script whose requests are done ends (``gevent.wait()`` returns)
        even while the pool keeps connections for the next one."""
        gevent.sleep(first_delay, ref=False)
        while self._free or self._in_use:
            now = time.monotonic()
            expired = []
            soonest = _INF
            for name in list(self._free):
                keep = []
                for conn in self._free[name]:
                    if conn.expires_at <= now:
                        expired.append(conn)
                    else:
                        keep.append(conn)
                        soonest = min(soonest, conn.expires_at)
                self._free[name] = keep
                self._sync(name)
            for conn in expired:
                self._total -= 1
                conn.close()
            if soonest == _INF:
                # Nothing free: a connection released from now on expires one idle
                # period after its release at the earliest.
                soonest = now + self._shortest_idle()
            self._sweep_at = soonest
            gevent.sleep(max(soonest - time.monotonic(), 0.01), ref=False)

    def _shortest_idle(self) -> float:
        in_use = [conn for conns in self._in_use.values() for conn in conns]
        return min([60.0, *(self._idle_seconds(conn) for conn in in_use)])

    # ---------------------------------------------------------- TLS sessions

    def cache_session(self, name: str, session: Any) -> None:
        """Keep TLS ``session`` for resumption by the next connection to pool key ``name``.

        At most ``max_cached_sessions`` (Node's ``maxCachedSessions``) are kept, the
        least recently stored going first; 0 keeps none.
        """
        if not self.max_cached_sessions or session is None:
            return  # None: the socket closed first; keep the session we have
        self._sessions[name] = session
        self._sessions.move_to_end(name)
        while len(self._sessions) > self.max_cached_sessions:
            self._sessions.popitem(last=False)

    def get_session(self, name: str) -> Any:
        """The TLS session cached for pool key ``name``, or None."""
        return self._sessions.get(name)

    def evict_session(self, name: str) -> None:
        """Drop the TLS session cached for pool key ``name`` (after a failed resumption)."""
        self._sessions.pop(name, None)

    # ------------------------------------------------------------ shutdown

    def destroy(self) -> None:
        """Close every connection, free or in use (Node's ``agent.destroy()``)."""
        conns = [c for group in (*self._free.values(), *self._in_use.values()) for c in group]
        self._free.clear()
        self._in_use.clear()
        self._total = sum(self._dialing.values())
        for conn in conns:
            conn.close()
        if self._sweeper is not None:
            self._sweeper.kill(block=False)


# -------------------------------------------------------- the global agents
#
# Node's ``https.globalAgent`` / ``http.globalAgent`` are module attributes that user
# code may replace.  Their home is here, below the package face, so the client
# (``_client``) reads them without importing ``greenhttps`` itself.  The faces
# (``greenhttps`` and ``greenhttps.http``) become instances of a ModuleType subclass
# whose ``global_agent`` and ``globalAgent`` properties read and write this table:
# ``greenhttps.global_agent = Agent(...)`` and ``greenhttps.globalAgent = ...`` both
# take effect for the next request, and read back the same object.

_GLOBAL_AGENTS: dict[str, Agent] = {}


def get_global_agent(protocol: str) -> Agent:
    """The agent requests for ``protocol`` (``'https:'``/``'http:'``) use when they name none."""
    return _GLOBAL_AGENTS[protocol]


def set_global_agent(protocol: str, agent: Agent) -> None:
    """Make ``agent`` the global agent for ``protocol`` (what assigning the face's
    ``global_agent`` does)."""
    _GLOBAL_AGENTS[protocol] = agent


def _global_property(protocol: str) -> property:
    return property(
        lambda module: get_global_agent(protocol),
        lambda module, agent: set_global_agent(protocol, agent),
        doc=f"The agent {protocol} requests use when they name none (Node's ``globalAgent``).",
    )


def package_face(protocol: str) -> type[types.ModuleType]:
    """The module class for a package face whose ``global_agent``/``globalAgent``
    are ``protocol``'s entry in the global-agent table (set ``module.__class__``)."""
    prop = _global_property(protocol)
    return type("GreenhttpsModule", (types.ModuleType,), {"global_agent": prop, "globalAgent": prop, "__slots__": ()})


#: Node 20's global agent: keep-alive, 5 s idle.
set_global_agent(Agent.protocol, Agent(keep_alive=True, timeout=5000))
