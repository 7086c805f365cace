"""OpenSSL's read-ahead on socket-BIO TLS sockets, through ctypes; pure (no network I/O).

Why: on a socket BIO, OpenSSL reads a TLS record in two ``read()`` calls, its 5-byte
header, then the rest, so every request a server reads and every response a client
reads costs two system calls.  With read-ahead (``SSL_set_read_ahead``) OpenSSL reads
whatever the kernel holds in one call, into the 16 KiB read buffer it has anyway.
Python's ``ssl`` module does not expose it, so it is switched on here, per ``SSL``
object, right after the wrap (a user's ``ssl_context`` is never changed).

The price: OpenSSL may now hold bytes it has read but not yet decrypted -- a whole
next record, a pipelined request, a ``close_notify`` -- while the descriptor is not
readable, and ``SSLSocket.pending()`` (``SSL_pending``) does not count them.  So
every "is anything there?" of the package asks :func:`buffered` (``SSL_has_pending``,
processed or not) before it looks at the descriptor; a socket handed over to user
code (Upgrade, CONNECT) has read-ahead switched off again and what OpenSSL held
taken out with the head (``Wire.detach``).

How the ``SSL*`` is found: CPython's ``_ssl._SSLSocket`` object is ``PyObject_HEAD``,
``PyObject *Socket``, ``SSL *ssl``...; its ``_ssl._SSLContext`` is ``PyObject_HEAD``,
``SSL_CTX *ctx``.  The head's size is ``object.__basicsize__`` (right for
free-threaded builds too).  Nothing is written before the layout is proven: the
libssl loaded is the very one ``_ssl`` uses (found in ``/proc/self/maps``; loading
that path again returns the loaded handle) and reports ``ssl.OPENSSL_VERSION_NUMBER``;
the context's pointer must give back ``SSLContext.options`` through
``SSL_CTX_get_options``; the socket's ``SSL*`` must belong to that ``SSL_CTX``; and
read-ahead must read back as set.  Anything else (not CPython, not Linux, OpenSSL
linked statically, another layout) leaves the socket as Python made it, silently:
two reads per record, as before.  ``GREENHTTPS_TLS_READ_AHEAD=0`` leaves read-ahead
off but keeps the proven ``SSL*`` for :func:`buffered`.
"""

from __future__ import annotations

import ctypes
import os
import ssl
import sys
import weakref
from typing import Any

from gevent.ssl import SSLSocket as GeventSSLSocket

__all__ = ["READ_AHEAD", "buffered", "enable_read_ahead", "disable_read_ahead", "held_ahead"]

#: ``GREENHTTPS_TLS_READ_AHEAD=0`` turns read-ahead off (the default is on).
READ_AHEAD = os.environ.get("GREENHTTPS_TLS_READ_AHEAD", "") != "0"

#: The attribute of a gevent ``SSLSocket`` that holds its proven ``SSL*`` (an int);
#: its presence is what tells the checks below to use it.  (Spelled out in them:
#: a plain attribute read is half the cost of ``__dict__.get``.)
ATTR = "_greenhttps_ssl"

_HEAD = object.__basicsize__
_PTR = ctypes.sizeof(ctypes.c_void_p)


class _Lib:
    """The libssl functions used, bound to the library ``_ssl`` itself loaded."""

    def __init__(self, path: str) -> None:
        # PyDLL: the calls keep the GIL.  Each is a few loads in memory that never
        # blocks, and releasing and taking the GIL back cost more than the call.
        lib = ctypes.PyDLL(path)
        vp, c_int = ctypes.c_void_p, ctypes.c_int

        def fn(name: str, restype: Any, *argtypes: Any) -> Any:
            f = getattr(lib, name)
            f.restype, f.argtypes = restype, list(argtypes)
            return f

        self.version_num = fn("OpenSSL_version_num", ctypes.c_ulong)
        self.ctx_get_options = fn("SSL_CTX_get_options", ctypes.c_uint64, vp)
        self.get_ssl_ctx = fn("SSL_get_SSL_CTX", vp, vp)
        self.set_read_ahead = fn("SSL_set_read_ahead", None, vp, c_int)
        self.get_read_ahead = fn("SSL_get_read_ahead", c_int, vp)
        self.has_pending = fn("SSL_has_pending", c_int, vp)


def _libssl_path() -> str | None:
    """The path of the libssl mapped into this process (``_ssl``'s), if exactly one."""
    try:
        import _ssl
    except ImportError:
        return None
    paths = set()
    try:
        with open("/proc/self/maps") as maps:
            for line in maps:
                path = line.rstrip("\n").split(None, 5)[-1] if line.count(" ") >= 5 else ""
                if "/libssl.so" in path:
                    paths.add(path)
    except OSError:
        return None
    if len(paths) != 1 or not getattr(_ssl, "__file__", None):
        return None  # none (statically linked), or two: which one _ssl uses is unknown
    return paths.pop()


def _load() -> _Lib | None:
    if sys.implementation.name != "cpython" or not sys.platform.startswith("linux"):
        return None
    # Only the builds whose layout has been read and checked (3.10 to 3.13, release
    # builds with the GIL): the proof below dereferences the word it reads, so a
    # different layout could crash the process before the proof could fail.
    if not (3, 10) <= sys.version_info[:2] <= (3, 13) or hasattr(sys, "gettotalrefcount"):
        return None
    import sysconfig

    if sysconfig.get_config_var("Py_GIL_DISABLED"):
        return None
    # The layout checked against the types' own sizes: both objects are at least
    # as large as the fields read (reads stay inside them whatever the layout).
    import _ssl

    context_type, socket_type = getattr(_ssl, "_SSLContext", None), getattr(_ssl, "_SSLSocket", None)
    if context_type is None or socket_type is None:
        return None
    if context_type.__basicsize__ < _HEAD + _PTR or socket_type.__basicsize__ < _HEAD + 2 * _PTR:
        return None
    path = _libssl_path()
    if path is None:
        return None
    try:
        lib = _Lib(path)
    except (OSError, AttributeError):
        return None
    if lib.version_num() != ssl.OPENSSL_VERSION_NUMBER:
        return None
    return lib


_lib: Any = None  # None: not tried yet; False: unavailable; else a _Lib
#: SSL_has_pending, once the library is loaded (no socket has a pointer before).
_has_pending: Any = None
#: Contexts whose pointer has been checked -> their SSL_CTX*: held weakly, so that a
#: context nobody else holds goes (a strong table kept up to 64 alive).
_checked: weakref.WeakKeyDictionary[Any, int] = weakref.WeakKeyDictionary()


def _library() -> Any:
    global _lib, _has_pending
    if _lib is None:
        _lib = _load() or False
        if _lib:
            _has_pending = _lib.has_pending
    return _lib


def _word(address: int) -> int:
    return ctypes.c_void_p.from_address(address).value or 0


def _ctx_pointer(lib: _Lib, context: ssl.SSLContext) -> int | None:
    try:
        seen = _checked.get(context)
    except TypeError:  # a context class without weak references: proven each time
        seen = None
    if seen is not None:
        return seen
    pointer = _word(id(context) + _HEAD)
    if not pointer or lib.ctx_get_options(pointer) != int(context.options):
        return None
    try:
        _checked[context] = pointer
    except TypeError:
        pass
    return pointer


def enable_read_ahead(sock: Any) -> bool:
    """Switch read-ahead on for gevent ``SSLSocket`` ``sock`` (wrapped, not yet
    handshaken).  True if it is on; False if it is off (``GREENHTTPS_TLS_READ_AHEAD=0``;
    the ``SSL*`` is still kept for :func:`buffered`) or cannot be proven safe here
    (the socket untouched)."""
    lib = _library()
    sslobj = getattr(sock, "_sslobj", None)
    if not lib or sslobj is None or type(sslobj).__name__ != "_SSLSocket":
        return False
    context = sslobj.context
    if not isinstance(context, ssl.SSLContext):
        return False
    ctx_pointer = _ctx_pointer(lib, context)
    if ctx_pointer is None:
        return False
    pointer = _word(id(sslobj) + _HEAD + _PTR)
    if not pointer or lib.get_ssl_ctx(pointer) != ctx_pointer:
        return False
    if READ_AHEAD:
        lib.set_read_ahead(pointer, 1)
        if lib.get_read_ahead(pointer) != 1:
            lib.set_read_ahead(pointer, 0)
            return False
    # Kept with read-ahead off too: SSL_has_pending sees a partial record that
    # SSL_pending does not (OpenSSL reads a record's header, then what it can of
    # the rest, even without read-ahead).
    setattr(sock, ATTR, pointer)
    return READ_AHEAD


def disable_read_ahead(sock: Any) -> None:
    """Switch read-ahead off again (a socket handed to user code, whose reads and
    ``select()`` calls may trust ``pending()`` and the descriptor).  Bytes OpenSSL
    holds already stay readable with ``recv``; callers take them out first."""
    pointer = sock.__dict__.pop(ATTR, None)
    if pointer is not None and sock._sslobj is not None:
        _lib.set_read_ahead(pointer, 0)


# The two checks below run once or twice per request: each attribute lookup and
# call counts (a ctypes call is ~2,000 instructions, SSL_pending() ~600).

def buffered(sock: Any) -> bool:
    """Does OpenSSL hold bytes of gevent ``SSLSocket`` ``sock`` that a read would
    return or process (decrypted or not) without the kernel?  True too once the
    socket is closed (a read would not wait: it raises).  Never reads."""
    sslobj = sock._sslobj
    if sslobj is None:
        return True
    try:
        pointer = sock._greenhttps_ssl
    except (AttributeError, OSError):
        # Not proven here: what is decrypted.  (A partial record it holds is missed;
        # its rest is still to come from the kernel.)
        return sslobj.pending() != 0  # type: ignore[no-any-return]
    return _has_pending(pointer) != 0  # type: ignore[no-any-return]


def held_ahead(sock: Any) -> bool | None:
    """For a socket whose read-ahead is on (any socket may be asked): does OpenSSL
    hold bytes of it -- True also once it is closed.  None when read-ahead is not on
    for it; then its last read did not take all the kernel had, and this says
    nothing about what the kernel still holds."""
    if not READ_AHEAD or not isinstance(sock, GeventSSLSocket):
        return None
    try:
        pointer = sock._greenhttps_ssl  # type: ignore[attr-defined]
    except (AttributeError, OSError):  # (a closed gevent socket answers EBADF)
        return None
    if sock._sslobj is None:  # type: ignore[attr-defined]
        return True
    return _has_pending(pointer) != 0  # type: ignore[no-any-return]
