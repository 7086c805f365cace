"""Errors raised by greenhttps, each with a Node.js ``code`` string.

Catch ``greenhttps.Error`` for everything; the tree below says what else each class
is, so code written for the standard library keeps working::

    Error (Exception)                          .code, e.g. 'ERR_INVALID_CHAR'
    ├── InvalidArgumentError (ValueError)      bad input from the caller; nothing was sent
    │   ├── InvalidProtocolError (and TypeError)   ERR_INVALID_PROTOCOL
    │   └── InvalidURLError                    ERR_INVALID_URL, ERR_UNESCAPED_CHARACTERS
    ├── HeadersSentError                       ERR_HTTP_HEADERS_SENT, ERR_STREAM_WRITE_AFTER_END
    ├── ProtocolError                          the peer broke HTTP/1.1 (HPE_* codes);
    │                                          .status_hint is the reply a server owes it
    ├── ContentDecodingError                   fetch(): a body that does not decode
    │   └── DecodedSizeError                   ...or decodes past the size cap (a bomb)
    ├── RedirectError                          fetch(): a redirect refused or too many
    └── NetworkError (OSError)                 the connection failed
        ├── ConnectionRefusedError (builtin's too)   ECONNREFUSED
        ├── ConnectionResetError (builtin's too)     ECONNRESET ("socket hang up"), EPIPE
        ├── TimeoutError (builtin's too)             ETIMEDOUT
        │   └── IdleTimeout                          the socket's idle timer ran out
        ├── NameResolutionError                      ENOTFOUND
        ├── AddressInUseError                        EADDRINUSE
        ├── ProxyError                               a proxy refused the tunnel (407...)
        └── TLSError (ssl.SSLError)                  a handshake failed
            └── CertificateError (ssl.SSLCertVerificationError)
                                                     DEPTH_ZERO_SELF_SIGNED_CERT,
                                                     ERR_TLS_CERT_ALTNAME_INVALID, ...

Translation from ``socket``/``ssl``/``h11`` errors happens in one place,
:func:`from_os_error` (used by the wire layer and the client), so every code path
reports the same class and code for the same failure.
"""

from __future__ import annotations

import builtins
import errno
import re
import socket
import ssl

__all__ = [
    "Error",
    "InvalidArgumentError",
    "InvalidProtocolError",
    "InvalidURLError",
    "HeadersSentError",
    "ProtocolError",
    "NetworkError",
    "ConnectionRefusedError",
    "ConnectionResetError",
    "TimeoutError",
    "IdleTimeout",
    "NameResolutionError",
    "AddressInUseError",
    "TLSError",
    "CertificateError",
    "ContentDecodingError",
    "DecodedSizeError",
    "RedirectError",
    "ProxyError",
    "from_os_error",
    "verify_code_name",
]


class Error(Exception):
    """Base class of every greenhttps error. ``code`` is Node's error code.

    ``Error(message='', code=None, **attrs)``: ``message`` is the text (Node's
    ``err.message``), ``code`` overrides the class's Node code (``err.code``), and each
    of ``attrs`` becomes an attribute of the error (as Node sets ``err.reason``...).
    """

    code: str = "ERR_GREENHTTPS"

    def __init__(self, message: str = "", code: str | None = None, **attrs: object) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code
        for name, value in attrs.items():
            setattr(self, name, value)

    @property
    def message(self) -> str:
        """The message without the code (Node's ``err.message``)."""
        return str(self.args[0]) if self.args else ""

    def __str__(self) -> str:
        message = self.message
        return f"{message} [{self.code}]" if message else self.code

    def __reduce__(self) -> tuple[object, ...]:
        # The default (type, args, __dict__) loses a per-instance code when args are
        # rebuilt (``OSError``'s reduce), and recomputes NetworkError.errno from the
        # class default; rebuilding through __init__ with the code keeps both.
        state = {k: v for k, v in self.__dict__.items() if k != "code"}
        return (type(self), (self.message, self.code), state or None)


class InvalidArgumentError(Error, ValueError):
    """The caller passed something that cannot go on the wire (Node's ERR_INVALID_*)."""

    code = "ERR_INVALID_ARG_VALUE"


class InvalidProtocolError(InvalidArgumentError, TypeError):
    """A URL or option names a protocol this module does not speak (Node's ERR_INVALID_PROTOCOL)."""

    code = "ERR_INVALID_PROTOCOL"


class InvalidURLError(InvalidArgumentError):
    """A URL or request path that cannot be sent as given (Node's ERR_INVALID_URL)."""

    code = "ERR_INVALID_URL"


class HeadersSentError(Error):
    """The head (or the whole message) has gone out already (Node's ERR_HTTP_HEADERS_SENT)."""

    code = "ERR_HTTP_HEADERS_SENT"


class ProtocolError(Error):
    """The peer sent something that is not valid HTTP/1.1 (Node's llhttp ``HPE_*`` codes).

    ``status_hint`` is the status a server replies with (400, 413, 414, 431, 501...).
    For a malformed head, as Node's: ``raw_packet`` (alias ``rawPacket``) is the last
    piece of bytes received, and ``bytes_parsed`` (``bytesParsed``) how far into it the
    parser got (the offending byte); None when the error did not come from bytes.
    """

    code = "HPE_INVALID"
    status_hint: int = 400
    #: Offset of the offending byte in the bytes the parser held (internal).
    position: int | None = None
    bytes_parsed: int | None = None
    raw_packet: bytes | None = None

    @property
    def bytesParsed(self) -> int | None:  # noqa: N802 - Node's name
        """Node's name for :attr:`bytes_parsed`."""
        return self.bytes_parsed

    @property
    def rawPacket(self) -> bytes | None:  # noqa: N802 - Node's name
        """Node's name for :attr:`raw_packet`."""
        return self.raw_packet


class NetworkError(Error, OSError):
    """A connection could not be made or was lost (Node's system errors, ``E*`` codes).

    Takes :class:`Error`'s ``message``, ``code`` and ``**attrs``; also an ``OSError``,
    with ``errno`` the number of the Node code (``ECONNREFUSED`` -> 111) or None.
    """

    code = "ECONNRESET"

    def __init__(self, message: str = "", code: str | None = None, **attrs: object) -> None:
        Error.__init__(self, message, code, **attrs)
        # Keep OSError's fields meaningful for code that inspects them: the errno number
        # of the Node code when it is one (ECONNREFUSED -> 111), else None.
        number = getattr(errno, self.code, None) if self.code.startswith("E") else None
        self.errno = number if isinstance(number, int) else None
        self.strerror = message or None

    def __str__(self) -> str:
        return Error.__str__(self)


class ConnectionRefusedError(NetworkError, builtins.ConnectionRefusedError):
    """Nothing listens at the address (Node's ECONNREFUSED)."""

    code = "ECONNREFUSED"


class ConnectionResetError(NetworkError, builtins.ConnectionResetError):
    """The peer closed or reset the connection (Node's ECONNRESET "socket hang up", EPIPE)."""

    code = "ECONNRESET"


class TimeoutError(NetworkError, builtins.TimeoutError):
    """A connect, handshake or read took too long (Node's ETIMEDOUT)."""

    code = "ETIMEDOUT"


class IdleTimeout(TimeoutError):
    """The socket was idle for longer than its timeout and nobody wanted to wait
    (Node's ``socket.setTimeout`` with no ``'timeout'`` listener; code ETIMEDOUT)."""


class NameResolutionError(NetworkError):
    """The host name did not resolve (Node's ENOTFOUND)."""

    code = "ENOTFOUND"


class AddressInUseError(NetworkError):
    """``listen()`` on an address already taken (Node's EADDRINUSE)."""

    code = "EADDRINUSE"


class TLSError(NetworkError, ssl.SSLError):
    """The TLS handshake failed (protocol, cipher, or certificate; Node's ERR_SSL_* codes)."""

    code = "ERR_SSL_HANDSHAKE_FAILURE"
    # ssl.SSLError's fields, present (None) even when we build the error ourselves;
    # typeshed types them as always set, hence the ignores.
    library = None  # type: ignore[assignment]
    reason = None  # type: ignore[assignment]


class CertificateError(TLSError, ssl.SSLCertVerificationError):
    """The peer's certificate did not verify; ``code`` is Node's name for why."""

    code = "UNABLE_TO_VERIFY_LEAF_SIGNATURE"
    # ssl.SSLCertVerificationError's fields: OpenSSL's X509_V_ERR_* number and text
    # (None when the failure was found by our own checks, not OpenSSL's).
    verify_code = None  # type: ignore[assignment]
    verify_message = None  # type: ignore[assignment]



# --------------------------------------------------------- fetch() (Python only)


class ContentDecodingError(Error):
    """A response body whose ``Content-Encoding`` cannot be decoded: corrupt data, or
    a coding this installation has no decoder for (``fetch(..., decompress=False)``
    gives the raw bytes).  Code ``ERR_CONTENT_DECODING_FAILED`` (Chrome's name; Node's
    fetch rejects with a TypeError whose cause is the zlib error)."""

    code = "ERR_CONTENT_DECODING_FAILED"


class DecodedSizeError(ContentDecodingError):
    """A body decoded past the caller's cap (``max_decoded_size``): a decompression
    bomb, or a body larger than the caller is prepared to hold.  ``limit`` is the cap.
    (Node's fetch has no such cap; undici's ``maxResponseSize`` is the nearest.)"""

    code = "ERR_GREENHTTPS_DECODED_TOO_LARGE"
    limit: int | None = None


class RedirectError(Error):
    """``fetch()`` would not follow a redirect: ``redirect='error'``
    (``ERR_GREENHTTPS_REDIRECT``), more than ``max_redirects``
    (``ERR_TOO_MANY_REDIRECTS``), an https: page sending the request to plain http:
    (``ERR_UNSAFE_REDIRECT``), or a Location that is no http(s) URL
    (``ERR_INVALID_REDIRECT``).  ``url`` is the URL of the redirecting response,
    ``location`` where it pointed.  Node's fetch rejects the same cases with a
    TypeError ("redirect count exceeded", "unexpected redirect")."""

    code = "ERR_GREENHTTPS_REDIRECT"
    url: str | None = None
    location: str | None = None


class ProxyError(NetworkError):
    """A proxy refused the tunnel: an HTTP proxy answered ``CONNECT`` with a status
    other than 2xx (``status``), or a SOCKS5 one answered its CONNECT with a reply
    code other than 0 (``socks_reply``, RFC 1928 §6: 1 general failure, 2 not
    allowed, 3 network unreachable, 4 host unreachable, 5 connection refused...) or
    refused the user name and password; ``proxy`` is the proxy (without
    credentials).  Credentials missing or refused (HTTP 407, SOCKS5 authentication)
    have code ``ERR_PROXY_AUTH_REQUIRED``, others ``ERR_PROXY_TUNNEL``.  (Node 20's
    https has no proxy; undici's ProxyAgent rejects the same way.)"""

    code = "ERR_PROXY_TUNNEL"
    status: int | None = None
    socks_reply: int | None = None
    proxy: str | None = None


# OpenSSL's X509_V_ERR_* numbers -> the names Node reports for them (its names drop
# the X509_V_ERR_ prefix).  A handshake that fails with 20 for a lone leaf is told
# apart from the peer's chain by greenhttps._verify.handshake_error (Node says 21).
_VERIFY_CODES = {
    2: "UNABLE_TO_GET_ISSUER_CERT",
    3: "UNABLE_TO_GET_CRL",
    4: "UNABLE_TO_DECRYPT_CERT_SIGNATURE",
    6: "UNABLE_TO_DECODE_ISSUER_PUBLIC_KEY",
    7: "CERT_SIGNATURE_FAILURE",
    8: "CRL_SIGNATURE_FAILURE",
    9: "CERT_NOT_YET_VALID",
    10: "CERT_HAS_EXPIRED",
    11: "CRL_NOT_YET_VALID",
    12: "CRL_HAS_EXPIRED",
    13: "ERROR_IN_CERT_NOT_BEFORE_FIELD",
    14: "ERROR_IN_CERT_NOT_AFTER_FIELD",
    18: "DEPTH_ZERO_SELF_SIGNED_CERT",
    19: "SELF_SIGNED_CERT_IN_CHAIN",
    20: "UNABLE_TO_GET_ISSUER_CERT_LOCALLY",
    21: "UNABLE_TO_VERIFY_LEAF_SIGNATURE",
    22: "CERT_CHAIN_TOO_LONG",
    23: "CERT_REVOKED",
    24: "INVALID_CA",
    25: "PATH_LENGTH_EXCEEDED",
    26: "INVALID_PURPOSE",
    27: "CERT_UNTRUSTED",
    28: "CERT_REJECTED",
    62: "ERR_TLS_CERT_ALTNAME_INVALID",  # X509_V_ERR_HOSTNAME_MISMATCH
    64: "ERR_TLS_CERT_ALTNAME_INVALID",  # X509_V_ERR_IP_ADDRESS_MISMATCH
}


def verify_code_name(verify_code: int) -> str:
    """Node's code for an OpenSSL certificate verification result.

    ``verify_code`` is OpenSSL's ``X509_V_ERR_*`` number (``ssl.SSLCertVerificationError
    .verify_code``); an unknown number gives ``'CERT_VERIFY_FAILED'``.  Never raises.
    """
    return _VERIFY_CODES.get(verify_code, "CERT_VERIFY_FAILED")


_ERRNO_CLASSES: dict[int, type[NetworkError]] = {
    errno.ECONNREFUSED: ConnectionRefusedError,
    errno.ECONNRESET: ConnectionResetError,
    errno.EPIPE: ConnectionResetError,
    errno.ECONNABORTED: ConnectionResetError,
    errno.ETIMEDOUT: TimeoutError,
    errno.EADDRINUSE: AddressInUseError,
}


def from_os_error(exc: BaseException, *, during: str = "") -> Error:
    """Translate a ``socket``/``ssl`` exception into the matching greenhttps error.

    ``exc`` is the exception caught; the result is returned, not raised.  ``during`` is a short phrase added to the message ("connect", "handshake").
    A greenhttps error is returned unchanged.
    """
    if isinstance(exc, Error):
        return exc
    suffix = f" during {during}" if during else ""
    if isinstance(exc, ssl.SSLCertVerificationError):
        # The attributes exist on errors raised by _ssl, not on ones built in Python.
        verify_code = getattr(exc, "verify_code", None)
        verify_message = getattr(exc, "verify_message", None)
        text = verify_message or getattr(exc, "reason", None) or "certificate verify failed"
        code = verify_code_name(verify_code) if verify_code is not None else None
        return CertificateError(
            f"{text}{suffix}", code, verify_code=verify_code, verify_message=verify_message
        )
    if isinstance(exc, ssl.SSLError):
        if isinstance(exc, (ssl.SSLEOFError, ssl.SSLZeroReturnError)):
            return ConnectionResetError(f"socket hang up{suffix}", "ECONNRESET")
        reason = getattr(exc, "reason", None)
        # OpenSSL reasons are WORDS_LIKE_THIS, but Python makes some of its own up
        # ("closed before TLS handshake with data in recv buffer."): a code is a token.
        code = "ERR_SSL_" + re.sub(r"[^A-Za-z0-9]+", "_", reason).strip("_").upper() if reason else None
        err = TLSError(f"{reason or exc}{suffix}", code)
        err.library, err.reason = getattr(exc, "library", None), reason
        return err
    if isinstance(exc, socket.gaierror):
        return NameResolutionError(f"getaddrinfo ENOTFOUND: {exc.strerror}{suffix}")
    if isinstance(exc, (socket.timeout, builtins.TimeoutError)):
        return TimeoutError(f"{exc.strerror or 'timed out'}{suffix}")
    if isinstance(exc, OSError):
        # No errno (an OSError built by hand): report a reset, with the class to match.
        number = exc.errno if isinstance(exc.errno, int) and exc.errno else errno.ECONNRESET
        cls = _ERRNO_CLASSES.get(number, NetworkError)
        code = errno.errorcode.get(number, "ECONNRESET")
        return cls(f"{exc.strerror or exc}{suffix}", code)
    return NetworkError(f"{exc!r}{suffix}")
