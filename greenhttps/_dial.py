"""Dialing: the connection an agent pools, and how one is opened.

:func:`dial` makes a :class:`ClientConnection` as the request options say: TCP (or a
Unix socket), with no resolver round trip for an IP literal, a name resolved through
the agent's DNS cache (:mod:`._dns`) and its addresses raced by Happy Eyeballs
(:mod:`._happy`, Node's ``autoSelectFamily``); through a proxy (``opts['proxy']``, see :mod:`._proxy`), that
connection is to the proxy (its name through the same cache and race), then TLS
to it for an https:// proxy (checked against the proxy's name), then the tunnel;
then, for HTTPS, the TLS handshake (inside the proxy's
TLS, for an https:// proxy: a memory-BIO socket, :mod:`._tlsbio`), offering the request's ``session``
option or else the session the caller's cache (a :class:`SessionCache`: the agent)
holds for that origin, and the certificate and host-name checks (Node's ``rejectUnauthorized``
and ``checkServerIdentity``).  The connection's wire is the parser the client
chose once, at import.  How long the lookup, the connect and the handshake took
is kept on the connection (``timings``) for the first request's ``res.timings``
(through a proxy: the proxy's lookup; the connect to it, its TLS and the tunnel;
the origin's TLS).

One clock (:class:`_Clock`) bounds the whole dial, every phase above together:
the connect timeout from the dial's start, or the request's ``deadline`` if that
comes first.  Each phase gets what is left of it, and a phase that can stretch
(a proxy trickling its CONNECT reply a byte at a time) is bounded as a whole, not
per read.
"""

from __future__ import annotations

import socket as _stdlib_socket
import time
from typing import Any, Callable, Mapping, Protocol, Sequence

import gevent
from gevent import socket as gsocket

from . import _happy, _tls, _verify, errors
from ._dns import DnsCache
from ._net_socket import Socket
from ._openssl import held_ahead
from ._options import format_ms, ms_to_seconds
from ._parsers import parser_class
from ._proxy import ProxyURL, open_tunnel, parse_proxy
from ._tlsbio import TLS_ON_MEMORY_BIOS, BioSSLSocket
from ._url import is_ip
from ._wire import Wire

__all__ = ["ClientConnection", "SessionCache", "adopt", "dial", "unconnected_socket", "CLIENT_PARSER"]

_INF = float("inf")
#: A pooled connection whose last response byte came this recently is reused without
#: ``poll(0)`` on its descriptor (see :meth:`ClientConnection.is_alive`).
FRESH_SECONDS = 0.05
#: Node 20's ``net.getDefaultAutoSelectFamilyAttemptTimeout()`` (ms).
AUTO_SELECT_FAMILY_ATTEMPT_TIMEOUT = 250
#: The parser class connections use (chosen once, at import; see _parsers).
CLIENT_PARSER = parser_class()


class _Clock:
    """The one time limit of a dial: lookup, connect, a proxy's TLS and tunnel, the
    origin's TLS, together.  It ends at the connect timeout from the dial's start
    or at the request's deadline, whichever comes first (None: neither is set)."""

    __slots__ = ("ends", "limit")

    def __init__(self, started: float, connect_timeout: float | None, deadline: float | None = None,
                 deadline_ms: Any = None) -> None:
        self.ends: float | None = None
        #: The limit as an error message says it.
        self.limit = ""
        if connect_timeout:
            self.ends = started + connect_timeout
            self.limit = f"{format_ms(connect_timeout * 1000)} (the connect timeout)"
        if deadline is not None and (self.ends is None or deadline < self.ends):
            self.ends = deadline
            self.limit = f"{format_ms(deadline_ms or 0)} (the request deadline)"

    def left(self) -> float | None:
        """Seconds left, or None without a limit; never 0 (a socket takes that for
        non-blocking): a phase reached just in time still gets its try."""
        if self.ends is None:
            return None
        return max(self.ends - time.monotonic(), 0.001)

    def timer(self, error: BaseException) -> gevent.Timeout:
        """A ``with`` timer raising ``error`` when the clock runs out (none without a limit)."""
        return gevent.Timeout(self.left(), error)


class SessionCache(Protocol):
    """What dialing needs from the pool: the TLS sessions it keeps per pool key
    (the Agent is one; dialing never sees the rest of it)."""

    def get_session(self, name: str) -> Any: ...

    def evict_session(self, name: str) -> None: ...


class ClientConnection:
    """A connection an agent pools: socket, wire, and what the pool needs to know."""

    __slots__ = ("name", "socket", "wire", "session", "server_keep_alive", "expires_at", "uses", "timings",
                 "_watcher")

    def __init__(self, name: str, socket: Socket, wire: Wire) -> None:
        self.name = name
        self.socket = socket
        self.wire = wire
        self.session: Any = None
        self.server_keep_alive: float | None = None
        self.expires_at = _INF
        self.uses = 0
        #: How long dialing took, in ms: (dns, connect, tls); None for a phase that
        #: did not happen (no lookup for an IP literal, no TLS for http:).
        self.timings: tuple[float | None, float | None, float | None] = (None, None, None)
        #: While parked: a read watcher on the socket (the peer closing it, or
        #: sending something unasked, makes it readable).
        self._watcher: Any = None

    def __repr__(self) -> str:
        return f"<ClientConnection {self.name} uses={self.uses} closed={self.closed}>"

    @property
    def closed(self) -> bool:
        return self.wire.closed or self.socket.destroyed

    def is_alive(self, now: float | None = None) -> bool:
        """Can this pooled connection carry a new request?

        While parked, a read watcher drops the connection as soon as the loop sees
        the server close it (:meth:`park`); what is left to look for here is a close
        that arrived since the loop last looked.  ``poll(0)`` on the descriptor finds
        one, at a system call per reuse.

        Given ``now`` -- only for a request that would be sent again on a new
        connection if this one proved closed before any response byte (idempotent,
        its whole body known: _exchange._may_retry) -- the poll is skipped on a TLS
        socket with OpenSSL's read-ahead on whose last response byte came less than
        :data:`FRESH_SECONDS` ago: whatever TLS records came with the response (a
        close_notify) are inside OpenSSL and looked at there, without a system call.
        A FIN is not (a read that returns data leaves the end of the stream in the
        kernel), nor a close sent in that window; for this request either costs a
        retry, never a failure.  Any other request (a POST, a streamed body) is
        polled, so that it is not sent into a connection the server has closed
        (a read-only review proved that: a FIN right after a response failed the
        next POST with ECONNRESET when the poll was skipped for it too)."""
        wire = self.wire
        if now is not None and now - wire.last_io < FRESH_SECONDS:
            held = held_ahead(wire.sock)
            if held is not None:
                return not held and not self.closed
        return wire.is_reusable_idle()

    def park(self, idle_seconds: float, on_readable: Callable[[ClientConnection], None] | None = None) -> None:
        """Idle in a pool for at most ``idle_seconds``; ``on_readable(self)`` is called
        from the hub if the socket becomes readable meanwhile (the peer closed it)."""
        self.expires_at = time.monotonic() + idle_seconds
        if on_readable is None:
            return
        watcher = self._watcher
        if watcher is None:
            try:
                fd = self.wire.sock.fileno()
            except OSError:
                return
            if fd < 0:
                return
            # Unreferenced, as Node unrefs a free socket: an idle pooled
            # connection does not keep gevent.wait() (the script) from ending.
            watcher = self._watcher = gevent.get_hub().loop.io(fd, 1, ref=False)
        watcher.start(on_readable, self)

    def unpark(self) -> None:
        """Taken from the pool: stop watching."""
        if self._watcher is not None:
            self._watcher.stop()

    def close(self) -> None:
        watcher, self._watcher = self._watcher, None
        if watcher is not None:
            watcher.stop()
            watcher.close()
        if not self.wire.closed:
            self.wire.close()
            self.socket.destroy()


# ------------------------------------------------------------------ dialing


def _connect_tcp(opts: Mapping[str, Any], clock: _Clock,
                 dns: DnsCache | None) -> tuple[gsocket.socket, float | None]:
    """The connected TCP (or Unix) socket to the origin, and how long the name lookup
    took in ms (None: there was none -- an IP literal, a Unix socket)."""
    if opts.get("socket_path"):
        sock = gsocket.socket(_stdlib_socket.AF_UNIX, _stdlib_socket.SOCK_STREAM)
        sock.settimeout(clock.left())
        try:
            sock.connect(opts["socket_path"])
        except OSError as exc:
            sock.close()
            raise _connect_error(exc, opts["socket_path"], None, clock.limit) from exc
        except BaseException:
            sock.close()
            raise
        return sock, None
    return _connect_host(opts["host"], opts["port"], opts, clock, dns)


def _resolve(host: str, port: int, family: int, opts: Mapping[str, Any], clock: _Clock,
             dns: DnsCache | None) -> tuple[Sequence[tuple[Any, ...]], float | None]:
    """``host``'s addresses (getaddrinfo tuples) and how long the lookup took in ms
    (None: an IP literal, no lookup).  The dial's ``clock`` bounds the lookup: a
    slow resolver is a connect timeout, not a wait without end."""
    lookup = opts.get("lookup")
    af = _stdlib_socket.AF_INET6 if ":" in host else _stdlib_socket.AF_INET
    if lookup is None and "%" not in host and is_ip(host) and family in (0, af):
        # An address already: no resolver round trip (gevent's runs in a thread).
        return [(af, _stdlib_socket.SOCK_STREAM, 0, "", (host.strip("[]"), port))], None
    resolver = lookup or gsocket.getaddrinfo
    started = time.monotonic()
    timeout = clock.left()
    timer = gevent.Timeout(timeout) if timeout is not None else None
    if timer is not None:
        timer.start()
    try:
        if dns is not None:
            infos = dns.resolve(resolver, host, port, family, _stdlib_socket.SOCK_STREAM)
        else:
            infos = list(resolver(host, port, family, _stdlib_socket.SOCK_STREAM))
    except _stdlib_socket.gaierror as exc:
        # Node's shape: code ENOTFOUND, syscall 'getaddrinfo', hostname.
        raise errors.NameResolutionError(
            f"getaddrinfo ENOTFOUND {host}", syscall="getaddrinfo", hostname=host, reason=exc.strerror
        ) from exc
    except gevent.Timeout as expired:
        if expired is not timer:
            raise
        raise errors.TimeoutError(
            f"getaddrinfo {host}: no answer within {clock.limit}",
            "ETIMEDOUT", syscall="getaddrinfo", hostname=host,
        ) from None
    finally:
        if timer is not None:
            timer.close()
    return infos, (time.monotonic() - started) * 1000.0


def _connect_host(host: str, port: int, opts: Mapping[str, Any], clock: _Clock,
                  dns: DnsCache | None) -> tuple[gsocket.socket, float | None]:
    """The connected TCP socket to ``host:port`` (an origin, or a proxy), and how
    long the name lookup took in ms (None: there was none).  The dial's ``clock``
    bounds the lookup and the connect together.

    A name is resolved by the request's ``lookup`` (Node's option) or gevent's
    ``getaddrinfo``, through the agent's cache (``dns``) when it has one.  With
    several addresses, Node's ``autoSelectFamily`` (on unless False) races them
    (Happy Eyeballs, :mod:`._happy`); as in Node, only when no ``family`` and no
    ``local_address`` pin the choice.  Otherwise the first address is the one
    tried, as Node's single ``dns.lookup()`` answer (a ``local_address`` first
    keeps the addresses of its own family)."""
    family = {4: _stdlib_socket.AF_INET, 6: _stdlib_socket.AF_INET6}.get(opts.get("family") or 0, 0)
    auto_select = opts.get("auto_select_family")
    attempt_delay = opts.get("auto_select_family_attempt_timeout")
    infos, looked = _resolve(host, port, family, opts, clock, dns)
    timeout = clock.left()  # what the lookup used is gone from the connect's share
    local = opts.get("local_address")
    if local:
        local_af = _stdlib_socket.AF_INET6 if ":" in local else _stdlib_socket.AF_INET
        infos = [info for info in infos if info[0] == local_af] or infos
    if not infos:
        raise errors.NameResolutionError(f"getaddrinfo ENOTFOUND {host}", syscall="getaddrinfo", hostname=host)
    if _auto_select(auto_select) and not family and not local and len(infos) > 1:
        candidates = _happy.order(infos)
        if len(candidates) > 1:
            return _race(candidates, _attempt_delay(attempt_delay), timeout, clock.limit), looked
    af, kind, proto, _, address = infos[0]
    sock = gsocket.socket(af, kind, proto)
    try:
        sock.settimeout(timeout)
        if local:
            sock.bind((local, 0))
        sock.connect(address)
    except OSError as exc:
        sock.close()
        raise _connect_error(exc, address[0], address[1], clock.limit) from exc
    except BaseException:
        sock.close()
        raise
    return sock, looked


def _naming_proxy(err: errors.Error, where: ProxyURL) -> errors.Error:
    """``err`` (a failure to reach the proxy) with the proxy in its message and ``proxy``."""
    if getattr(err, "proxy", None) is None:
        err.args = (f"{err.message} (proxy {where.display})", *err.args[1:])
        if getattr(err, "strerror", None) is not None:
            err.strerror = err.args[0]  # type: ignore[attr-defined]
        err.proxy = where.display  # type: ignore[attr-defined]
    return err


def _connect_proxy(opts: Mapping[str, Any], where: ProxyURL, clock: _Clock,
                   dns: DnsCache | None) -> tuple[gsocket.socket, float | None]:
    """:func:`_connect_host` to the proxy, its errors naming it."""
    try:
        return _connect_host(where.host, where.port, opts, clock, dns)
    except errors.Error as exc:
        raise _naming_proxy(exc, where)
    except OSError as exc:
        raise _naming_proxy(errors.from_os_error(exc, during="connect"), where) from exc


def _through_proxy(raw: gsocket.socket, where: ProxyURL, opts: Mapping[str, Any], clock: _Clock,
                   dns: DnsCache | None) -> Any:
    """The stream to the origin through the proxy ``where``, over ``raw`` (TCP to the
    proxy): TLS to an https:// proxy first, then the tunnel, all within what is left
    of the dial's ``clock`` (the tunnel's exchange as a whole: a proxy that trickles
    its reply cannot stretch it).  Closes what it opened if it fails."""
    carrier: Any = raw
    raw_timeout = raw.gettimeout()
    if where.scheme == "https":
        carrier = _proxy_handshake(raw, where, opts, clock)
    try:
        host, port = opts["host"], opts["port"]
        if where.scheme == "socks5" and not is_ip(host):
            # socks5:// (not socks5h://): the name is resolved here, as curl does.
            family = {4: _stdlib_socket.AF_INET, 6: _stdlib_socket.AF_INET6}.get(opts.get("family") or 0, 0)
            infos, _ = _resolve(host, port, family, opts, clock, dns)
            if not infos:
                raise errors.NameResolutionError(f"getaddrinfo ENOTFOUND {host}", syscall="getaddrinfo",
                                                 hostname=host)
            host = infos[0][4][0]
        kind = "SOCKS5" if where.socks else "CONNECT"
        expired = errors.TimeoutError(f"{kind} through proxy {where.display}: no answer within {clock.limit}",
                                      "ETIMEDOUT", proxy=where.display)
        carrier.settimeout(None)  # the timer bounds the whole exchange, not each read
        with clock.timer(expired):
            open_tunnel(carrier, where, host, port)
        carrier.settimeout(raw_timeout)
    except BaseException:
        carrier.close()
        raise
    return carrier


def _proxy_handshake(raw: gsocket.socket, where: ProxyURL, opts: Mapping[str, Any], clock: _Clock) -> Any:
    """TLS to an https:// proxy: SNI and the certificate checked against the proxy's
    own name, with ``proxy_ca`` or else the default roots (never the request's
    ``ca``: that one is for the origin).  Errors name the proxy."""
    proxy_ca = opts.get("proxy_ca")
    context = _tls.create_client_context(ca=proxy_ca) if proxy_ca is not None else _tls.create_client_context()
    tls = _tls.wrap_socket(context, raw, server_side=False, server_hostname=None if is_ip(where.host) else where.host)
    during = f"TLS handshake with proxy {where.display}"
    try:
        try:
            with clock.timer(errors.TimeoutError(f"{during} timed out after {clock.limit}", "ETIMEDOUT")):
                tls.do_handshake()
        except OSError as exc:
            err = _verify.handshake_error(tls, exc, during=during)
            err.proxy = where.display  # type: ignore[attr-defined]
            raise err from exc
        authorized, reason = _verify.client_verify_result(tls, hostname=where.host, ca=proxy_ca)
        if not authorized:
            raise errors.CertificateError(f"proxy {where.display}: certificate not accepted for {where.host}: {reason}",
                                          reason or None, proxy=where.display)
    except BaseException:
        tls.close()  # it owns the descriptor now
        raise
    return tls


def _auto_select(value: object) -> bool:
    """Node's ``autoSelectFamily`` (a boolean; None: the default, on as in Node 20)."""
    if value is None:
        return True
    if not isinstance(value, bool):
        raise errors.InvalidArgumentError(
            f'The "options.autoSelectFamily" property must be of type boolean. Received {value!r}',
            "ERR_INVALID_ARG_TYPE",
        )
    return value


def _attempt_delay(value: object) -> float:
    """Node's ``autoSelectFamilyAttemptTimeout`` in seconds: 250 ms by default, at
    least 10 ms (Node raises a smaller one to 10), a positive number."""
    if value is None:
        return AUTO_SELECT_FAMILY_ATTEMPT_TIMEOUT / 1000.0
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 1:
        raise errors.InvalidArgumentError(
            f'The value of "options.autoSelectFamilyAttemptTimeout" is out of range. It must be >= 1. '
            f"Received {value!r}", "ERR_OUT_OF_RANGE",
        )
    return max(float(value), 10.0) / 1000.0


def _race(candidates: list[tuple[Any, ...]], delay: float, timeout: float | None, limit: str = "") -> gsocket.socket:
    """Happy Eyeballs over ``candidates``; a failure is raised as Node reports it:
    the first attempt's error (``code`` as Node's AggregateError), every attempt's
    in its ``errors``; the connect timeout as ETIMEDOUT."""
    try:
        return _happy.race(candidates, delay, timeout)
    except _happy.RaceFailed as failed:
        attempts = [_connect_error(exc, address[0], address[1]) for address, exc in failed.failures]
        if failed.timed_out or not attempts:
            first = candidates[0][4]
            err = _connect_error(_stdlib_socket.timeout("timed out"), first[0], first[1], limit)
        else:
            err = attempts[0]
        err.errors = attempts  # type: ignore[attr-defined]
        raise err from None


def _connect_error(exc: OSError, address: str, port: int | None, limit: str = "") -> errors.Error:
    """A failed ``connect()`` as Node reports it (B-90): ``syscall 'connect'``,
    ``address``, ``port``, and the message ``connect ECONNREFUSED 127.0.0.1:443``;
    a timeout says the ``limit`` that ran out (:attr:`_Clock.limit`)."""
    err = errors.from_os_error(exc)
    where = address if port is None else f"{address}:{port}"
    if isinstance(err, errors.NetworkError) and not isinstance(err, errors.TimeoutError):
        err.args = (f"connect {err.code} {where}",)
        err.strerror = err.args[0]
    elif isinstance(err, errors.TimeoutError):
        err.args = (f"{err.message} during connect to {where}" + (f", no answer within {limit}" if limit else ""),)
    err.syscall = "connect"  # type: ignore[attr-defined]
    err.address = address  # type: ignore[attr-defined]
    if port is not None:
        err.port = port  # type: ignore[attr-defined]
    return err


def dial(
    opts: Mapping[str, Any],
    name: str,
    *,
    secure: bool,
    keep_alive_msecs: float | None = None,
    sessions: SessionCache | None = None,
    dns: DnsCache | None = None,
    deadline: float | None = None,
) -> ClientConnection:
    """Open a connection as ``opts`` say: TCP (or Unix), then TLS if ``secure`` and its checks.

    ``name`` is the pool key; ``keep_alive_msecs`` turns TCP keep-alive on (None:
    off); ``sessions`` offers the session cached for ``name`` for resumption, unless
    the request names its own (``opts['session']``, Node's ``options.session``);
    ``dns`` is the agent's DNS cache (None: every dial asks the resolver).  The
    connection's ``timings`` say how long the lookup, the connect and TLS took.

    ``deadline`` (a ``time.monotonic()`` value; the request's ``deadline`` option,
    which is in ``opts`` as ms) and the connect timeout bound the dial as a whole,
    whichever ends first: ETIMEDOUT, its message naming the phase and the limit.
    """
    connect_timeout = ms_to_seconds(opts.get("connect_timeout") or opts.get("timeout"))
    proxy = parse_proxy(opts["proxy"]) if opts.get("proxy") and not opts.get("socket_path") else None
    where = opts.get("socket_path") or f"{opts['host']}:{opts['port']}"
    started = time.monotonic()
    clock = _Clock(started, connect_timeout, deadline, opts.get("deadline"))
    try:
        if proxy is not None:
            raw, looked = _connect_proxy(opts, proxy, clock, dns)
        else:
            raw, looked = _connect_tcp(opts, clock, dns)
    except errors.Error:
        raise
    except OSError as exc:
        limit = f", no answer within {clock.limit}" if clock.limit and isinstance(exc, TimeoutError) else ""
        raise errors.from_os_error(exc, during=f"connect to {where}{limit}") from exc
    tls: float | None = None
    opened: Any = raw  # the outermost layer so far: closing it closes the rest
    try:
        if raw.family != _stdlib_socket.AF_UNIX:
            raw.setsockopt(_stdlib_socket.IPPROTO_TCP, _stdlib_socket.TCP_NODELAY, 1)
        sock = Socket(raw)
        if keep_alive_msecs is not None:
            sock.set_keep_alive(True, keep_alive_msecs)
        carrier: Any = raw
        if proxy is not None:
            carrier = opened = _through_proxy(raw, proxy, opts, clock, dns)
            if carrier is not raw:
                sock._attach(carrier, encrypted=False)  # reads and writes go through the proxy's TLS
        connected = time.monotonic()
        if secure:
            try:
                stream = opened = _handshake(carrier, opts, sessions, name, sock, clock)
            except errors.NetworkError as exc:
                if proxy is not None and not isinstance(exc, errors.CertificateError):
                    # A tunnel the proxy accepted and then closed (pproxy's SOCKS5 says
                    # yes before it has reached the origin): the proxy's doing, maybe.
                    exc.args = (f"{exc.message} (through proxy {proxy.display})", *exc.args[1:])
                raise
            tls = (time.monotonic() - connected) * 1000.0
        else:
            stream = carrier
        wire = Wire(
            stream,
            parser=CLIENT_PARSER,
            client=True,
            max_header_size=opts.get("max_header_size") or 16384,
            strict=not opts.get("insecure_http_parser"),
            idle_timeout=ms_to_seconds(opts.get("timeout")),
        )
    except BaseException:
        # A layer that failed closed itself; a TLS socket owns the descriptor once
        # made (closing the TCP socket under it would do nothing).
        opened.close()
        raise
    conn = ClientConnection(name, sock, wire)
    conn.timings = (looked, (connected - started) * 1000.0 - (looked or 0.0), tls)
    return conn


def unconnected_socket() -> Socket:
    """A destroyed :class:`Socket` standing for a connection that could not be made:
    a request emits it as ``'socket'`` before the connection error, as Node's, whose
    socket exists before it connects."""
    sock = Socket(gsocket.socket(_stdlib_socket.AF_INET, _stdlib_socket.SOCK_STREAM))
    sock.destroy()
    return sock


def adopt(sock: Socket, opts: Mapping[str, Any], name: str) -> ClientConnection:
    """A connection around a socket opened elsewhere (an ``Agent`` subclass's own
    ``create_connection``), with the wire ``dial`` would give it."""
    if not isinstance(sock, Socket):
        raise errors.InvalidArgumentError(
            f"create_connection() must return a greenhttps Socket, not {type(sock).__name__}", "ERR_INVALID_RETURN_VALUE"
        )
    wire = Wire(
        sock._sock,
        parser=CLIENT_PARSER,
        client=True,
        max_header_size=opts.get("max_header_size") or 16384,
        strict=not opts.get("insecure_http_parser"),
        idle_timeout=ms_to_seconds(opts.get("timeout")),
    )
    return ClientConnection(name, sock, wire)


def _handshake(raw: gsocket.socket, opts: Mapping[str, Any], sessions: SessionCache | None, name: str,
               sock: Socket, clock: _Clock) -> Any:
    tls_opts = {key: opts[key] for key in _tls.CLIENT_TLS_KEYS if opts.get(key) is not None}
    context = _tls.create_client_context(**tls_opts)
    servername = opts["servername"]
    sni = None if is_ip(servername) else servername
    session = opts.get("session")  # the caller's own (Node's options.session) wins
    cached = session is None and sessions is not None
    if cached:
        assert sessions is not None
        session = sessions.get_session(name)
    # Over a TCP socket, gevent's SSLSocket; over the TLS of an https:// proxy, a
    # memory-BIO one (an SSLSocket needs a descriptor of its own).
    # Memory BIOs over a TLS stream (an https:// proxy's) always; over TCP with
    # GREENHTTPS_TLS_BIO=1 (one sendmsg per batch of records; see _tlsbio).
    wrap: Any = _wrap_inner if TLS_ON_MEMORY_BIOS or hasattr(raw, "_sslobj") else _tls.wrap_socket
    try:
        tls = wrap(context, raw, server_side=False, server_hostname=sni, session=session)
    except (ValueError, TypeError):  # a session from another context (or not a session)
        if cached:
            assert sessions is not None
            sessions.evict_session(name)
        tls = wrap(context, raw, server_side=False, server_hostname=sni)
    try:
        try:
            with clock.timer(errors.TimeoutError(f"TLS handshake timed out after {clock.limit}", "ETIMEDOUT")):
                tls.do_handshake()
        except OSError as exc:
            raise _verify.handshake_error(tls, exc, during="TLS handshake") from exc
        sock._attach(tls, encrypted=True)
        sock.servername = servername
        _check_peer(tls, opts, sock, servername)
    except BaseException:
        # The TLS socket owns the descriptor now (closing `raw` does nothing): close
        # it here, or a refused peer would keep an fd open until garbage collection.
        tls.close()
        raise
    return tls


def _wrap_inner(context: Any, carrier: Any, *, server_side: bool, server_hostname: str | None = None,
                session: Any = None) -> BioSSLSocket:
    """TLS on memory BIOs: over a TLS stream (the origin's, inside an https://
    proxy's), or over TCP with ``GREENHTTPS_TLS_BIO=1``."""
    return BioSSLSocket(_tls.stdlib_context(context), carrier, server_side=server_side,
                        server_hostname=server_hostname, session=session)


def _check_peer(tls: Any, opts: Mapping[str, Any], sock: Socket, servername: str) -> None:
    """Set ``authorized``/``authorization_error``; raise if the peer is refused."""
    user_check = opts.get("check_server_identity") or _verify.check_server_identity
    rejected: list[BaseException] = []

    def checker(hostname: str, cert: dict[str, Any]) -> BaseException | None:
        # Keep the checker's own error: Node emits exactly what it returned.
        # Node (lib/_tls_wrap.js onConnectSecure): ``verifyError = checkServerIdentity()``
        # then ``if (verifyError)``: any falsy return (None, False, 0, "") accepts.  A
        # truthy value that is no exception is still a refusal; it is wrapped, since
        # Python can only raise exceptions.
        try:
            result = user_check(hostname, cert)
        except Exception as exc:
            result = exc
        if not result:
            return None
        err = result if isinstance(result, BaseException) else errors.CertificateError(
            f"check_server_identity refused {hostname}: it returned {result!r}", "ERR_TLS_CERT_ALTNAME_INVALID"
        )
        rejected.append(err)
        return err

    authorized, reason = _verify.client_verify_result(tls, hostname=servername, ca=opts.get("ca"), check_identity=checker,
                                                      crl=opts.get("crl"))
    sock.authorized, sock.authorization_error = authorized, reason
    if not authorized and opts.get("reject_unauthorized") is not False:
        if rejected and isinstance(rejected[0], errors.CertificateError):
            raise rejected[0]
        if rejected:
            raise errors.CertificateError(str(rejected[0]), reason or None) from rejected[0]
        raise errors.CertificateError(f"certificate not accepted for {servername}: {reason}", reason or None)
