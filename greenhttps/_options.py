"""Options the Node way and the Python way, and the camelCase alias table.

Every function that takes Node ``options`` accepts a dict with Node's camelCase keys,
the same names as snake_case keyword arguments, or both; unknown names raise
``TypeError`` naming the option (silently ignored typos are how TLS settings get
lost, see geventhttpclient#225).  Times stay in milliseconds, as in Node; the code
that arms a timer converts.  A duration may also be given as a ``datetime.timedelta``:
:func:`merge_options` turns it into milliseconds (the names in
:data:`DURATION_OPTIONS`), so the rest of the package sees one unit.

The same name mapping gives the camelCase aliases of methods and properties
(``write_head`` -> ``writeHead``): :func:`node_aliases` adds them to a class from its
own snake_case names, so there is one rule and no copied code.
"""

from __future__ import annotations

import datetime
import math
import re
from typing import Any, Callable, Iterable, Mapping, TypeVar

__all__ = [
    "SERVER_OPTIONS",
    "REQUEST_OPTIONS",
    "AGENT_OPTIONS",
    "attribute_aliases",
    "SERVER_TLS_KEYS",
    "CLIENT_TLS_KEYS",
    "camel_case",
    "snake_case",
    "merge_options",
    "node_aliases",
    "ms_to_seconds",
    "DURATION_OPTIONS",
    "duration_to_ms",
    "format_ms",
]

# Names whose Node spelling does not follow the plain camelCase rule.
_SPECIAL_CAMEL = {
    "sni_callback": "SNICallback",
    "alpn_protocols": "ALPNProtocols",
    "ssl_context": "sslContext",
    "max_header_size": "maxHeaderSize",
    "insecure_http_parser": "insecureHTTPParser",
}
_SPECIAL_SNAKE = {camel: snake for snake, camel in _SPECIAL_CAMEL.items()}
_SPECIAL_SNAKE["secureContext"] = "ssl_context"
_CAMEL_HUMP = re.compile(r"(?<=[a-z0-9])([A-Z])")


def camel_case(name: str) -> str:
    """``keep_alive_msecs`` -> ``keepAliveMsecs`` (Node's spelling)."""
    special = _SPECIAL_CAMEL.get(name)
    if special:
        return special
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def snake_case(name: str) -> str:
    """``keepAliveMsecs`` -> ``keep_alive_msecs``; snake names pass through."""
    special = _SPECIAL_SNAKE.get(name)
    if special:
        return special
    return _CAMEL_HUMP.sub(r"_\1", name).lower()


_TLS_SERVER = (
    "key", "cert", "pfx", "passphrase", "ca", "ciphers", "secure_protocol", "honor_cipher_order",
    "request_cert", "reject_unauthorized", "sni_callback", "alpn_protocols", "ssl_context",
    "min_version", "max_version", "ecdh_curve", "dhparam", "crl",
)
_TLS_CLIENT = (
    "pfx", "key", "passphrase", "cert", "ca", "ciphers", "reject_unauthorized", "secure_protocol",
    "min_version", "max_version", "ssl_context", "crl",
)

#: Server options and their defaults (times in milliseconds, as Node).
SERVER_OPTIONS: dict[str, Any] = {
    "timeout": 120_000,
    "headers_timeout": 60_000,
    "request_timeout": 300_000,
    "keep_alive_timeout": 5_000,
    "handshake_timeout": 120_000,
    "max_headers_count": 2000,
    "max_header_size": 16384,
    "max_requests_per_socket": 0,
    "no_delay": True,
    "keep_alive": False,
    "keep_alive_initial_delay": 0,
    "require_host_header": True,
    "insecure_http_parser": False,
    # Behind a load balancer: the PROXY protocol header, trusted only from these peers.
    "proxy_protocol": False,
    "proxy_allow_ips": "127.0.0.1,::1",
    # One line per response to the "greenhttps.access" logger (see _access_log).
    "access_log": False,
    **{name: None for name in _TLS_SERVER},
}

#: Client request options (None: not given).
REQUEST_OPTIONS: dict[str, Any] = {
    name: None
    for name in (
        "protocol", "host", "hostname", "family", "port", "default_port", "local_address",
        "socket_path", "method", "path", "headers", "auth", "agent", "timeout", "servername",
        "set_host", "check_server_identity", "connect_timeout", "deadline", "max_header_size",
        "insecure_http_parser", "lookup", "session",
        # Happy Eyeballs (Node's names; see _happy): on unless False, 250 ms apart.
        "auto_select_family", "auto_select_family_attempt_timeout",
        # Not Node's: this request's proxy (an http://, https://, socks5:// or socks5h://
        # URL), or False for none; proxy_ca: the CAs an https:// proxy's certificate is
        # checked with (default: the default roots; see _proxy).
        "proxy", "proxy_ca",
        *_TLS_CLIENT,
    )
}

#: Agent options (and request options, which become per-connection defaults).
AGENT_OPTIONS: dict[str, Any] = {
    "keep_alive": False,
    "keep_alive_msecs": 1000,
    "max_sockets": float("inf"),
    "max_total_sockets": float("inf"),
    "max_free_sockets": 256,
    "timeout": None,
    "max_cached_sessions": 100,
    "scheduling": "lifo",
    # Not Node's: the least time (ms) between the starts of two requests to one origin.
    "pace": None,
    # Environment proxies for request()/get() (Node's proxyEnv): True (os.environ),
    # a mapping, False; None: as GREENHTTPS_USE_ENV_PROXY=1 says when the agent is made.
    # (The agent's ``proxy``, a request option, is the default for its requests; the
    # proxy is part of the pool key, so pooled connections never mix proxied and direct.)
    "proxy_env": None,
    # The agent's DNS cache (see _dns; not in Node): answers kept dns_cache_ttl ms,
    # failures dns_cache_negative_ttl ms, at most dns_cache_size names.
    "dns_cache": True,
    "dns_cache_ttl": 10_000,
    "dns_cache_negative_ttl": 1_000,
    "dns_cache_size": 1024,
    **{name: None for name in REQUEST_OPTIONS if name != "timeout"},
}

#: The options that are durations: milliseconds, or a ``datetime.timedelta``.
DURATION_OPTIONS = frozenset({
    "timeout", "headers_timeout", "request_timeout", "keep_alive_timeout", "handshake_timeout",
    "keep_alive_initial_delay", "keep_alive_msecs", "connect_timeout", "deadline",
    "auto_select_family_attempt_timeout", "dns_cache_ttl", "dns_cache_negative_ttl", "pace",
})

#: The TLS options of the server and of a client connection: THE lists (``_tls`` imports
#: these; keep no other copy).  A client's ``servername`` and ``check_server_identity``
#: do not build the context: the connection uses them for SNI and the peer check, and
#: ``_tls.create_client_context`` takes and leaves them, so one list serves both.
SERVER_TLS_KEYS = frozenset(_TLS_SERVER)
CLIENT_TLS_KEYS = frozenset(_TLS_CLIENT) | {"servername", "check_server_identity"}


def _option_name(key: object) -> str | None:
    """The snake_case name for a Node spelling, or None when ``key`` is not one.

    Only the exact spelling counts: ``Host`` or ``HeadersTimeout`` would lowercase
    into valid names, but they are typos, and typos must not pass silently.
    """
    if not isinstance(key, str):
        return None
    name = snake_case(key)
    return name if key in _SPECIAL_SNAKE or camel_case(name) == key else None


def merge_options(
    table: Mapping[str, Any],
    *sources: Mapping[str, Any] | None,
    what: str,
    defaults: bool = True,
) -> dict[str, Any]:
    """Merge option dicts (camelCase or snake_case keys; later wins) against ``table``.

    Raises ``TypeError`` for a name not in ``table``.  With ``defaults`` the result
    has every name of the table; otherwise only the names given.
    """
    merged: dict[str, Any] = dict(table) if defaults else {}
    for source in sources:
        if not source:
            continue
        keys = source.keys()
        if keys <= table.keys():
            # Every name in its snake_case spelling (a request's usual options): one
            # C-level update, no Python step per name ...
            merged.update(source)
            durations = keys & DURATION_OPTIONS
            if len(durations) == 1:
                # ... but for the one duration given (fetch()'s timeout), converted
                # unless it is a plain number already.
                given = durations.pop()
                value = source[given]
                if type(value) is not int and type(value) is not float:
                    merged[given] = duration_to_ms(value, given)
            elif durations:
                for given in keys:  # in the caller's order: the first bad one is named
                    if given in durations:
                        merged[given] = duration_to_ms(source[given], given)
            continue
        for key, value in source.items():
            name = key if key in table else _option_name(key)
            if name is None or name not in table:
                raise TypeError(f"{what}: unknown option {key!r}")
            merged[name] = duration_to_ms(value, name) if name in DURATION_OPTIONS else value
    return merged


def given(options: Mapping[str, Any], names: Iterable[str]) -> dict[str, Any]:
    """The subset of ``options`` among ``names`` that is not None."""
    return {name: options[name] for name in names if options.get(name) is not None}


def duration_to_ms(value: Any, name: str = "timeout") -> Any:
    """A duration option as milliseconds: a ``timedelta`` converted, a number or None
    as given (checked where it is armed).  Raises ``TypeError`` for anything else
    (``timeout="10s"``): a string would otherwise fail only when a timer is set."""
    if isinstance(value, datetime.timedelta):
        return value.total_seconds() * 1000.0
    if value is None or (isinstance(value, (int, float)) and not isinstance(value, bool)):
        return value
    raise TypeError(f"{name} must be a number of milliseconds or a datetime.timedelta, not {value!r}")


def format_ms(msecs: float | datetime.timedelta) -> str:
    """A duration for an error message, with its unit: ``1.5 ms``, ``30000 ms``."""
    if isinstance(msecs, datetime.timedelta):
        msecs = msecs.total_seconds() * 1000.0
    text = f"{msecs:.3f}".rstrip("0").rstrip(".") if math.isfinite(msecs) else str(msecs)
    return f"{text} ms"


def ms_to_seconds(msecs: float | datetime.timedelta | None) -> float | None:
    """Node milliseconds (or a ``timedelta``) to a gevent timeout; 0, None and
    infinity mean "no timeout"."""
    if msecs is None:
        return None  # the usual case (no timeout given): no conversion call
    kind = type(msecs)
    # Called a few times per request with a number: no conversion call for those.
    value: float | None = msecs if kind is int or kind is float else duration_to_ms(msecs)  # type: ignore[assignment]
    if not value or value == math.inf:
        return None
    if not value > 0:  # negative, or NaN (which compares false with everything)
        raise ValueError(f"timeout must be >= 0 milliseconds, got {format_ms(value)}")
    return float(value) / 1000.0


_C = TypeVar("_C", bound=type)


def _forward(name: str) -> property:
    """A read-write property standing for attribute ``name`` (an alias of a value)."""

    def fget(self: Any) -> Any:
        return getattr(self, name)

    def fset(self: Any, value: Any) -> None:
        setattr(self, name, value)

    return property(fget, fset, doc=f"Alias of ``{name}``.")


def node_aliases(cls: _C) -> _C:
    """Give ``cls`` a camelCase alias for each public snake_case attribute it has.

    Inherited attributes count too (``ServerResponse.setHeader`` comes from its base);
    a name's alias follows the definition ``cls`` actually uses.  Methods and
    descriptors are aliased as the same object; a plain class value (``send_date =
    True``) gets a read-write property instead, because a copy would not see
    ``res.sendDate = False``.  Instance attributes (set in ``__init__``) are not in
    the class, so they are not seen here (``_outgoing.attribute_aliases`` adds those).
    """
    mro = cls.__mro__[:-1]  # without object
    owner: dict[str, int] = {}  # attribute name -> index in the MRO of the class that defines it
    for index in range(len(mro) - 1, -1, -1):
        owner.update(dict.fromkeys(vars(mro[index]), index))
    for name, where in owner.items():
        if name.startswith("_") or "_" not in name:
            continue
        alias = camel_case(name)
        # Keep an alias defined as or more derived than the attribute (hand-written
        # ones included); replace one a subclass's override made stale.
        if alias == name or owner.get(alias, len(mro)) <= where:
            continue
        value = vars(mro[where])[name]
        setattr(cls, alias, value if hasattr(type(value), "__get__") else _forward(name))
    return cls


def attribute_aliases(*names: str) -> Callable[[_C], _C]:
    """Class decorator: a camelCase property for each plain instance attribute named.

    :func:`node_aliases` aliases what a class body defines (methods, properties); an
    attribute that ``__init__`` assigns (``status_code``) is not there to copy, so its
    alias (``statusCode``) reads and writes the snake_case attribute by name.
    """

    def alias(name: str) -> property:
        return property(
            lambda self: getattr(self, name),
            lambda self, value: setattr(self, name, value),
            doc=f"Node's spelling of ``{name}``.",
        )

    def decorate(cls: _C) -> _C:
        for name in names:
            setattr(cls, camel_case(name), alias(name))
        return cls

    return decorate
