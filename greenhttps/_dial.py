"""Dialing: the connection an agent pools, and how one is opened.

:func:`dial` makes a :class:`ClientConnection` as the request options say: TCP (or a
Unix socket), with no resolver round trip for an IP literal; then, for HTTPS, the
TLS handshake under the connect timeout, offering the request's ``session``
option or else the session the caller's cache (a :class:`SessionCache`: the agent)
holds for that origin, and the certificate and host-name checks (Node's ``rejectUnauthorized``
and ``checkServerIdentity``).  The connection's wire is the parser the client
chose once, at import.
"""

from __future__ import annotations

import socket as _stdlib_socket
import time
from typing import Any, Callable, Mapping, Protocol

import gevent
from gevent import socket as gsocket

from . import _tls, _verify, errors
from ._options import format_ms, ms_to_seconds
from ._parsers import parser_class
from ._proxy import open_tunnel
from ._socket import Socket
from ._url import is_ip
from ._wire import Wire

__all__ = ["ClientConnection", "SessionCache", "adopt", "dial", "unconnected_socket", "CLIENT_PARSER"]

_INF = float("inf")
#: The parser class connections use (chosen once, at import; see _parsers).
CLIENT_PARSER = parser_class()


class SessionCache(Protocol):
    """What dialing needs from the pool: the TLS sessions it keeps per pool key
    (the Agent is one; dialing never sees the rest of it)."""

    def get_session(self, name: str) -> Any: ...

    def evict_session(self, name: str) -> None: ...


class ClientConnection:
    """A connection an agent pools: socket, wire, and what the pool needs to know."""

    __slots__ = ("name", "socket", "wire", "session", "server_keep_alive", "expires_at", "uses", "_watcher")

    def __init__(self, name: str, socket: Socket, wire: Wire) -> None:
        self.name = name
        self.socket = socket
        self.wire = wire
        self.session: Any = None
        self.server_keep_alive: float | None = None
        self.expires_at = _INF
        self.uses = 0
        #: While parked: a read watcher on the socket (the peer closing it, or
        #: sending something unasked, makes it readable).
        self._watcher: Any = None

    def __repr__(self) -> str:
        return f"<ClientConnection {self.name} uses={self.uses} closed={self.closed}>"

    @property
    def closed(self) -> bool:
        return self.wire.closed or self.socket.destroyed

    def is_alive(self) -> bool:
        return self.wire.is_reusable_idle()

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


def _connect_tcp(opts: Mapping[str, Any], timeout: float | None) -> gsocket.socket:
    if opts.get("socket_path"):
        sock = gsocket.socket(_stdlib_socket.AF_UNIX, _stdlib_socket.SOCK_STREAM)
        sock.settimeout(timeout)
        try:
            sock.connect(opts["socket_path"])
        except OSError as exc:
            sock.close()
            raise _connect_error(exc, opts["socket_path"], None) from exc
        except BaseException:
            sock.close()
            raise
        return sock
    host, port = opts["host"], opts["port"]
    if opts.get("proxy"):  # Agent(proxy=...): a CONNECT tunnel to the origin (see _proxy)
        return open_tunnel(opts["proxy"], host, port, timeout)
    family = {4: _stdlib_socket.AF_INET, 6: _stdlib_socket.AF_INET6}.get(opts.get("family") or 0, 0)
    lookup = opts.get("lookup")
    literal = lookup is None and "%" not in host and is_ip(host)
    af = _stdlib_socket.AF_INET6 if ":" in host else _stdlib_socket.AF_INET
    infos: list[tuple[Any, ...]]
    if literal and family in (0, af):
        # An address already: no resolver round trip (gevent's runs in a thread).
        infos = [(af, _stdlib_socket.SOCK_STREAM, 0, "", (host.strip("[]"), port))]
    else:
        try:
            infos = list((lookup or gsocket.getaddrinfo)(host, port, family, _stdlib_socket.SOCK_STREAM))
        except _stdlib_socket.gaierror as exc:
            # Node's shape: code ENOTFOUND, syscall 'getaddrinfo', hostname.
            raise errors.NameResolutionError(
                f"getaddrinfo ENOTFOUND {host}", syscall="getaddrinfo", hostname=host, reason=exc.strerror
            ) from exc
    last: BaseException | None = None
    for af, kind, proto, _, address in infos:
        sock = gsocket.socket(af, kind, proto)
        try:
            sock.settimeout(timeout)
            if opts.get("local_address"):
                sock.bind((opts["local_address"], 0))
            sock.connect(address)
            return sock
        except OSError as exc:
            sock.close()
            last = _connect_error(exc, address[0], address[1])
        except BaseException:
            sock.close()
            raise
    raise last or errors.NameResolutionError(f"getaddrinfo ENOTFOUND {host}", syscall="getaddrinfo", hostname=host)


def _connect_error(exc: OSError, address: str, port: int | None) -> errors.Error:
    """A failed ``connect()`` as Node reports it (B-90): ``syscall 'connect'``,
    ``address``, ``port``, and the message ``connect ECONNREFUSED 127.0.0.1:443``."""
    err = errors.from_os_error(exc)
    where = address if port is None else f"{address}:{port}"
    if isinstance(err, errors.NetworkError) and not isinstance(err, errors.TimeoutError):
        err.args = (f"connect {err.code} {where}",)
        err.strerror = err.args[0]
    elif isinstance(err, errors.TimeoutError):
        err.args = (f"{err.message} during connect to {where}",)
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
) -> ClientConnection:
    """Open a connection as ``opts`` say: TCP (or Unix), then TLS if ``secure`` and its checks.

    ``name`` is the pool key; ``keep_alive_msecs`` turns TCP keep-alive on (None:
    off); ``sessions`` offers the session cached for ``name`` for resumption, unless
    the request names its own (``opts['session']``, Node's ``options.session``).
    """
    connect_timeout = ms_to_seconds(opts.get("connect_timeout") or opts.get("timeout"))
    where = opts.get("socket_path") or f"{opts['host']}:{opts['port']}"
    try:
        raw = _connect_tcp(opts, connect_timeout)
    except errors.Error:
        raise
    except OSError as exc:
        limit = f", no answer within {format_ms(connect_timeout * 1000)}" if connect_timeout and isinstance(exc, TimeoutError) else ""
        raise errors.from_os_error(exc, during=f"connect to {where}{limit}") from exc
    try:
        if raw.family != _stdlib_socket.AF_UNIX:
            raw.setsockopt(_stdlib_socket.IPPROTO_TCP, _stdlib_socket.TCP_NODELAY, 1)
        sock = Socket(raw)
        if keep_alive_msecs is not None:
            sock.set_keep_alive(True, keep_alive_msecs)
        if secure:
            stream = _handshake(raw, opts, sessions, name, sock, connect_timeout)
        else:
            stream = raw
        wire = Wire(
            stream,
            parser=CLIENT_PARSER,
            client=True,
            max_header_size=opts.get("max_header_size") or 16384,
            strict=not opts.get("insecure_http_parser"),
            idle_timeout=ms_to_seconds(opts.get("timeout")),
        )
    except BaseException:
        raw.close()
        raise
    return ClientConnection(name, sock, wire)


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
               sock: Socket, timeout: float | None) -> Any:
    tls_opts = {key: opts[key] for key in _tls.CLIENT_TLS_KEYS if opts.get(key) is not None}
    context = _tls.create_client_context(**tls_opts)
    servername = opts["servername"]
    sni = None if is_ip(servername) else servername
    session = opts.get("session")  # the caller's own (Node's options.session) wins
    cached = session is None and sessions is not None
    if cached:
        assert sessions is not None
        session = sessions.get_session(name)
    try:
        tls = _tls.wrap_socket(context, raw, server_side=False, server_hostname=sni, session=session)
    except (ValueError, TypeError):  # a session from another context (or not a session)
        if cached:
            assert sessions is not None
            sessions.evict_session(name)
        tls = _tls.wrap_socket(context, raw, server_side=False, server_hostname=sni)
    try:
        try:
            with gevent.Timeout(timeout, errors.TimeoutError(f"TLS handshake timed out after {format_ms((timeout or 0) * 1000)}")):
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
