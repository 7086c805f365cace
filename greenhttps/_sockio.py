"""Cooperative recv and send with a timeout, straight on a gevent socket's watchers.

Why not ``sock.settimeout(t); sock.recv(n)``?  gevent implements a socket timeout
by building a :class:`gevent.Timeout` (a Python object, its timer watcher and a
timeout exception) for every wait that blocks, and gevent's ``SSLSocket.read``
waits inside its ``except SSLWantReadError`` block, which keeps that exception and
its traceback alive for as long as the connection sits idle.  A keep-alive server
blocks about once per request: going around gevent's socket methods took its
keep-alive rate from about 10,000 to 11,400 req/s here, and each idle TLS
connection from 26.3 to 24.7 KiB.  Here a wait is one :class:`gevent.hub.Waiter`,
the socket's own I/O watcher and, only when a timeout applies, one bare loop timer.

Semantics are the gevent socket's: ``timeout`` (seconds, None for no limit) bounds
each wait, not the whole call; a socket closed by another greenlet while this one
waits raises ``OSError(EBADF)`` here, as gevent does (``hub.cancel_wait`` throws into
our waiter).  A timeout is reported by returning None, never by raising, so the
wire decides what expiry means (ask ``'timeout'`` listeners, or give up).
Sockets that are not gevent's (no I/O watchers) fall back to ``settimeout``.
"""

from __future__ import annotations

import errno
import socket
import ssl
import threading
from typing import Any

from gevent.exceptions import ConcurrentObjectUseError
from gevent.hub import Waiter
from gevent.monkey import get_original
from gevent.ssl import SSLSocket as GeventSSLSocket

from ._openssl import ATTR as _READ_AHEAD_ATTR
from ._openssl import buffered, disable_read_ahead

__all__ = ["buffered", "hand_over", "held", "readable_now", "recv", "recv_into", "recv_now", "recv_tcp", "send", "send_tcp"]

_EXPIRED = object()
#: The most plaintext one TLS record carries (RFC 8446 §5.1).
_TLS_RECORD = 16384
#: The most one TLS read into the scratch buffer returns (the wire asks for 64 KiB).
_SCRATCH_SIZE = 64 * 1024
_local = threading.local()


def _wait(sock: Any, watcher: Any, timeout: float | None) -> bool:
    """Block this greenlet until ``watcher`` fires (True) or ``timeout`` passes (False)."""
    if watcher is None:
        raise OSError(errno.EBADF, "socket closed")
    if watcher.callback is not None:  # as gevent: one waiter per direction
        raise ConcurrentObjectUseError(f"this socket is already used by another greenlet: {watcher.callback!r}")
    hub = sock.hub
    waiter: Any = Waiter(hub)
    watcher.start(waiter.switch, waiter)
    timer = None
    if timeout is not None:
        timer = hub.loop.timer(timeout if timeout > 0 else 0.0)
        # update: the loop's clock is as old as its last turn; a timer counted from
        # it fires early by however long callbacks ran since (gevent.Timeout does
        # the same).
        timer.start(waiter.switch, _EXPIRED, update=True)
    try:
        return waiter.get() is not _EXPIRED
    finally:
        watcher.stop()
        if timer is not None:
            timer.close()


def _closed_tls() -> OSError:
    return OSError(errno.EBADF, "read or write on a closed or unwrapped TLS socket")


def recv(sock: Any, size: int, timeout: float | None, *, wait_first: bool = False) -> bytes | None:
    """Up to ``size`` bytes; b'' when the peer has closed; None when ``timeout`` passed.

    ``wait_first``: the caller expects nothing to have arrived yet (the next request
    on a keep-alive connection, a response just asked for), so the socket waits for
    readability before reading, as an event loop would: a read that finds nothing
    costs a system call and an exception (for TLS an SSLWantReadError, ~2.7 µs) on
    every request.  The watcher is level-triggered: bytes already there wake it at
    once.  Memory-BIO sockets keep their own buffer and ignore it.
    """
    if isinstance(sock, GeventSSLSocket):
        return _tls_recv(sock, size, timeout, wait_first)
    within = getattr(type(sock), "recv_within", None)
    if within is not None:  # a socket that does its own (greenhttps._tlsbio)
        return within(sock, size, timeout)  # type: ignore[no-any-return]
    if not hasattr(sock, "_read_event"):
        return _blocking_recv(sock, size, timeout)
    return recv_tcp(sock, size, timeout, wait_first)


def recv_tcp(sock: Any, size: int, timeout: float | None, wait_first: bool = False) -> bytes | None:
    """:func:`recv` for a plain gevent socket."""
    if wait_first and not _wait(sock, sock._read_event, timeout):
        return None
    while True:
        try:
            return sock._sock.recv(size)  # type: ignore[no-any-return]
        except BlockingIOError:
            pass
        if not _wait(sock, sock._read_event, timeout):
            return None


#: The real select.poll, even in a monkey-patched process (gevent removes it): a
#: zero-timeout look that never yields to the hub, whatever the descriptor's number
#: (select.select refuses descriptors past FD_SETSIZE, 1024).
_original_poll = get_original("select", "poll")
_POLLIN = get_original("select", "POLLIN")


def readable_now(fd: int) -> bool:
    """Is descriptor ``fd`` readable (bytes, or the peer's close) at this instant?
    Never waits and never switches greenlets, so callers whose bookkeeping must not
    yield (the Agent's) may use it.  Raises ``OSError``/``ValueError`` for a bad fd."""
    poller = _original_poll()
    poller.register(fd, _POLLIN)
    return bool(poller.poll(0))


def held(sock: Any) -> bool:
    """Does the TLS layer hold bytes of the peer's (the kernel no longer does), which
    a read would take without the descriptor turning readable?  A decrypted record
    not yet read, or with OpenSSL's read-ahead, records (whole or partial) not yet
    decrypted; for a memory-BIO socket, its incoming buffer.  Never reads; False
    for a closed socket."""
    if isinstance(sock, GeventSSLSocket):
        tls: Any = sock
        return tls._sslobj is not None and buffered(tls)
    # Asked of the class: a gevent socket passes unknown names to the socket it
    # wraps, whose stand-in raises EBADF once closed.
    cls = type(sock)
    if not hasattr(cls, "pending"):
        return False  # plain TCP: what has arrived is in the kernel
    if sock.pending():
        return True
    if not hasattr(cls, "_in"):
        return False
    # A BioSSLSocket: its memory BIO, the bytes taken from below and not yet fed to
    # it, and -- TLS inside an https:// proxy's TLS -- what the layer below holds:
    # the origin's close_notify may sit in the proxy socket's OpenSSL (read ahead
    # with the response) while no descriptor is readable.
    if sock._in.pending or sock._unread is not None:
        return True
    below = sock._raw
    return hasattr(type(below), "pending") and held(below)


def hand_over(sock: Any) -> bytes:
    """For a socket leaving the package (Upgrade, CONNECT): switch OpenSSL's
    read-ahead off, so that user code may trust ``pending()`` and the descriptor as
    with any Python TLS socket, and return the bytes it had read ahead, decrypted
    (they come before anything the socket reads next).  A partial record stays
    inside OpenSSL: its rest is still in the kernel, so the descriptor shows it."""
    if not isinstance(sock, GeventSSLSocket) or _READ_AHEAD_ATTR not in sock.__dict__:
        return b""
    tls: Any = sock
    pieces = []
    while tls._sslobj is not None and buffered(tls):
        data = _tls_recv_now(tls, _SCRATCH_SIZE)
        if not data:  # nothing whole (None), or the end, which the next read reports again
            break
        pieces.append(data)
    disable_read_ahead(tls)
    return b"".join(pieces)


def recv_now(sock: Any, size: int) -> bytes | None:
    """What has arrived, up to ``size`` bytes, without waiting and without switching
    greenlets (it may run in a hub callback): None when nothing is ready, b'' when
    the peer has closed (TLS: close_notify, or a close without it).  A TLS record
    that is not application data (a TLS 1.3 session ticket) counts as nothing."""
    if isinstance(sock, GeventSSLSocket):
        return _tls_recv_now(sock, size)
    now = getattr(type(sock), "recv_now", None)
    if now is not None:  # a socket that does its own (greenhttps._tlsbio)
        return now(sock, size)  # type: ignore[no-any-return]
    raw = getattr(sock, "_sock", sock) if hasattr(sock, "_read_event") else sock
    if raw is sock:  # not gevent's: a blocking socket, asked without blocking
        import select

        if not select.select([sock], [], [], 0)[0]:
            return None
        return sock.recv(size)  # type: ignore[no-any-return]
    try:
        return raw.recv(size)  # type: ignore[no-any-return]
    except BlockingIOError:
        return None


def _tls_recv_now(sock: Any, size: int) -> bytes | None:
    sslobj = sock._sslobj
    if sslobj is None:
        raise _closed_tls()
    pieces: list[bytes] = []
    total = 0
    while total < size:
        try:
            data = sslobj.read(size - total)
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
            break
        except ssl.SSLError as exc:
            if pieces:
                break  # reported again to the next read, after these bytes
            _raise_unless_end_of_stream(sock, exc)
            return b""
        if not data:
            if pieces:
                break
            return b""
        pieces.append(data)
        total += len(data)
    return b"".join(pieces) if pieces else None


def recv_into(sock: Any, view: memoryview, timeout: float | None) -> int | None:
    """:func:`recv` into ``view``: the count of bytes put there (0 when the peer has
    closed), or None when ``timeout`` passed."""
    if isinstance(sock, GeventSSLSocket):
        return _tls_recv_into(sock, view, timeout)
    if hasattr(type(sock), "recv_within") or not hasattr(sock, "_read_event"):
        # Memory BIOs, blocking sockets: a copy (and a read of at most one scratch).
        data = recv(sock, min(len(view), _SCRATCH_SIZE), timeout)
        if data is None:
            return None
        view[: len(data)] = data
        return len(data)
    while True:
        try:
            return sock._sock.recv_into(view)  # type: ignore[no-any-return]
        except BlockingIOError:
            pass
        if not _wait(sock, sock._read_event, timeout):
            return None


def _tls_recv(sock: Any, size: int, timeout: float | None, wait_first: bool = False) -> bytes | None:
    scratch = _scratch()
    count = _tls_recv_into(sock, scratch[:size], timeout, wait_first)
    return None if count is None else bytes(scratch[:count])


def _tls_recv_into(sock: Any, view: memoryview, timeout: float | None, wait_first: bool = False) -> int | None:
    size = len(view)
    # buffered(): bytes OpenSSL holds, decrypted or (with read-ahead) not yet: a
    # next record there leaves the descriptor unreadable, so it is asked first.
    # (A closed socket counts as holding: the read below raises at once.)
    if wait_first and not buffered(sock):
        if not _wait(sock, sock._read_event, timeout):
            return None
    while True:
        sslobj = sock._sslobj
        if sslobj is None:
            raise _closed_tls()
        try:
            count: int = sslobj.read(size, view)
        except ssl.SSLWantReadError:
            watcher = sock._read_event
        except ssl.SSLWantWriteError:  # a TLS read may need to write (key update)
            watcher = sock._write_event
        except ssl.SSLError as exc:
            _raise_unless_end_of_stream(sock, exc)
            return 0
        else:
            if count == _TLS_RECORD and size > _TLS_RECORD:
                count = _more_records(sslobj, view, count, size)
            return count
        # Wait outside the except block: no exception lives on while we idle.
        if not _wait(sock, watcher, timeout):
            return None


def _scratch() -> memoryview:
    """This thread's read buffer.  Records are decrypted into it and copied out at
    their exact size: no read allocates (and frees) 64 KiB, and a bulk read is one
    allocation rather than one per record plus the join.  Per thread: SSL_read
    runs without the GIL."""
    try:
        return _local.scratch  # type: ignore[no-any-return]
    except AttributeError:
        _local.scratch = memoryview(bytearray(_SCRATCH_SIZE))
        return _local.scratch  # type: ignore[no-any-return]


def _raise_unless_end_of_stream(sock: Any, exc: ssl.SSLError) -> None:
    """Return if ``exc`` is the peer closing, else raise it.

    A TCP close without close_notify is an end of stream too, as gevent and the
    stdlib report it by default (the HTTP framing tells a truncated body)."""
    if isinstance(exc, ssl.SSLZeroReturnError):
        return
    if exc.args and exc.args[0] == ssl.SSL_ERROR_EOF and sock.suppress_ragged_eofs:
        return
    raise exc


def _more_records(sslobj: Any, view: memoryview, count: int, size: int) -> int:
    """A full record came in: a bulk transfer.  Take the records already here too
    (one SSL_read returns one record), so that the layers above handle up to
    ``size`` bytes at a time rather than 16 KiB.  Returns the bytes now in ``view``."""
    while count < size:
        try:
            more = sslobj.read(min(_TLS_RECORD, size - count), view[count:])
        except ssl.SSLError:
            # Nothing more yet; or the end or an error, which OpenSSL reports again
            # to the next read, after these bytes have been delivered.
            break
        if not more:
            break
        count += more
    return count


def send(sock: Any, data: bytes | memoryview, timeout: float | None) -> int | None:
    """Send some of ``data``; the count sent, or None when ``timeout`` passed first."""
    if isinstance(sock, GeventSSLSocket):
        return _tls_send(sock, data, timeout)
    within = getattr(type(sock), "send_within", None)
    if within is not None:
        return within(sock, data, timeout)  # type: ignore[no-any-return]
    if not hasattr(sock, "_write_event"):
        return _blocking_send(sock, data, timeout)
    return send_tcp(sock, data, timeout)


def send_tcp(sock: Any, data: bytes | memoryview, timeout: float | None) -> int | None:
    """:func:`send` for a plain gevent socket."""
    while True:
        try:
            return sock._sock.send(data)  # type: ignore[no-any-return]
        except BlockingIOError:
            pass
        if not _wait(sock, sock._write_event, timeout):
            return None


def _tls_send(sock: Any, data: bytes | memoryview, timeout: float | None) -> int | None:
    while True:
        sslobj = sock._sslobj
        if sslobj is None:
            raise _closed_tls()
        try:
            return sslobj.write(data)  # type: ignore[no-any-return]
        except ssl.SSLWantWriteError:
            watcher = sock._write_event
        except ssl.SSLWantReadError:
            watcher = sock._read_event
        if not _wait(sock, watcher, timeout):
            return None


def _blocking_recv(sock: socket.socket, size: int, timeout: float | None) -> bytes | None:
    sock.settimeout(timeout)
    try:
        return sock.recv(size)
    except socket.timeout:
        return None


def _blocking_send(sock: socket.socket, data: bytes | memoryview, timeout: float | None) -> int | None:
    sock.settimeout(timeout)
    try:
        return sock.send(data)
    except socket.timeout:
        return None
