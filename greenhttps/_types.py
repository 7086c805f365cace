"""The options as ``TypedDict`` s, so that a type checker catches a mistake at once.

``greenhttps.get(url, timeout="10s")`` or ``Agent(max_sokets=10)`` fail at run time
(``_options.merge_options`` raises ``TypeError`` for an unknown name); with these
types mypy and pyright say so before the program runs.  The public functions take
them as ``**kwargs: Unpack[RequestOptions]`` (PEP 692) and as the ``options`` dict,
so both of Node's shapes are checked: ``request(url, {"hostname": ...})`` and
``request(url, hostname=...)``.

Each option is here in both of its spellings (``keep_alive`` and ``keepAlive``), as
``merge_options`` accepts both.  The keys are the option tables of ``_options``
(``SERVER_OPTIONS``, ``REQUEST_OPTIONS``, ``AGENT_OPTIONS``) and nothing else:
``tests/test_typing.py`` compares them, so a new option that is not typed here fails
the suite.  The tables stay the one place that says what an option does and its
default; this module says only what values it takes.

Durations take milliseconds (as Node) or a ``datetime.timedelta``.

``Unpack`` is imported for type checkers only: at run time nothing reads these
annotations, so Python 3.10 needs no ``typing_extensions`` for them.
"""

from __future__ import annotations

import datetime
import os
import socket
import ssl
import urllib.parse
from typing import Any, Callable, Literal, Mapping, Protocol, Sequence, TypedDict, Union

__all__ = [
    "AgentLike",
    "AgentOptions",
    "Duration",
    "FetchOptions",
    "ListenArgument",
    "ListenOptions",
    "Material",
    "RequestOptions",
    "ServerOptions",
    "URLLike",
]

#: A duration: milliseconds (Node's unit) or a ``datetime.timedelta``; None for none.
Duration = Union[float, datetime.timedelta, None]
#: A key, certificate, CA or CRL: PEM text or bytes, or a path to a file; or a list of them.
Material = Union[bytes, bytearray, memoryview, str, "os.PathLike[str]", Sequence[Union[bytes, str, "os.PathLike[str]"]]]
#: What ``request()`` and ``get()`` take first besides an options dict.
URLLike = Union[str, urllib.parse.ParseResult, urllib.parse.SplitResult]
#: Header values: a str or number, or a list of str for a repeated field.
_HeaderValue = Union[str, int, float, Sequence[str]]
_Headers = Union[Mapping[str, _HeaderValue], Sequence[str], Sequence[tuple[str, _HeaderValue]]]
_Lookup = Callable[..., Any]
_CheckServerIdentity = Callable[[str, dict[str, Any]], Union[Exception, None]]


class AgentLike(Protocol):
    """What the ``agent`` option takes besides None and False: a ``greenhttps.Agent``.

    A protocol rather than the class: this module sits below the pool (see
    docs/architecture.md), and any Agent, ``greenhttps.http.Agent`` included, fits.
    """

    protocol: str
    default_port: int

    def get_name(self, options: Mapping[str, Any] | None = None) -> str: ...


# --------------------------------------------------------------- client TLS


class _ClientTLSOptions(TypedDict, total=False):
    """The TLS options of one client connection (``_options.CLIENT_TLS_KEYS``)."""

    pfx: Material | Sequence[Mapping[str, Any]]
    key: Material
    passphrase: str | bytes
    cert: Material
    ca: Material
    ciphers: str
    reject_unauthorized: bool
    rejectUnauthorized: bool
    secure_protocol: str
    secureProtocol: str
    min_version: str
    minVersion: str
    max_version: str
    maxVersion: str
    ssl_context: ssl.SSLContext
    sslContext: ssl.SSLContext
    secureContext: ssl.SSLContext
    crl: Material
    servername: str
    check_server_identity: _CheckServerIdentity
    checkServerIdentity: _CheckServerIdentity


class _ConnectionOptions(_ClientTLSOptions, total=False):
    """Request options ``fetch()`` passes through (all but what it sets itself)."""

    family: Literal[0, 4, 6]
    local_address: str
    localAddress: str
    set_host: bool
    setHost: bool
    connect_timeout: Duration
    connectTimeout: Duration
    # Not Node's: the CAs an https:// proxy's certificate is checked with.
    proxy_ca: Material
    proxyCa: Material
    max_header_size: int
    maxHeaderSize: int
    insecure_http_parser: bool
    insecureHTTPParser: bool
    lookup: _Lookup
    session: bytes | ssl.SSLSession
    auto_select_family: bool
    autoSelectFamily: bool
    auto_select_family_attempt_timeout: Duration
    autoSelectFamilyAttemptTimeout: Duration


class FetchOptions(_ConnectionOptions, total=False):
    """``fetch()``'s ``**tls_options``: the request options it does not set itself
    (TLS, ``connect_timeout``, ``family``...), as the ``init`` of Node's ``fetch()``
    has no such options and undici takes them in a dispatcher."""


class _TargetOptions(TypedDict, total=False):
    """Where a request goes and what it says (``fetch()`` sets these itself)."""

    protocol: str
    host: str
    hostname: str
    port: int | str
    default_port: int
    defaultPort: int
    socket_path: str
    socketPath: str
    method: str
    path: str
    headers: _Headers
    auth: str
    deadline: Duration


class RequestOptions(_TargetOptions, _ConnectionOptions, total=False):
    """The options of ``request()`` and ``get()``, Node's ``https.request`` options, in
    either spelling (``reject_unauthorized`` or ``rejectUnauthorized``).

    Annotate an options dict built before the call with it (``opts: RequestOptions =
    {...}``) so that mypy checks it; a ``dict[str, Any]`` may be passed as ``**opts``.
    """

    agent: AgentLike | Literal[False] | None
    timeout: Duration
    proxy: str | Literal[False] | None


class AgentOptions(_TargetOptions, _ConnectionOptions, total=False):
    """The options of ``Agent()`` (Node's ``new https.Agent(options)``): the pool's
    own, and request options that become defaults for its requests."""

    keep_alive: bool
    keepAlive: bool
    keep_alive_msecs: Duration
    keepAliveMsecs: Duration
    max_sockets: float
    maxSockets: float
    max_total_sockets: float
    maxTotalSockets: float
    max_free_sockets: int
    maxFreeSockets: int
    timeout: Duration
    max_cached_sessions: int
    maxCachedSessions: int
    scheduling: Literal["lifo", "fifo"]
    proxy: str | Literal[False] | None
    proxy_env: bool | Mapping[str, str] | None
    proxyEnv: bool | Mapping[str, str] | None
    pace: Duration
    dns_cache: bool
    dnsCache: bool
    dns_cache_ttl: Duration
    dnsCacheTtl: Duration
    dns_cache_negative_ttl: Duration
    dnsCacheNegativeTtl: Duration
    dns_cache_size: int
    dnsCacheSize: int
    agent: AgentLike | Literal[False] | None


# ------------------------------------------------------------------ server

_SNICallback = Callable[..., Any]


class ServerOptions(TypedDict, total=False):
    """The options of ``create_server()`` (Node's ``https.createServer(options)``: the
    server's and ``tls.createServer``'s), in either spelling."""

    timeout: Duration
    headers_timeout: Duration
    headersTimeout: Duration
    request_timeout: Duration
    requestTimeout: Duration
    keep_alive_timeout: Duration
    keepAliveTimeout: Duration
    handshake_timeout: Duration
    handshakeTimeout: Duration
    max_headers_count: int
    maxHeadersCount: int
    max_header_size: int
    maxHeaderSize: int
    max_requests_per_socket: int
    maxRequestsPerSocket: int
    no_delay: bool
    noDelay: bool
    keep_alive: bool
    keepAlive: bool
    keep_alive_initial_delay: Duration
    keepAliveInitialDelay: Duration
    require_host_header: bool
    requireHostHeader: bool
    insecure_http_parser: bool
    insecureHTTPParser: bool
    proxy_protocol: bool | Literal["off", "auto", "v1", "v2"]
    proxyProtocol: bool | Literal["off", "auto", "v1", "v2"]
    proxy_allow_ips: str | Sequence[str]
    proxyAllowIps: str | Sequence[str]
    access_log: bool | Literal["common", "combined"]
    accessLog: bool | Literal["common", "combined"]
    # TLS (``_options.SERVER_TLS_KEYS``)
    key: Material
    cert: Material
    pfx: Material | Sequence[Mapping[str, Any]]
    passphrase: str | bytes
    ca: Material
    ciphers: str
    secure_protocol: str
    secureProtocol: str
    honor_cipher_order: bool
    honorCipherOrder: bool
    request_cert: bool
    requestCert: bool
    reject_unauthorized: bool
    rejectUnauthorized: bool
    sni_callback: _SNICallback
    SNICallback: _SNICallback
    alpn_protocols: Sequence[str]
    ALPNProtocols: Sequence[str]
    ssl_context: ssl.SSLContext
    sslContext: ssl.SSLContext
    secureContext: ssl.SSLContext
    min_version: str
    minVersion: str
    max_version: str
    maxVersion: str
    ecdh_curve: str
    ecdhCurve: str
    dhparam: Material
    crl: Material


class ListenOptions(TypedDict, total=False):
    """The keyword arguments of ``Server.listen()`` (Node's ``server.listen(options)``)."""

    port: int | str
    host: str | None
    backlog: int
    callback: Callable[[], Any] | None
    reuse_port: bool
    reusePort: bool


#: A positional argument of ``listen()``: a port, a host or a Unix socket path, a
#: backlog, a bound socket, Node's ``{"port": ..}``/``{"fd": n}`` dict, the callback.
ListenArgument = Union[int, str, "os.PathLike[str]", None, socket.socket, Mapping[str, Any], Callable[[], Any]]
