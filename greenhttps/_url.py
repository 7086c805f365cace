"""Request targets: URL strings and option dicts -> one normalised options dict.

Node's rules, checked before anything touches the network: the protocol must be the
module's own (``https:`` for greenhttps, ``http:`` for greenhttps.http); a URL needs a
host; a path may hold only visible ASCII (``ERR_UNESCAPED_CHARACTERS``, CVE-2018-12116);
the method must be a token.  The ``Host`` header and the TLS server name follow
Node's ``calculateServerName``: SNI is never sent for an IP literal.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from collections.abc import Mapping  # isinstance() with it: typing's alias checks ~10x slower
from typing import Any
from urllib.parse import SplitResult, unquote, urlsplit

from . import errors
from ._options import REQUEST_OPTIONS, merge_options

__all__ = ["request_options", "fill_port", "host_header", "is_ip", "server_name"]

# Node's INVALID_PATH_REGEX is /[^\u0021-\u00ff]/; h11 takes only ASCII, so we stop
# at \x7e and say so before connecting rather than fail halfway.
_INVALID_PATH = re.compile(r"[^\x21-\x7e]")
_INVALID_HOST = re.compile(r"[\x00-\x20\x7f/\\@]")
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+\Z")
_USUAL_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"})


@functools.lru_cache(maxsize=256)  # several times per connection, of the same few hosts
def is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


#: URL strings already taken apart -> the options they give: a
#: client asks for the same few URLs again and again, and splitting one (urlsplit,
#: then the hostname/port/username properties, each re-parsing the netloc) is ~10
#: Python calls.  Bounded: past _URL_CACHE_MAX distinct URLs it starts over.  The
#: dicts are shared: read them only (request_options merges them into a new one).
#: A URL with user-info or a query is not kept: no password or token (``?access_token=``)
#: in a module-wide table.
_URL_CACHE: dict[str, dict[str, Any]] = {}
_URL_CACHE_MAX = 256


#: Hosts and paths that passed their check: a set lookup, not a regex search, for
#: the ones a client uses again and again.  Bounded as _URL_CACHE (short ones only;
#: no path with a query, which may carry a token).
_GOOD_HOSTS: set[str] = set()
_GOOD_PATHS: set[str] = set()


def _remember(good: set[str], text: str) -> None:
    if len(text) <= 256 and "?" not in text:
        if len(good) >= _URL_CACHE_MAX:
            good.clear()
        good.add(text)


def _from_url_cached(url: str) -> dict[str, Any]:
    options = _URL_CACHE.get(url)
    if options is None:
        options = _from_url(url)  # raises for a bad URL: nothing is cached then
        if "@" in url or "?" in url:
            return options  # user-info or a query (a password or token, maybe): not kept module-wide
        if len(_URL_CACHE) >= _URL_CACHE_MAX:
            _URL_CACHE.clear()
        _URL_CACHE[url] = options
    return options


def _from_url(url: str | SplitResult) -> dict[str, Any]:
    parts = urlsplit(url) if isinstance(url, str) else url
    if not parts.scheme or not parts.netloc or not parts.hostname:
        raise errors.InvalidURLError(f"Invalid URL: {url!r}", "ERR_INVALID_URL")
    options: dict[str, Any] = {
        "protocol": parts.scheme.lower() + ":",
        "hostname": parts.hostname,
        "path": (parts.path or "/") + (f"?{parts.query}" if parts.query else ""),
    }
    try:
        port = parts.port
    except ValueError as exc:
        raise errors.InvalidURLError(f"Invalid URL: {url!r}", "ERR_INVALID_URL") from exc
    if port is not None:
        options["port"] = port
    if parts.username is not None:
        # A URL's user-info is percent-decoded before Base64 (Node's urlToHttpOptions).
        options["auth"] = unquote(parts.username) + (f":{unquote(parts.password)}" if parts.password is not None else "")
    return options


def request_options(
    url_or_options: str | SplitResult | Mapping[str, Any] | None,
    kwargs: Mapping[str, Any],
    *,
    protocol: str,
) -> dict[str, Any]:
    """Merge a URL or options dict with keyword arguments; validate; fill defaults.

    ``port`` and ``default_port`` stay None unless given: they default to the
    agent's ``default_port``, known once the agent is (:func:`fill_port`)."""
    base: Mapping[str, Any] | None
    if type(url_or_options) is str:
        base = _from_url_cached(url_or_options)
    elif type(url_or_options) is dict:  # an options dict (fetch() gives one): no Mapping ABC check
        base = url_or_options
    elif isinstance(url_or_options, (str, SplitResult)):
        base = _from_url(url_or_options)
    elif url_or_options is None or isinstance(url_or_options, Mapping):
        base = url_or_options
    else:
        raise errors.InvalidArgumentError(
            f"options must be a URL string or a dict, not {type(url_or_options).__name__}",
            "ERR_INVALID_ARG_TYPE",
        )
    opts = merge_options(REQUEST_OPTIONS, base, kwargs, what="request")
    given_protocol = opts["protocol"] or protocol
    if given_protocol != protocol:
        raise errors.InvalidProtocolError(
            f'Protocol "{given_protocol}" not supported. Expected "{protocol}"', "ERR_INVALID_PROTOCOL"
        )
    opts["protocol"] = protocol
    host = opts["hostname"] or opts["host"] or "localhost"
    if type(host) is not str or host not in _GOOD_HOSTS:
        if not isinstance(host, str) or _INVALID_HOST.search(host):
            raise errors.InvalidArgumentError(f"Invalid host: {host!r}", "ERR_INVALID_CHAR")
        _remember(_GOOD_HOSTS, host)
    opts["host"] = host.strip("[]") if host.startswith("[") else host
    servername = opts["servername"]
    if servername is not None and (not isinstance(servername, str) or _INVALID_HOST.search(servername)):
        # It becomes SNI and the name checked: refuse what no DNS name can hold.
        raise errors.InvalidArgumentError(f"Invalid servername: {servername!r}", "ERR_INVALID_CHAR")
    method = (opts["method"] or "GET")
    if type(method) is str and method in _USUAL_METHODS:
        opts["method"] = method  # a valid token in capitals already: no match, no upper()
    elif not isinstance(method, str) or not _TOKEN.match(method):
        raise errors.InvalidArgumentError(f"Method must be a valid HTTP token [{method!r}]", "ERR_INVALID_HTTP_TOKEN")
    else:
        opts["method"] = method.upper()
    path = opts["path"] if opts["path"] is not None else "/"
    if type(path) is not str or path not in _GOOD_PATHS:
        if not isinstance(path, str) or _INVALID_PATH.search(path):
            raise errors.InvalidURLError("Request path contains unescaped characters", "ERR_UNESCAPED_CHARACTERS")
        _remember(_GOOD_PATHS, path)
    opts["path"] = path
    if opts["family"] not in (None, 0, 4, 6):
        raise errors.InvalidArgumentError(f"family must be 4 or 6, not {opts['family']!r}", "ERR_INVALID_ARG_VALUE")
    return opts


def fill_port(opts: dict[str, Any], agent_default_port: int) -> None:
    """Node's ``defaultPort = options.defaultPort || agent.defaultPort`` and
    ``port = options.port || defaultPort``."""
    default_port = opts["default_port"] or agent_default_port
    opts["port"] = int(opts["port"] or default_port)
    opts["default_port"] = default_port


def host_header(host: str, port: int, default_port: int) -> str:
    """``Host`` value: ``host[:port]``, brackets around IPv6, no default port."""
    name = f"[{host}]" if ":" in host else host
    return name if port == default_port else f"{name}:{port}"


def server_name(opts: Mapping[str, Any], headers_host: str | None) -> str:
    """The name to verify and send as SNI: ``servername``, else the Host header's
    name (without port), else the host."""
    if opts.get("servername"):
        return str(opts["servername"])
    if headers_host:
        if headers_host.startswith("["):
            return headers_host[1 : headers_host.find("]")]
        return headers_host.rsplit(":", 1)[0] if headers_host.count(":") == 1 else headers_host
    return str(opts["host"])
