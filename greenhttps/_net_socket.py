"""The one socket type handed to user code: Python's socket methods and Node's.

``'connection'``, ``'secureConnection'``, ``'upgrade'``, ``'connect'``,
``req.socket`` and ``res.socket`` all give a :class:`Socket`.  It wraps a gevent
socket (plain or TLS) and adds Node's names (``write``, ``end``, ``destroy``,
``remote_address``, ``authorized``, ``get_peer_certificate()``...).  Everything else
(``sendall``, ``recv``, ``getpeername``, ``fileno``...) goes to the wrapped socket.

The TLS facts (``alpn_protocol``, ``get_protocol()``, ``get_cipher()``,
``session_reused``, ``get_peer_certificate()``; ``authorized`` and
``authorization_error`` are plain attributes) are read at the end of the handshake
and stay readable after the close.
"""

from __future__ import annotations

import socket
import ssl
import time
from typing import TYPE_CHECKING, Any, Callable

from . import errors
from ._events import EventEmitter
from ._options import duration_to_ms, ms_to_seconds, node_aliases
from ._tlsbio import BioSSLSocket

if TYPE_CHECKING:
    from ._types import Duration

__all__ = ["Socket"]

#: How long ``end()`` drains the peer's last bytes before closing (seconds).
_END_LINGER = 0.1


@node_aliases
class Socket(EventEmitter):
    """A connection as Node's ``net.Socket`` / ``tls.TLSSocket`` shows it."""

    #: TLS only: did the peer's certificate verify? (False when there is none.)
    authorized: bool = False
    #: TLS only: Node's code for why the peer is not authorized, or None.
    authorization_error: str | None = None
    #: Client only: the name sent as SNI and checked; server: the SNI name received.
    servername: str | None = None

    def __init__(self, sock: socket.socket | BioSSLSocket, *, encrypted: bool = False) -> None:
        self._sock = sock
        self.encrypted = encrypted
        self.destroyed = False
        #: Node milliseconds; 0 means no idle timeout.
        self.timeout: float = 0
        #: Set by the owner of the connection (server loop, client) to apply a new
        #: idle timeout to its reads and writes.
        self._apply_timeout: Callable[[float | None], None] | None = None
        #: Set by the owner while it watches the descriptor (greenhttps._watch): called
        #: before the socket is closed, so that no watcher of ours outlives it (gevent
        #: defers the close of a descriptor that still has one).
        self._before_close: Callable[[], None] | None = None
        self._peer: tuple[Any, ...] | None = None
        #: The family of a peer named by a PROXY protocol header (None: the socket's own).
        self._family: str | None = None
        #: What the handshake settled (see _TLSFacts), kept for after the close.
        self._tls: _TLSFacts | None = _TLSFacts(sock) if encrypted else None

    def _attach(self, sock: socket.socket | BioSSLSocket, *, encrypted: bool) -> None:
        """Swap in the TLS socket once the handshake is done (``encrypted``), or to own
        it before (not ``encrypted``)."""
        self._sock, self.encrypted = sock, encrypted
        if encrypted:
            self._tls = _TLSFacts(sock)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)

    def __repr__(self) -> str:
        state = "destroyed" if self.destroyed else ("tls" if self.encrypted else "tcp")
        return f"<greenhttps.Socket {state} {self.remote_address}:{self.remote_port}>"

    # ----------------------------------------------------------- addresses

    def _peername(self) -> tuple[Any, ...]:
        if self._peer is None:
            try:
                self._peer = self._sock.getpeername()
            except OSError:
                return ()
            if isinstance(self._peer, str):  # Unix socket
                self._peer = (self._peer, None)
        return self._peer

    @property
    def remote_address(self) -> str | None:
        """The peer's IP address (Node's ``socket.remoteAddress``); None once unknown."""
        peer = self._peername()
        return peer[0] if peer else None

    @property
    def remote_port(self) -> int | None:
        """The peer's port (Node's ``socket.remotePort``); None once unknown."""
        peer = self._peername()
        return peer[1] if peer else None

    @property
    def remote_family(self) -> str | None:
        """``'IPv4'`` or ``'IPv6'`` (Node's ``socket.remoteFamily``); None for a Unix socket."""
        if self._family is not None:
            return self._family
        family = getattr(self._sock, "family", None)
        return {socket.AF_INET: "IPv4", socket.AF_INET6: "IPv6"}.get(family)  # type: ignore[arg-type]

    @property
    def local_address(self) -> str | None:
        """The local IP address (Node's ``socket.localAddress``); None once closed."""
        try:
            return self._sock.getsockname()[0]  # type: ignore[no-any-return]
        except (OSError, IndexError):
            return None

    @property
    def local_port(self) -> int | None:
        """The local port (Node's ``socket.localPort``); None once closed."""
        try:
            return self._sock.getsockname()[1]  # type: ignore[no-any-return]
        except (OSError, IndexError):
            return None

    # --------------------------------------------------------- Node methods

    @property
    def writable(self) -> bool:
        """False once the socket is destroyed or ended (Node's ``socket.writable``).

        A ``'clientError'`` listener checks it, as in Node's docs: after a failed TLS
        handshake the socket it gets is already destroyed."""
        return not self.destroyed

    def write(self, data: bytes | str, encoding: str = "utf-8") -> bool:
        """Send ``data`` (blocking cooperatively until the kernel has it); Node's ``socket.write()``.

        A str is encoded with ``encoding``.  Returns True.  Raises a :class:`greenhttps.Error` (``ERR_STREAM_DESTROYED`` after
        :meth:`destroy`; a network error, e.g. ``ECONNRESET``, if the peer is gone).
        """
        if self.destroyed:
            raise errors.Error("Cannot call write after a stream was destroyed", "ERR_STREAM_DESTROYED")
        if isinstance(data, str):
            data = data.encode(encoding)
        try:
            self._sock.sendall(data)
        except OSError as exc:
            raise errors.from_os_error(exc) from exc
        return True

    def end(self, data: bytes | str | None = None, encoding: str = "utf-8") -> None:
        """Send ``data`` if given, then close: a half-close (FIN), a short drain of
        what the peer still sends, then :meth:`destroy`.  Node's ``socket.end()``; a str
        ``data`` is encoded with ``encoding``.

        Closing with unread input would make the kernel send a reset instead of a FIN,
        which can destroy the reply before the peer has read it (RFC 9112 §9.6).  On a
        socket already destroyed, ``end()`` does nothing.
        """
        if self.destroyed:
            return
        if data:
            self.write(data, encoding)
        sock = self._sock
        try:
            sock.shutdown(socket.SHUT_WR)
            sock.settimeout(_END_LINGER)
            deadline = time.monotonic() + _END_LINGER
            while time.monotonic() < deadline and sock.recv(65536):
                pass
        except (OSError, ValueError):
            pass  # the peer is gone already: nothing left to protect
        self.destroy()

    def destroy(self, error: BaseException | None = None) -> None:
        """Close the connection now; emits ``'close'`` once (Node's ``socket.destroy()``).

        A given ``error`` is emitted as ``'error'`` first and ``'close'`` gets True.
        """
        if self.destroyed:
            return
        self.destroyed = True
        before_close, self._before_close = self._before_close, None
        if before_close is not None:
            before_close()
        try:
            self._sock.close()
        except OSError:
            pass
        if error is not None:
            self.emit_error(error)
        self.emit("close", error is not None)

    def set_timeout(self, msecs: Duration, callback: Callable[[], Any] | None = None) -> Socket:
        """Idle timeout: ``msecs`` in milliseconds or a ``timedelta`` (0 disables); ``callback`` is added to
        ``'timeout'``.  The owner of the connection decides what expiry does.
        Node: ``socket.setTimeout()``."""
        self.timeout = duration_to_ms(msecs) or 0  # milliseconds, as Node's socket.timeout
        if callback is not None:
            self.once("timeout", callback)
        if self._apply_timeout is not None:
            self._apply_timeout(ms_to_seconds(msecs))
        else:
            self._sock.settimeout(ms_to_seconds(msecs))
        return self

    def set_no_delay(self, no_delay: bool = True) -> Socket:
        """Turn Nagle's algorithm off (``no_delay`` True) or on; Node's ``socket.setNoDelay()``.

        A no-op on a Unix socket; never raises.  Returns the socket.
        """
        try:
            self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, int(no_delay))
        except OSError:
            pass  # Unix sockets have no Nagle
        return self

    def set_keep_alive(self, enable: bool = False, initial_delay: float = 0) -> Socket:
        """TCP keep-alive on if ``enable``; ``initial_delay`` in milliseconds, as Node's
        ``socket.setKeepAlive()``.  Never raises; returns the socket."""
        try:
            self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, int(enable))
            if enable and initial_delay and hasattr(socket, "TCP_KEEPIDLE"):
                seconds = max(1, int(initial_delay // 1000))
                self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, seconds)
        except OSError:
            pass
        return self

    # ------------------------------------------------------------- TLS info

    def get_peer_certificate(self, detailed: bool = False) -> dict[str, Any]:
        """The peer's certificate as Python's ``getpeercert()`` dict plus the fields
        Node's has (``subjectaltname``, ``modulus``, ``exponent``, ``fingerprint256``,
        ``valid_from``, ``raw``...; :func:`greenhttps._verify.node_certificate_fields`);
        ``{}`` if none.  ``subject`` and ``issuer`` keep Python's shape.

        Node's ``tlsSocket.getPeerCertificate(detailed)``; ``detailed`` (the issuer
        chain) is accepted for Node's signature and ignored.  Still given after the
        close (Node then returns null).
        """
        return self._tls.peer_certificate() if self._tls is not None else {}

    def get_cipher(self) -> dict[str, str] | None:
        """``{'name', 'standard_name', 'version'}`` of the cipher in use, None without TLS.

        Node: ``tlsSocket.getCipher()``.  Still given after the close.
        """
        cipher = self._tls.cipher if self._tls is not None else None
        if not cipher:
            return None
        return {"name": cipher[0], "standard_name": cipher[0], "version": cipher[1]}

    def get_protocol(self) -> str | None:
        """The TLS version (``'TLSv1.3'``), None without TLS; Node's ``tlsSocket.getProtocol()``.

        Still given after the close."""
        return self._tls.protocol if self._tls is not None else None

    def get_session(self) -> ssl.SSLSession | None:
        """The TLS session (for resumption), None without TLS; Node's ``tlsSocket.getSession()``."""
        return getattr(self._sock, "session", None) if self.encrypted else None

    @property
    def session_reused(self) -> bool:
        """True when the TLS handshake resumed a cached session (see :meth:`is_session_reused`)."""
        return self._tls is not None and self._tls.session_reused

    def is_session_reused(self) -> bool:
        """Node's ``tlsSocket.isSessionReused()``: :attr:`session_reused`."""
        return self.session_reused

    @property
    def alpn_protocol(self) -> str | None:
        """The protocol ALPN chose (``'http/1.1'``), None if none; Node's ``tlsSocket.alpnProtocol``."""
        return self._tls.alpn_protocol if self._tls is not None else None


#: One copy of each TLS version string and cipher tuple seen: every connection's
#: would otherwise be its own (~250 bytes an idle connection keeps).  Bounded, as a
#: peer could in principle offer many: past the bound a value is simply not shared.
_SHARED: dict[Any, Any] = {}


def _shared(value: Any) -> Any:
    kept = _SHARED.get(value)
    if kept is not None:
        return kept
    if len(_SHARED) < 64 and value is not None:
        _SHARED[value] = value
    return value


class _TLSFacts:
    """What a finished handshake settled, read once: a closed TLS socket forgets it
    (gevent's raises AttributeError), and the socket's owner may have closed it
    before user code asks (a response read to its end, a ``'close'`` listener).

    The peer's certificate is kept as DER (one copy, no parsing per connection) and
    made a dict when first asked for: from the live socket while it is open, which
    gives Python's own ``getpeercert()`` dict, else decoded from the DER.
    """

    __slots__ = ("_sock", "alpn_protocol", "protocol", "cipher", "session_reused", "_der", "_cert")

    def __init__(self, sock: Any) -> None:
        self._sock: Any = sock
        self.alpn_protocol: str | None = sock.selected_alpn_protocol() or None
        self.protocol: str | None = _shared(sock.version())
        self.cipher: tuple[str, str, int] | None = _shared(sock.cipher())
        self.session_reused = bool(getattr(sock, "session_reused", False))
        self._der: bytes | None = sock.getpeercert(binary_form=True) or None
        self._cert: dict[str, Any] | None = None

    def peer_certificate(self) -> dict[str, Any]:
        if self._cert is None:
            from ._verify import decode_certificate, node_certificate_fields, peer_certificate

            try:
                cert = peer_certificate(self._sock)
            except (AttributeError, ValueError, OSError):  # closed
                cert = {}
            if not cert and self._der is not None:
                cert = decode_certificate(self._der)
            if cert and self._der is not None:
                # Node's fields beside Python's (their names never clash).
                cert = {**node_certificate_fields(self._der), **cert}
            self._cert = cert
            self._sock = None  # the dict is all that is needed from it now
        return dict(self._cert)
