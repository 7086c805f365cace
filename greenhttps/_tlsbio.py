"""A TLS socket whose OpenSSL reads and writes memory buffers, not the descriptor.

Why not gevent's ``SSLSocket``?  There OpenSSL talks to the socket itself, and a
socket BIO makes system calls per TLS record: one ``write()`` per 16 KiB sent, 65
of them for a 1 MiB body (``strace -c``: Node makes one), and two ``read()``s for
every record received (its 5-byte header, then the rest) -- one since greenhttps
switches OpenSSL's read-ahead on (:mod:`._openssl`).  Here OpenSSL works on
two :class:`ssl.MemoryBIO`\\ s and we move the bytes: one ``recv`` takes whatever
records have arrived, one ``send`` carries up to :data:`_SEND_BATCH` of plaintext
as ciphertext.

Why it is not the default (servers and clients use it with ``GREENHTTPS_TLS_BIO=1``,
read once at import; the origin's TLS inside an https:// proxy's always does): a memory
BIO never gives its buffer back.  Each connection keeps about 2 KiB more while idle,
one record's worth (about 22 KiB) once it has carried a large body, and a server's
heap grows higher under mixed traffic (``benchmarks/soak.py``).  What it buys: 1 MiB
responses at 1,297-1,430 MiB/s against 1,027-1,109 with gevent's ``SSLSocket`` here
(``benchmarks/run.py``, two runs each).

The socket methods user code meets (through :class:`greenhttps.Socket`, e.g. in
an ``'upgrade'`` listener) are the usual ones: ``recv``, ``recv_into``, ``send``,
``sendall``, ``settimeout``, ``shutdown``, ``close``; the TLS accessors are the
``ssl.SSLSocket`` ones (``get_unverified_chain``/``get_verified_chain`` too, on
every Python: the C object has them since 3.10), always this layer's own.  Anything
else (``fileno``, ``getpeername``, ``setsockopt``...) is the layer below's, which is
a TCP socket's or leads to one.  ``recv_within`` and ``send_within`` are the wire's:
a timeout comes back as None, as in :mod:`greenhttps._sockio`.

The layer below is usually a TCP socket, but may be another TLS socket (gevent's
``SSLSocket``, or one of these): TLS inside TLS, an origin's through an https://
proxy (:mod:`._dial`), which ``SSLSocket`` cannot do -- it needs a descriptor.
Then bytes move through :mod:`._sockio`'s generic calls rather than the
descriptor's, and ``sendmsg`` batching gives way to one ``send`` per flush.  A TLS
question this class does not answer itself is then refused (AttributeError), never
passed down: the layer below would answer it about the proxy's TLS, and a
certificate check that read the proxy's chain would trust the wrong peer.
"""

from __future__ import annotations

import _ssl
import errno
import io
import os
import socket
import ssl
import weakref
from typing import Any

from gevent import socket as gsocket
from gevent import ssl as gssl

from . import _sockio

__all__ = ["BioSSLSocket", "TLS_ON_MEMORY_BIOS"]

#: ``GREENHTTPS_TLS_BIO=1``: servers and clients run OpenSSL on memory BIOs, which
#: read what has arrived in one system call (as a socket BIO with read-ahead does)
#: and send large bodies in fewer writes, and hold more memory per connection.
TLS_ON_MEMORY_BIOS = os.environ.get("GREENHTTPS_TLS_BIO", "") == "1"

#: Plaintext encrypted per ``send``: 16 records, one system call.
_SEND_BATCH = 256 * 1024
#: The most either memory BIO holds at once.  A BIO's buffer never shrinks: it stays
#: as large as the most it ever held for as long as the connection lives, so bulk
#: data goes through it a record at a time.
_BIO_SLICE = 16384
#: ``SSLContext.sni_callback`` as _ssl defines it, whatever subclass overrides it.
_STDLIB_SNI_CALLBACK: Any = vars(_ssl._SSLContext)["sni_callback"]
#: The TCP socket's methods that would read or write past OpenSSL.
_AROUND_TLS = frozenset({"recvfrom", "recvfrom_into", "recvmsg", "recvmsg_into", "sendto",
                         "sendmsg", "sendfile", "detach", "dup"})
#: The most ciphertext taken from the kernel at once.
_RECV_SIZE = 256 * 1024


def _tls_names() -> frozenset[str]:
    """What a TLS socket has and a TCP one has not (this Python's classes, and the
    attributes an ``SSLSocket`` sets on itself): with TLS below, such a name asked of
    a BioSSLSocket that does not define it is a question about *its* TLS, which the
    layer below must not answer."""
    plain = set(dir(socket.socket)) | set(dir(gsocket.socket))
    tls = set(dir(ssl.SSLSocket)) | set(dir(ssl.SSLObject)) | set(dir(gssl.SSLSocket))
    tls |= set(dir(_ssl._SSLSocket))  # type: ignore[attr-defined]
    state = {"_connected", "_context", "_session", "_sslobj", "_sslsock", "do_handshake_on_connect",
             "server_hostname", "server_side", "suppress_ragged_eofs"}
    return frozenset((tls - plain) | state)


_TLS_NAMES = _tls_names()


class BioSSLSocket:
    """TLS over a connected gevent socket, OpenSSL on memory BIOs (see the module)."""

    __slots__ = ("_raw", "_plain", "_tls", "_sslobj", "_in", "_out", "_unread", "_unsent", "_accepted", "_timeout",
                 "_ended", "__weakref__")

    suppress_ragged_eofs = True

    def __init__(self, context: ssl.SSLContext, raw: Any, *, server_side: bool,
                 server_hostname: str | None = None, session: ssl.SSLSession | None = None) -> None:
        self._raw = raw
        #: A gevent TCP socket (its descriptor is ours to read and write), not a TLS one.
        self._plain = hasattr(raw, "_read_event") and not hasattr(raw, "_sslobj")
        self._in = ssl.MemoryBIO()
        self._out = ssl.MemoryBIO()
        #: The stdlib ``SSLObject``: certificate and session accessors, the SNI callback's argument.
        self._tls: ssl.SSLObject | None = context.wrap_bio(self._in, self._out, server_side=server_side,
                                                            server_hostname=server_hostname, session=session)
        if type(_STDLIB_SNI_CALLBACK.__get__(context)).__name__ == "_Callback":
            # A gevent SSLContext's sni_callback looks for the SSLSocket it made.
            self._tls._sslsock = weakref.ref(self._tls)  # type: ignore[attr-defined]
        #: Its C object: what reads and writes call, one Python frame fewer.
        self._sslobj: Any = self._tls._sslobj  # type: ignore[attr-defined]
        #: OpenSSL has met the end of the stream (or an error) that it has not
        #: reported yet: the next read must ask it, not wait for the kernel.
        self._ended = False
        #: Ciphertext received but not yet given to OpenSSL (see _BIO_SLICE).
        self._unread: memoryview | None = None
        #: Ciphertext not yet sent, and the plaintext count it stands for.
        self._unsent: memoryview | None = None
        self._accepted = 0
        self._timeout: float | None = raw.gettimeout()

    # ------------------------------------------------------------ handshake

    def do_handshake(self) -> None:
        """Run the handshake, cooperatively; ``settimeout`` bounds each wait.

        A refused handshake still sends OpenSSL's alert before raising, as a socket
        BIO would."""
        sslobj = self._live()
        while True:
            try:
                sslobj.do_handshake()
                break
            except ssl.SSLWantReadError:
                pass
            except ssl.SSLError:
                self._send_alert()
                raise
            self._flush_or_raise()
            if not self._feed(self._timeout):
                raise socket.timeout("timed out")
        self._flush_or_raise()

    def _send_alert(self) -> None:
        try:
            if self._out.pending:
                self._raw.send(self._out.read())
        except OSError:
            pass

    def _flush_or_raise(self) -> None:
        if self._out.pending and not self._flush(self._timeout):
            raise socket.timeout("timed out")

    # ------------------------------------------------------ the wire's I/O

    def recv_within(self, size: int, timeout: float | None) -> bytes | None:
        """Up to ``size`` bytes; b'' at the end of the stream; None when ``timeout`` passed."""
        sslobj = self._live()
        incoming = self._in
        # Nothing buffered: wait for the kernel first rather than have OpenSSL say so
        # (an exception costs more than the rest of this read).
        starve = not (incoming.pending or incoming.eof or sslobj.pending() or self._ended)
        while True:
            if starve and not self._feed(timeout):
                return None
            try:
                data: bytes = sslobj.read(size)
            except ssl.SSLWantReadError:
                starve = True
                continue
            except ssl.SSLError as exc:
                self._ended = True
                return self._end_of_stream(exc)
            if not data:  # close_notify (the C read reports it so)
                self._ended = True
                return data
            if self._out.pending and self._unsent is None:  # a TLS 1.3 KeyUpdate's answer
                # A send that resumes an unfinished flush of it has accepted nothing.
                # (With a send's own ciphertext still unsent, that send's flush
                # takes this along.)
                self._accepted = 0
                self._flush(timeout)
            if len(data) < size and (incoming.pending or self._unread is not None or sslobj.pending()):
                return self._more(data, size)
            return data

    def recv_now(self, size: int) -> bytes | None:
        """What has arrived, up to ``size`` bytes, never waiting nor switching
        greenlets; None when nothing is ready, b'' at the end of the stream.  (A TLS
        1.3 KeyUpdate's answer, if one is owed, goes out with the next send.)"""
        sslobj = self._live()
        pieces: list[bytes] = []
        total = 0
        while total < size:
            try:
                data: bytes = sslobj.read(size - total)
            except ssl.SSLWantReadError:
                if self._unread is None:
                    if self._in.eof:
                        break
                    if self._plain:
                        try:
                            raw = self._raw._sock.recv(_RECV_SIZE)
                        except BlockingIOError:
                            break
                    else:
                        raw = _sockio.recv_now(self._raw, _RECV_SIZE)  # type: ignore[assignment]
                        if raw is None:
                            break
                    if not raw:
                        self._in.write_eof()
                        continue
                    self._unread = memoryview(raw)
                self._feed(None)  # from what we hold: never waits
                continue
            except ssl.SSLError as exc:
                if pieces:
                    break  # reported again to the next read, after these bytes
                self._ended = True
                return self._end_of_stream(exc)
            if not data:  # close_notify
                if pieces:
                    break
                self._ended = True
                return data
            pieces.append(data)
            total += len(data)
        return b"".join(pieces) if pieces else None

    def _more(self, first: bytes, size: int) -> bytes:
        """One read returns one record: take the others that arrived with it."""
        sslobj = self._sslobj
        pieces = [first]
        total = len(first)
        while total < size:
            try:
                data = sslobj.read(size - total)
            except ssl.SSLWantReadError:
                if self._unread is None:
                    break  # the rest is still in the kernel, or on its way
                self._feed(None)  # from what we hold: never waits
                continue
            except ssl.SSLError:
                # The end or an error: OpenSSL reports it again to the next read,
                # after these bytes have been delivered.
                self._ended = True
                break
            if not data:  # close_notify: OpenSSL has taken it from the BIO
                self._ended = True
                break
            pieces.append(data)
            total += len(data)
        return b"".join(pieces)

    def _feed(self, timeout: float | None) -> bool:
        """Give OpenSSL its next slice of ciphertext, from the kernel if we hold none;
        False when ``timeout`` passed first."""
        unread = self._unread
        if unread is None:
            if self._plain:
                data = _sockio.recv_tcp(self._raw, _RECV_SIZE, timeout)
            elif timeout == 0.0:  # a look that must not yield (the pool's liveness check)
                data = _sockio.recv_now(self._raw, _RECV_SIZE)
            else:
                data = _sockio.recv(self._raw, _RECV_SIZE, timeout)
            if data is None:
                return False
            if len(data) <= _BIO_SLICE:
                if data:
                    self._in.write(data)
                else:
                    self._in.write_eof()
                return True
            unread = memoryview(data)
        self._in.write(unread[:_BIO_SLICE])
        self._unread = unread[_BIO_SLICE:] if len(unread) > _BIO_SLICE else None
        return True

    def _end_of_stream(self, exc: ssl.SSLError) -> bytes:
        # A TCP close without close_notify ends the stream too, as gevent and the
        # stdlib report it by default: the HTTP framing tells a truncated body.
        if isinstance(exc, (ssl.SSLZeroReturnError, ssl.SSLEOFError)):
            return b""
        raise exc

    def send_within(self, data: bytes | memoryview, timeout: float | None) -> int | None:
        """Send some of ``data``; the count sent, or None when ``timeout`` passed first.

        After a None, the caller offers the same bytes again (as with a plain
        socket): the ciphertext already made for them is what goes out.
        """
        if self._unsent is None:
            sslobj = self._live()
            out = self._out
            if len(data) <= _BIO_SLICE:
                self._accepted = sslobj.write(data)
                records = [out.read()]
            else:
                view = memoryview(data)[:_SEND_BATCH]
                records = []
                for start in range(0, len(view), _BIO_SLICE):
                    sslobj.write(view[start:start + _BIO_SLICE])
                    records.append(out.read())
                self._accepted = len(view)
            try:
                # One system call for them all (through TLS below: _flush sends them).
                sent = self._raw._sock.sendmsg(records) if self._plain else 0
            except BlockingIOError:
                sent = 0
            if sent == sum(map(len, records)):
                return self._accepted  # all of it, at once: the usual case
            self._unsent = memoryview(b"".join(records))[sent:]
        if not self._flush(timeout):
            return None
        return self._accepted

    def _flush(self, timeout: float | None) -> bool:
        """Send the ciphertext OpenSSL made; False when ``timeout`` passed first."""
        raw = self._raw
        send = _sockio.send_tcp if self._plain else _sockio.send
        while True:
            unsent = self._unsent
            if unsent is None:
                if not self._out.pending:
                    return True
                unsent = memoryview(self._out.read())
            while unsent:
                sent = send(raw, unsent, timeout)
                if sent is None:
                    self._unsent = unsent
                    return False
                unsent = unsent[sent:]
            self._unsent = None

    def _live(self) -> Any:
        sslobj = self._sslobj
        if sslobj is None:
            raise OSError(errno.EBADF, "read or write on a closed TLS socket")
        return sslobj

    # ------------------------------------------------- the socket interface

    def settimeout(self, timeout: float | None) -> None:
        self._timeout = timeout

    def gettimeout(self) -> float | None:
        return self._timeout

    def setblocking(self, flag: bool) -> None:
        self._timeout = None if flag else 0.0

    @property
    def timeout(self) -> float | None:
        return self._timeout

    def recv(self, size: int, flags: int = 0) -> bytes:
        if flags:
            raise ValueError("non-zero flags not allowed in calls to recv() on a TLS socket")
        data = self.recv_within(size, self._timeout)
        if data is None:
            raise self._timed_out()
        return data

    def recv_into(self, buffer: Any, nbytes: int = 0, flags: int = 0) -> int:
        view = memoryview(buffer).cast("B")
        data = self.recv(nbytes or len(view), flags)
        view[:len(data)] = data
        return len(data)

    read = recv

    def send(self, data: bytes | memoryview, flags: int = 0) -> int:
        if flags:
            raise ValueError("non-zero flags not allowed in calls to send() on a TLS socket")
        sent = self.send_within(data, self._timeout)
        if sent is None:
            raise self._timed_out()
        return sent

    write = send

    def sendall(self, data: bytes | memoryview, flags: int = 0) -> None:
        view = memoryview(data).cast("B")
        while view:
            view = view[self.send(view, flags):]

    def makefile(self, mode: str = "r", buffering: int | None = None, *, encoding: str | None = None,
                 errors: str | None = None, newline: str | None = None) -> Any:
        """A file over this socket's TLS stream, as ``socket.makefile`` makes one."""
        if not set(mode) <= {"r", "w", "b"}:
            raise ValueError(f"invalid mode {mode!r} (only r, w, b allowed)")
        reading, writing = "r" in mode, "w" in mode
        raw = socket.SocketIO(self, ("r" if reading else "") + ("w" if writing else ""))  # type: ignore[arg-type]
        if buffering is None or buffering < 0:
            buffering = io.DEFAULT_BUFFER_SIZE
        if buffering == 0:
            if "b" not in mode:
                raise ValueError("unbuffered streams must be binary")
            return raw
        buffered: Any
        if reading and writing:
            buffered = io.BufferedRWPair(raw, raw, buffering)
        elif reading:
            buffered = io.BufferedReader(raw, buffering)
        else:
            buffered = io.BufferedWriter(raw, buffering)
        if "b" in mode:
            return buffered
        text = io.TextIOWrapper(buffered, encoding, errors, newline)
        text.mode = mode  # type: ignore[misc]
        return text

    def _decref_socketios(self) -> None:
        pass  # SocketIO's close(): the file does not own the socket

    def _timed_out(self) -> OSError:
        if self._timeout == 0.0:
            return ssl.SSLWantReadError("The operation did not complete")
        return socket.timeout("timed out")

    def pending(self) -> int:
        return self._sslobj.pending() if self._sslobj is not None else 0

    def shutdown(self, how: int) -> None:
        self._raw.shutdown(how)

    def close(self) -> None:
        # As gevent's SSLSocket: no close_notify, and the TLS state goes with the socket.
        self._sslobj = self._tls = None
        self._unsent = None
        self._raw.close()

    def unwrap(self) -> Any:
        """Send close_notify and give back the TCP socket."""
        sslobj = self._live()
        try:
            sslobj.shutdown()
        except ssl.SSLWantReadError:
            pass  # the peer's close_notify need not be awaited
        self._flush_or_raise()
        self._sslobj = self._tls = None
        return self._raw

    # ------------------------------------------------------- TLS accessors

    @property
    def context(self) -> ssl.SSLContext | None:
        return self._tls.context if self._tls is not None else None

    @property
    def server_side(self) -> bool:
        return bool(self._tls is not None and self._tls.server_side)

    @property
    def server_hostname(self) -> str | None:
        return self._tls.server_hostname if self._tls is not None else None

    @property
    def session(self) -> ssl.SSLSession | None:
        return self._tls.session if self._tls is not None else None

    @property
    def session_reused(self) -> bool:
        return bool(self._tls is not None and self._tls.session_reused)

    @property
    def greenhttps_servername(self) -> str | None:
        """The SNI name the server's callback noted on the SSLObject (``_server._record_servername``)."""
        return getattr(self._tls, "greenhttps_servername", None)

    def getpeercert(self, binary_form: bool = False) -> Any:
        if self._tls is None:
            raise ValueError("getpeercert() on a closed TLS socket")
        return self._tls.getpeercert(binary_form)

    def cipher(self) -> tuple[str, str, int] | None:
        return self._tls.cipher() if self._tls is not None else None

    def shared_ciphers(self) -> list[tuple[str, str, int]] | None:
        return self._tls.shared_ciphers() if self._tls is not None else None

    def version(self) -> str | None:
        return self._tls.version() if self._tls is not None else None

    def selected_alpn_protocol(self) -> str | None:
        return self._tls.selected_alpn_protocol() if self._tls is not None else None

    def get_channel_binding(self, cb_type: str = "tls-unique") -> bytes | None:
        return self._tls.get_channel_binding(cb_type) if self._tls is not None else None

    def compression(self) -> str | None:
        return self._tls.compression() if self._tls is not None else None

    def verify_client_post_handshake(self) -> None:
        self._live().verify_client_post_handshake()

    def get_unverified_chain(self) -> list[bytes]:
        """The certificates the peer sent, leaf first, DER (``ssl.SSLSocket``'s, 3.13)."""
        chain = self._live().get_unverified_chain()
        return [cert.public_bytes(_ssl.ENCODING_DER) for cert in chain] if chain else []

    def get_verified_chain(self) -> list[bytes]:
        """The chain OpenSSL verified, leaf to root, DER (``ssl.SSLSocket``'s, 3.13)."""
        chain = self._live().get_verified_chain()
        return [cert.public_bytes(_ssl.ENCODING_DER) for cert in chain] if chain else []

    def __getattr__(self, name: str) -> Any:
        # fileno, getpeername, getsockname, setsockopt, family...: the TCP socket's
        # (through the layers below); never a method that would move bytes around TLS,
        # nor, over TLS, a TLS question (it would be answered about the wrong peer).
        if name in _AROUND_TLS:
            raise AttributeError(f"{name}() is not available on a TLS socket")
        raw = self._raw
        if name in _TLS_NAMES and not self._plain and hasattr(raw, "_sslobj"):
            raise AttributeError(f"'BioSSLSocket' object has no attribute {name!r} (a TLS attribute: the "
                                 "layer below is another TLS connection's, a proxy's, not this one's)")
        return getattr(raw, name)

    def __repr__(self) -> str:
        state = "closed" if self._sslobj is None else ("server" if self.server_side else "client")
        return f"<BioSSLSocket {state} {self._raw!r}>"
