"""Server and create_server: listening, accepting, and closing as Node does.

Theory of operation
-------------------
``listen()`` binds at once (so ``EADDRINUSE`` raises at the call) and starts one
accept-loop greenlet; ``'listening'`` and the callback follow from that greenlet, as
Node emits them on a later tick.  Each accepted socket gets a
:class:`~greenhttps._server_conn.ServerConnection` greenlet in a ``gevent.pool.Group``
so that ``close()`` can keep Node's promise: stop accepting now, close idle
keep-alive connections now, let requests in flight finish (their responses say
``Connection: close``), then emit ``'close'``.

The TLS handshake never runs in the accept loop: the loop only accepts and spawns,
so a client that connects and goes silent costs one greenlet, not the server.
"""

from __future__ import annotations

import errno
import os
import socket as _stdlib_socket
import ssl
from collections.abc import Mapping  # isinstance() with it: typing's alias checks ~10x slower
from typing import TYPE_CHECKING, Any, Callable

import gevent
import greenlet
from gevent import socket as gsocket
from gevent.event import Event

from . import _tls, _tlsbio, errors
from ._access_log import log_format
from ._events import EventEmitter, logger
from ._options import SERVER_OPTIONS, duration_to_ms, merge_options, node_aliases
from ._outgoing import attribute_aliases
from ._proxy_protocol import allow_list, versions_from_option
from ._server_conn import ConnState, ServerConnection
from ._tlsbio import BioSSLSocket

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from ._incoming import IncomingMessage
    from ._response import ServerResponse
    from ._types import Duration, ListenArgument, ListenOptions, ServerOptions

    #: ``request_listener(req, res)``, added to ``'request'``.
    RequestListener = Callable[[IncomingMessage, ServerResponse], Any]

__all__ = ["Server", "PlainServer", "create_server"]

#: ``GREENHTTPS_TLS_BIO=1``: servers run OpenSSL on memory BIOs (greenhttps._tlsbio);
#: a module attribute here so that a test can switch one server module's choice.
TLS_ON_MEMORY_BIOS = _tlsbio.TLS_ON_MEMORY_BIOS

_TLS_ONLY = frozenset(_tls.SERVER_TLS_KEYS)
#: TLS options that belong to the server, not to its identity: ``set_secure_context``
#: keeps them from ``create_server`` (Node keeps ``requestCert``, ``rejectUnauthorized``,
#: ``SNICallback`` and ``ALPNProtocols`` on the server object, outside the context).
_KEPT_BY_SERVER = ("request_cert", "reject_unauthorized", "sni_callback", "alpn_protocols")
#: Kept too unless given again, as Node's ``setSecureContext`` keeps them.
_KEPT_UNLESS_GIVEN = ("min_version", "max_version")


def _start_greenlet(run: Callable[[], None]) -> greenlet.greenlet:
    """Run ``run`` in a new bare greenlet, from the next loop turn.

    Not a ``gevent.Greenlet``: its links, arguments and spawn-tree records were
    about 1.1 KiB of every idle connection, and nothing here joins a connection's
    greenlet or reads its result (``run`` handles its own errors and cleanup).  The
    start callback is queued before any kill can be, so ``run`` always starts and
    its ``finally`` always closes the connection.
    """
    hub = gevent.get_hub()
    glet = greenlet.greenlet(run, hub)
    hub.loop.run_callback(glet.switch)
    return glet


@node_aliases
class Server(EventEmitter):
    """An HTTPS server (Node's ``https.Server``); ``greenhttps.http.Server`` is the
    same without TLS.

    Options (``create_server`` or keyword arguments; camelCase accepted) and their
    defaults, times in milliseconds: ``timeout`` 120000, ``headers_timeout`` 60000,
    ``request_timeout`` 300000, ``keep_alive_timeout`` 5000, ``handshake_timeout``
    120000, ``max_headers_count`` 2000, ``max_header_size`` 16384,
    ``max_requests_per_socket`` 0 (no limit), ``proxy_protocol`` False,
    ``proxy_allow_ips`` ``'127.0.0.1,::1'``, ``access_log`` False, plus the TLS options ``key``, ``cert``,
    ``pfx``, ``passphrase``, ``ca``, ``ciphers``, ``secure_protocol``,
    ``honor_cipher_order``, ``request_cert``, ``reject_unauthorized``,
    ``sni_callback``, ``alpn_protocols``, ``ssl_context``.  Each non-TLS option is
    also a writable attribute, under both spellings (``server.headersTimeout``), read
    when a connection needs it.  Past ``max_requests_per_socket``, requests the
    client already pipelined are answered 503 and emitted as ``'dropRequest'(req,
    socket)`` instead of ``'request'``, as in Node.

    Behind a load balancer (not in Node): ``proxy_protocol`` True (or ``'v1'``,
    ``'v2'``) reads HAProxy's PROXY protocol header before anything else, TLS
    included, from the peers in ``proxy_allow_ips`` (addresses, networks such as
    ``'10.0.0.0/8'``, ``'*'``; a comma-separated string or a list), and the socket's
    ``remote_address``/``remote_port`` become the client's.  Those peers must send
    one; any other peer must not.  A missing, malformed or untrusted header closes
    the connection with nothing served (``'clientError'`` gets the error, code
    ``ERR_PROXY_PROTOCOL``, and a destroyed socket); ``handshake_timeout`` bounds the
    wait for it, and ``'connection'`` comes after it, with the client's address.  ``access_log`` True (or ``'combined'``, ``'common'``) logs one line
    per response to the ``greenhttps.access`` logger (see :mod:`greenhttps._access_log`).

    ``Server(options, request_listener, **kwargs)``: ``options`` is a dict of the above
    (or the ``request_listener`` itself, as Node allows), ``request_listener(req, res)``
    is added to ``'request'``.  Raises ``TypeError`` for an unknown option and a TLS
    error for a wrong passphrase or a key that does not match the certificate.
    """

    # The non-TLS options (see SERVER_OPTIONS), set in __init__; times in milliseconds.
    timeout: float
    headers_timeout: float
    request_timeout: float
    keep_alive_timeout: float
    handshake_timeout: float
    max_headers_count: int
    max_header_size: int
    max_requests_per_socket: int
    no_delay: bool
    keep_alive: bool
    keep_alive_initial_delay: float
    require_host_header: bool
    insecure_http_parser: bool
    proxy_protocol: bool | str
    proxy_allow_ips: str | list[str]
    access_log: bool | str

    #: Serve TLS (False for ``greenhttps.http``).
    secure = True
    #: Accept-loop back-off when the process runs out of file descriptors (seconds).
    min_delay = 0.01
    max_delay = 1.0
    #: Add a ``Date`` header to responses.
    send_date = True
    #: Node's ``server.maxConnections``: with this many connections open, a new one is
    #: closed at once and ``'drop'`` is emitted with its addresses (``localAddress``,
    #: ``localPort``, ``localFamily``, ``remoteAddress``, ``remotePort``,
    #: ``remoteFamily``).  None or 0: no limit (0 is falsy in Node 20 too).
    max_connections: int | None = None
    #: Not Node's (whose ``maxConnections`` refuses): stop accepting while this many
    #: connections are open, 0 for no limit; new ones wait in the listen backlog.
    #: The gunicorn worker's ``worker_connections``.
    _accept_limit = 0

    def __init__(
        self,
        options: ServerOptions | RequestListener | None = None,
        request_listener: RequestListener | None = None,
        **kwargs: Unpack[ServerOptions],
    ) -> None:
        if callable(options):  # createServer(requestListener), as Node allows
            if request_listener is not None:
                raise TypeError("create_server(options, request_listener): options must be a mapping")
            options, request_listener = None, options
        self._context: _tls.Context | None
        opts = merge_options(SERVER_OPTIONS, options, kwargs, what=type(self).__name__)
        tls = {name: opts.pop(name) for name in _TLS_ONLY if name in opts}
        #: The TLS options given (for set_secure_context, which keeps some of them).
        self._tls_options = {k: v for k, v in tls.items() if v is not None}
        if self.secure:
            self._context = _server_context(self._tls_options)
        else:
            given = sorted(name for name, value in tls.items() if value is not None)
            if given:
                raise TypeError(f"greenhttps.http.Server takes no TLS options: {', '.join(given)}")
            self._context = None
        self.request_cert = bool(tls.get("request_cert"))
        for name, value in opts.items():
            setattr(self, name, value)
        # Read per connection; checked now so that a bad value fails here, not later.
        versions_from_option(self.proxy_protocol)
        allow_list(self.proxy_allow_ips)
        log_format(self.access_log)
        self._listener: gsocket.socket | None = None
        #: The Unix socket file listen() created (removed again by close()).
        self._unix_path: tuple[str, int, int] | None = None
        self._accept_loop: gevent.Greenlet | None = None
        self._connections: set[ServerConnection] = set()
        self._closing = False
        self._slot_free = Event()  # a connection ended (see _accept_limit)
        self._closed = Event()
        self._closed.set()
        self.listening = False
        if request_listener is not None:
            self.on("request", request_listener)

    def __repr__(self) -> str:
        state = "listening" if self.listening else "closed"
        return f"<greenhttps.{type(self).__name__} {state} {self.address()} connections={len(self._connections)}>"

    # ------------------------------------------------------------ listening

    def listen(self, *args: ListenArgument, **kwargs: Unpack[ListenOptions]) -> Server:
        """Start accepting; returns the server at once (Node's ``server.listen``).

        Its arguments, positional or keyword, are Node's:
        ``listen(port=0, host=None, backlog=511, callback=None, reuse_port=False)``,
        ``listen(path)`` for a Unix socket, ``listen(sock)`` with a bound socket object,
        ``listen({'fd': n})`` or ``listen({'port': .., 'host': .., 'path': ..,
        'reusePort': ..})``.  The callback runs on ``'listening'``.  A port in use
        raises ``greenhttps.errors.AddressInUseError``.

        ``reuse_port`` (Node 22's ``reusePort``) sets ``SO_REUSEPORT``: several
        processes that all set it can listen on the same port, and the kernel spreads
        new connections over them -- one server process per core without a master.
        """
        args_list: list[Any] = list(args)
        callback = kwargs.pop("callback", None)
        if args_list and callable(args_list[-1]):
            callback = args_list.pop()
        if self._listener is not None:
            raise errors.Error("Listen method has been called more than once", "ERR_SERVER_ALREADY_LISTEN")
        target: Any = args_list[0] if args_list else kwargs.pop("port", 0)
        host = args_list[1] if len(args_list) > 1 else kwargs.pop("host", None)
        backlog = args_list[2] if len(args_list) > 2 else kwargs.pop("backlog", 511)
        reuse_port = bool(kwargs.pop("reuse_port", kwargs.pop("reusePort", False)))
        if kwargs:
            raise TypeError(f"listen: unknown argument(s) {', '.join(kwargs)}")
        fd = None
        if isinstance(target, Mapping):
            host = target.get("host", host)
            backlog = target.get("backlog", backlog)
            fd = target.get("fd")
            reuse_port = bool(target.get("reuse_port", target.get("reusePort", reuse_port)))
            target = target.get("path", target.get("port", 0))
        if fd is not None:
            # Socket activation: the descriptor is handed to us and becomes ours, so it
            # is used as is (no dup) and closed by close().
            listener = gsocket.socket(fileno=fd)
            self._listen_on(listener, backlog)
        else:
            listener = self._bind(target, host, backlog, reuse_port)
        self._listener = listener
        if callback is not None:
            self.once("listening", callback)
        self._closing = False
        self._closed.clear()
        self.listening = True
        self._accept_loop = gevent.spawn(self._accept_forever, self._listener)
        return self

    def _bind(self, target: Any, host: str | None, backlog: int, reuse_port: bool = False) -> gsocket.socket:
        if hasattr(target, "fileno"):
            # Ours to close: a duplicate, so the caller's object stays theirs.
            sock = gsocket.socket(target.family, target.type, target.proto, fileno=os.dup(target.fileno()))
            self._listen_on(sock, backlog)
            return sock
        if isinstance(target, (str, os.PathLike)) and not str(target).isdigit():
            path = os.fspath(target)
            sock = gsocket.socket(_stdlib_socket.AF_UNIX, _stdlib_socket.SOCK_STREAM)
            try:
                sock.bind(path)
                sock.listen(backlog)
            except OSError as exc:
                sock.close()
                raise errors.from_os_error(exc, during=f"listen on {path}") from exc
            # We created the socket file, so close() removes it (as libuv does): a
            # restarted server can then bind the same path.
            stat = os.stat(path)
            self._unix_path = (path, stat.st_dev, stat.st_ino)
            return sock
        port = int(target or 0)
        family: int
        if host is None:
            if _stdlib_socket.has_ipv6:
                try:
                    return self._bind_inet(_stdlib_socket.AF_INET6, "::", port, backlog, dual_stack=True,
                                           reuse_port=reuse_port)
                except errors.AddressInUseError:
                    raise
                except errors.Error:
                    pass  # IPv6 compiled in but unavailable here: Node falls back to IPv4
            family, address = _stdlib_socket.AF_INET, "0.0.0.0"
        else:
            info = gsocket.getaddrinfo(host, port, 0, _stdlib_socket.SOCK_STREAM)[0]
            family, address = info[0], str(info[4][0])
        return self._bind_inet(family, address, port, backlog, reuse_port=reuse_port)

    @staticmethod
    def _bind_inet(
        family: int, address: str, port: int, backlog: int, dual_stack: bool = False, reuse_port: bool = False
    ) -> gsocket.socket:
        where = f"listen on {address}:{port}"
        if reuse_port and not hasattr(_stdlib_socket, "SO_REUSEPORT"):
            raise errors.Error("listen: reuse_port is not supported on this platform", "ENOTSUP")
        try:
            sock = gsocket.socket(family, _stdlib_socket.SOCK_STREAM)
        except OSError as exc:
            raise errors.from_os_error(exc, during=where) from exc
        try:
            sock.setsockopt(_stdlib_socket.SOL_SOCKET, _stdlib_socket.SO_REUSEADDR, 1)
            if reuse_port:
                # Every socket sharing the port must set it before bind (Linux, BSDs).
                sock.setsockopt(_stdlib_socket.SOL_SOCKET, _stdlib_socket.SO_REUSEPORT, 1)
            if dual_stack:  # '::' also takes IPv4 connections, as Node's default
                sock.setsockopt(_stdlib_socket.IPPROTO_IPV6, _stdlib_socket.IPV6_V6ONLY, 0)
            sock.bind((address, port))
            sock.listen(backlog)
        except OSError as exc:
            sock.close()
            raise errors.from_os_error(exc, during=where) from exc
        return sock

    @staticmethod
    def _listen_on(sock: gsocket.socket, backlog: int) -> None:
        """``listen()`` a handed-over socket; one that already listens keeps its backlog."""
        if sock.getsockopt(_stdlib_socket.SOL_SOCKET, _stdlib_socket.SO_ACCEPTCONN):
            return
        try:
            sock.listen(backlog)
        except OSError as exc:
            sock.close()
            raise errors.from_os_error(exc, during="listen") from exc

    def address(self) -> dict[str, Any] | str | None:
        """``{'address', 'family', 'port'}`` (or the Unix path); None when closed."""
        if self._listener is None:
            return None
        name = self._listener.getsockname()
        if isinstance(name, str):
            return name
        family = "IPv6" if self._listener.family == _stdlib_socket.AF_INET6 else "IPv4"
        return {"address": name[0], "family": family, "port": name[1]}

    def _accept_forever(self, listener: gsocket.socket) -> None:
        self.emit("listening")
        delay = self.min_delay
        while not self._closing:
            if self._accept_limit and len(self._connections) >= self._accept_limit:
                self._slot_free.clear()
                self._slot_free.wait()
                continue
            try:
                raw, _ = listener.accept()
            except OSError as exc:
                if self._closing or exc.errno == errno.EBADF:
                    return
                if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    # Out of descriptors: sleeping lets other greenlets close some.
                    logger.warning("accept failed (%s); retrying in %.2fs", exc, delay)
                    gevent.sleep(delay)
                    delay = min(self.max_delay, delay * 2)
                elif exc.errno not in (errno.ECONNABORTED, errno.EAGAIN, errno.EINTR, errno.EPROTO):
                    logger.error("accept failed: %s", exc)
                    gevent.sleep(self.min_delay)
                continue
            delay = self.min_delay
            if self.max_connections and len(self._connections) >= self.max_connections:
                self._drop(raw)
                continue
            if raw.family != _stdlib_socket.AF_UNIX and self.no_delay:
                raw.setsockopt(_stdlib_socket.IPPROTO_TCP, _stdlib_socket.TCP_NODELAY, 1)
            if self.keep_alive:
                raw.setsockopt(_stdlib_socket.SOL_SOCKET, _stdlib_socket.SO_KEEPALIVE, 1)
                # Node's keepAliveInitialDelay (ms): the idle time before the first probe.
                if self.keep_alive_initial_delay and hasattr(_stdlib_socket, "TCP_KEEPIDLE"):
                    idle = max(1, int(self.keep_alive_initial_delay // 1000))
                    raw.setsockopt(_stdlib_socket.IPPROTO_TCP, _stdlib_socket.TCP_KEEPIDLE, idle)
            conn = ServerConnection(self, raw)
            self._connections.add(conn)
            conn.greenlet = _start_greenlet(conn.run)

    def _drop(self, raw: gsocket.socket) -> None:
        """Close a connection past ``max_connections`` and say so, as Node's ``'drop'``."""
        if raw.family == _stdlib_socket.AF_UNIX:  # Node: a pipe has no addresses, 'drop' no argument
            raw.close()
            self.emit("drop")
            return
        family = "IPv6" if raw.family == _stdlib_socket.AF_INET6 else "IPv4"
        data: dict[str, Any] = {}
        try:
            local, remote = raw.getsockname(), raw.getpeername()
            data = {"localAddress": local[0], "localPort": local[1], "localFamily": family,
                    "remoteAddress": remote[0], "remotePort": remote[1], "remoteFamily": family}
        except OSError:  # the peer is already gone (ENOTCONN): no addresses to give
            pass
        finally:
            raw.close()
        self.emit("drop", data)

    def _wrap(self, raw: gsocket.socket) -> ssl.SSLSocket | BioSSLSocket:
        assert self._context is not None
        if TLS_ON_MEMORY_BIOS:
            return BioSSLSocket(_tls.stdlib_context(self._context), raw, server_side=True)
        return _tls.wrap_socket(self._context, raw, server_side=True)

    def _connection_done(self, conn: ServerConnection) -> None:
        self._connections.discard(conn)
        if self._accept_limit:
            self._slot_free.set()
        if self._closing and not self._connections:
            self._finish_close()

    # -------------------------------------------------------------- serving

    def serve_forever(self) -> None:
        """Block the calling greenlet until the server is closed."""
        if self._listener is None:
            raise errors.Error("serve_forever() before listen()", "ERR_SERVER_NOT_RUNNING")
        self._closed.wait()

    def set_timeout(self, msecs: Duration = 0, callback: Callable[..., Any] | None = None) -> Server:
        """Socket idle timeout, ``msecs`` in milliseconds or a ``timedelta`` (Node's ``server.setTimeout``).

        0 disables it; applies to connections accepted from now on.  ``callback`` is
        added to ``'timeout'``.  Returns the server.
        """
        self.timeout = duration_to_ms(msecs) or 0  # milliseconds, as the option
        if callback is not None:
            self.on("timeout", callback)
        return self

    def set_secure_context(self, options: Mapping[str, Any]) -> None:
        """Replace the server's TLS identity for connections accepted from now on
        (Node's ``server.setSecureContext(options)``, Node 11+).

        ``options`` are ``create_server``'s TLS options (camelCase accepted): ``key``,
        ``cert``, ``pfx``, ``passphrase``, ``ca``, ``ciphers``, ``crl``, ``dhparam``,
        ``ecdh_curve``, ``secure_protocol``, ``honor_cipher_order`` or a ready
        ``ssl_context``.  As in Node, they replace the context's options as a whole
        (one not given is back at its default), except ``min_version`` and
        ``max_version``, kept unless given; ``request_cert``,
        ``reject_unauthorized``, ``sni_callback`` and ``alpn_protocols`` stay the
        server's from ``create_server`` and are ignored here, as are the non-TLS
        server options (so the dict given to ``create_server`` may be passed again).

        Connections already open (or in their handshake) keep the identity they
        were accepted with.  A context that cannot be built (wrong passphrase, a key
        that does not match its certificate) raises, and the old one stays.  Rotate a
        certificate without a restart::

            server.set_secure_context({"key": open("key.pem", "rb").read(),
                                       "cert": open("cert.pem", "rb").read()})
        """
        if not isinstance(options, Mapping):
            raise errors.InvalidArgumentError(
                f'The "options" argument must be a mapping, not {type(options).__name__}', "ERR_INVALID_ARG_TYPE")
        if not self.secure:
            raise TypeError("greenhttps.http.Server has no TLS context to set")
        given = merge_options(SERVER_OPTIONS, options, what="set_secure_context", defaults=False)
        tls = {name: value for name, value in given.items()
               if name in _TLS_ONLY and name not in _KEPT_BY_SERVER and value is not None}
        kept = self._tls_options
        # A ready ssl_context is used as it is: only the two names that decide
        # `authorized` may stand beside it (see _tls).
        keep = (("request_cert", "reject_unauthorized") if "ssl_context" in tls
                else (*_KEPT_BY_SERVER, *(name for name in _KEPT_UNLESS_GIVEN if name not in tls)))
        tls.update((name, kept[name]) for name in keep if kept.get(name) is not None)
        context = _server_context(tls)  # raises before anything changes
        self._context = context
        self._tls_options = tls

    # -------------------------------------------------------------- closing

    def close(self, callback: Callable[..., Any] | None = None) -> Server:
        """Stop accepting now; close idle connections now; let in-flight requests
        finish (with ``Connection: close``); then emit ``'close'`` and call
        ``callback``.

        Idle means between requests with nothing of the next one arrived.  Not idle,
        so served: a request partly received (B-11); one whose bytes wait unread in
        the kernel's or OpenSSL's buffer (looked at again just before the close); and
        a connection accepted before ``close()`` that has not had its first request
        yet, still in its TLS handshake or just out of it (as in Node 20; bounded by
        ``headers_timeout``).  What no server can answer is a request sent on an
        idle connection after its close went out: that client reads EOF, and may
        retry (RFC 9112 §9.3.1).
        """
        if self._listener is None:
            if callback is not None:
                # As Node: the callback hears why; 'close' listeners get no arguments.
                self.once("close", lambda *_: callback(errors.Error("Server is not running.", "ERR_SERVER_NOT_RUNNING")))
            gevent.spawn(self.emit, "close")
            return self
        if callback is not None:
            self.once("close", callback)
        self._closing = True
        self.listening = False
        listener, self._listener = self._listener, None
        loop = self._accept_loop
        self._accept_loop = None
        if loop is not None:
            # gevent defers closing a socket some greenlet is waiting on to a later
            # loop turn, and until then the kernel keeps accepting connections.  So
            # end the accept loop first (unless that is us, or we are the hub, which
            # cannot block): then the close below is immediate, as Node's is.
            current = gevent.getcurrent()
            if current is loop or current is gevent.get_hub():
                loop.kill(block=False)
            else:
                loop.kill(block=True)
        listener.close()
        if self._unix_path is not None:
            (path, dev, ino), self._unix_path = self._unix_path, None
            try:
                info = os.stat(path)
                if (info.st_dev, info.st_ino) == (dev, ino):  # still ours, not a newer one
                    os.unlink(path)
            except OSError:
                pass  # already gone
        self.close_idle_connections()
        if not self._connections:
            self._finish_close()
        return self

    def _finish_close(self) -> None:
        if not self._closed.is_set():
            self._closed.set()
            gevent.spawn(self.emit, "close")

    def close_idle_connections(self) -> None:
        """Close every connection that is between requests (Node 18.2+)."""
        for conn in list(self._connections):
            conn.close_if_idle()

    def close_all_connections(self) -> None:
        """Close every connection now, in flight or not (Node 18.2+)."""
        for conn in list(self._connections):
            if conn.greenlet is not None and conn.state is not ConnState.DETACHED:
                gevent.kill(conn.greenlet)

    @property
    def connections(self) -> int:
        """Open connections (Node's ``server.connections``, long deprecated there)."""
        return len(self._connections)

    def get_connections(self, callback: Callable[[Any, int], Any] | None = None) -> int:
        """The number of open connections (Node's ``server.getConnections()``).

        Also passed as ``callback(None, count)`` when a ``callback`` is given.
        """
        if callback is not None:
            callback(None, len(self._connections))
        return len(self._connections)

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()
        self.close_all_connections()


# Each non-TLS option is also a writable attribute (``server.headers_timeout = 500``);
# Node spells them ``server.headersTimeout``, so each gets its camelCase twin, which
# reads and writes the snake_case attribute.  (``timeout`` is its own spelling.)
attribute_aliases(*(name for name in SERVER_OPTIONS if name not in _TLS_ONLY and "_" in name))(Server)


def _server_context(tls: Mapping[str, Any]) -> _tls.Context:
    """The server's context from its TLS options (None values already dropped)."""
    context = _tls.create_server_context(**tls)
    if tls.get("ssl_context") is None:
        _record_servername(context)  # ours to configure (never the user's)
    return context


def _record_servername(ctx: Any) -> None:
    """Keep the SNI name a client sent, for ``socket.servername`` (Node's
    ``tlsSocket.servername``): Python's server sockets expose it only to the context's
    ``sni_callback``, so wrap that (or install one) to note it on the socket."""
    inner = ctx.sni_callback

    def on_servername(sslsock: Any, servername: str | None, context: ssl.SSLContext) -> Any:
        try:
            sslsock.greenhttps_servername = servername
        except AttributeError:
            pass  # a socket class without a __dict__: no name, nothing else lost
        return inner(sslsock, servername, context) if inner is not None else None

    ctx.sni_callback = on_servername


class PlainServer(Server):
    """The same server without TLS: ``greenhttps.http.Server`` (Node's ``http.Server``)."""

    secure = False


def create_server(
    options: ServerOptions | RequestListener | None = None,
    request_listener: RequestListener | None = None,
    **kwargs: Unpack[ServerOptions],
) -> Server:
    """Node's ``https.createServer(options, requestListener)``.

    ``request_listener(req, res)`` is added to ``'request'``.  Raises at once for a
    wrong passphrase or a key that does not match the certificate.
    """
    return Server(options, request_listener, **kwargs)
