"""HTTP proxies: which proxy a URL goes through, and the CONNECT tunnel to an origin.

*Which proxy* follows curl, as requests and httpx do: ``https_proxy``/``HTTPS_PROXY``
for https: URLs, ``http_proxy`` for http: URLs (``HTTP_PROXY`` too, except under CGI,
where any client can set it with a ``Proxy:`` header: "httpoxy"), ``all_proxy``/
``ALL_PROXY`` for either, lowercase first; ``no_proxy``/``NO_PROXY`` lists the hosts
reached directly (curl's rules: ``*`` is every host; a name matches itself and its
subdomains, with or without a leading dot; an IP address matches itself, a CIDR
range its addresses; no port matching).  A proxy URL without a scheme is an
``http://`` one, as curl takes it; ``user:password@`` becomes ``Proxy-Authorization``.

*The tunnel* (:func:`open_tunnel`): TCP to the proxy, ``CONNECT host:port``, the
proxy's reply read up to its blank line; a 2xx hands back the socket, now a byte
pipe to the origin, on which the dialer runs the TLS handshake and peer checks
against the origin (SNI and certificate name: the origin's, never the proxy's).
Anything else is a :class:`~greenhttps.errors.ProxyError` naming the proxy and its
status; a proxy that is not there is ECONNREFUSED naming the proxy.

``request()``/``get()`` use a proxy when their agent has one (``Agent(proxy=...)``),
when the request names one (``proxy=``), or, with ``Agent(proxy_env=True)`` or
``GREENHTTPS_USE_ENV_PROXY=1`` (Node's ``NODE_USE_ENV_PROXY``), the environment's;
plain http: origins go through a CONNECT tunnel there too (curl's ``--proxytunnel``),
and the proxy is part of the pool key (:meth:`~greenhttps.Agent.get_name`).

Only ``http://`` proxies: an ``https://`` proxy (TLS to the proxy, TLS to the origin
inside it) and ``socks5://`` are refused with a clear error for now.
"""

from __future__ import annotations

import base64
import dataclasses
import ipaddress
import os
import re
from typing import Mapping
from urllib.parse import unquote, urlsplit

from gevent import socket as gsocket

from . import errors

__all__ = [
    "ProxyURL", "parse_proxy", "env_proxy", "env_proxy_for", "no_proxy_matches", "proxy_for", "forward_options",
    "open_tunnel", "USE_ENV_PROXY",
]

#: The variable that makes request()/get() read the environment's proxies (as Node's
#: ``NODE_USE_ENV_PROXY=1``); read when an Agent is made (the global ones: at import).
USE_ENV_PROXY = "GREENHTTPS_USE_ENV_PROXY"

#: The most of a proxy's CONNECT reply head we read (its status line and fields).
_MAX_REPLY = 16 * 1024
_STATUS_LINE = re.compile(rb"HTTP/1\.[01] (\d{3})(?: ([^\r\n]*))?\r\n")


@dataclasses.dataclass(frozen=True)
class ProxyURL:
    """A parsed proxy URL: where it is, and the ``Proxy-Authorization`` value its
    user-info gives (None without one).  ``display`` names it without credentials."""

    host: str
    port: int
    authorization: str | None

    @property
    def display(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"


def parse_proxy(url: str) -> ProxyURL:
    """Parse a proxy URL (``http://user:pass@host:port``; no scheme means http://)."""
    if not isinstance(url, str) or not url.strip():
        raise errors.InvalidArgumentError(f"proxy must be a URL string, not {url!r}", "ERR_INVALID_ARG_VALUE")
    text = url.strip()
    if "://" not in text:
        text = "http://" + text
    parts = urlsplit(text)
    scheme = parts.scheme.lower()
    if scheme != "http":
        raise errors.InvalidArgumentError(
            f"proxy {scheme}:// is not supported (only http:// proxies, which tunnel https: by CONNECT)",
            "ERR_INVALID_ARG_VALUE",
        )
    try:
        host, port = parts.hostname, parts.port
    except ValueError as exc:
        raise errors.InvalidURLError(f"Invalid proxy URL: {url!r}", "ERR_INVALID_URL") from exc
    if not host:
        raise errors.InvalidURLError(f"Invalid proxy URL: {url!r}", "ERR_INVALID_URL")
    authorization = None
    if parts.username is not None:
        credentials = unquote(parts.username) + ":" + unquote(parts.password or "")
        authorization = "Basic " + base64.b64encode(credentials.encode("utf-8")).decode("ascii")
    return ProxyURL(host, port or 80, authorization)


# ----------------------------------------------------------------- environment


def _env(environ: Mapping[str, str], name: str, *, upper: bool = True) -> str | None:
    value = environ.get(name) or (environ.get(name.upper()) if upper else None)
    return value.strip() or None if value else None


def no_proxy_matches(host: str, no_proxy: str | None) -> bool:
    """True if ``host`` is to be reached directly under a ``NO_PROXY`` value (curl's rules)."""
    if not no_proxy:
        return False
    name = host.strip("[]").rstrip(".").lower()
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        address = None
    for entry in re.split(r"[,\s]+", no_proxy.strip()):
        entry = entry.strip("[]").rstrip(".").lower() if entry != "*" else entry
        if not entry:
            continue
        if entry == "*":
            return True
        if address is not None:
            try:
                if address in ipaddress.ip_network(entry, strict=False):
                    return True
            except ValueError:
                pass
            continue
        entry = entry.lstrip(".")
        if name == entry or name.endswith("." + entry):
            return True
    return False


def env_proxy(url: str, environ: Mapping[str, str] | None = None) -> str | None:
    """The proxy the environment names for ``url`` (curl's variables), or None."""
    parts = urlsplit(url)
    return env_proxy_for(parts.scheme, parts.hostname or "", environ)


def env_proxy_for(scheme: str, host: str, environ: Mapping[str, str] | None = None) -> str | None:
    """:func:`env_proxy` for a URL's ``scheme`` (``'https'``/``'http'``) and ``host``."""
    environ = os.environ if environ is None else environ
    if no_proxy_matches(host, _env(environ, "no_proxy")):
        return None
    if scheme == "https":
        chosen = _env(environ, "https_proxy")
    else:
        # HTTP_PROXY is what a CGI program's environment gets from a request's Proxy:
        # header, so under CGI only the lowercase one counts (as curl, Go, requests).
        chosen = _env(environ, "http_proxy", upper="REQUEST_METHOD" not in environ)
    return chosen or _env(environ, "all_proxy")


def proxy_for(url: str, proxy: str | bool | None) -> str | None:
    """The proxy for ``url``: ``proxy`` if a URL, none for False, the environment's for None."""
    if proxy is False:
        return None
    if proxy is None or proxy is True:
        return env_proxy(url)
    parse_proxy(proxy)  # a bad one fails now, before anything is sent
    return proxy


def forward_options(proxy: str, url: str) -> dict[str, object]:
    """Request options that send ``url`` (an http: URL) through ``proxy`` in
    absolute-form (RFC 9112 §3.2.2): to the proxy, the whole URL as the target, the
    origin's ``Host``, and the proxy's credentials."""
    where = parse_proxy(proxy)
    parts = urlsplit(url)
    headers = {"Host": parts.netloc}
    if where.authorization is not None:
        headers["Proxy-Authorization"] = where.authorization
    return {"protocol": "http:", "hostname": where.host, "port": where.port, "path": url, "headers": headers}


# ----------------------------------------------------------------- the tunnel


def connect_reply_status(head: bytes) -> tuple[int, str]:
    """(status, reason) of a proxy's reply head to CONNECT; ProtocolError if it is none."""
    match = _STATUS_LINE.match(head)
    if match is None:
        raise errors.ProtocolError(f"the proxy's reply to CONNECT is not HTTP: {head[:80]!r}")
    return int(match.group(1)), (match.group(2) or b"").decode("latin-1")


def open_tunnel(proxy: str, host: str, port: int, timeout: float | None) -> gsocket.socket:
    """A TCP socket to ``proxy`` that ``CONNECT`` has made a pipe to ``host:port``.

    ``timeout`` (seconds, None: none) bounds the connect and each read of the reply.
    Raises ``ECONNREFUSED`` (and the other connect errors) naming the proxy, and
    :class:`~greenhttps.errors.ProxyError` for a reply other than 2xx.
    """
    where = parse_proxy(proxy)
    try:
        sock = gsocket.create_connection((where.host, where.port), timeout)
    except OSError as exc:
        raise errors.from_os_error(exc, during=f"connect to proxy {where.display}") from exc
    try:
        authority = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        lines = [f"CONNECT {authority} HTTP/1.1", f"Host: {authority}"]
        if where.authorization is not None:
            lines.append(f"Proxy-Authorization: {where.authorization}")
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        head = b""
        while b"\r\n\r\n" not in head:
            data = sock.recv(4096)
            if not data:
                raise errors.ConnectionResetError(f"proxy {where.display} closed the connection during CONNECT")
            head += data
            if len(head) > _MAX_REPLY:
                raise errors.ProtocolError(f"proxy {where.display}: CONNECT reply head over {_MAX_REPLY} bytes")
        head, _, extra = head.partition(b"\r\n\r\n")
        status, reason = connect_reply_status(head + b"\r\n")
        if not 200 <= status < 300:
            code = "ERR_PROXY_AUTH_REQUIRED" if status == 407 else "ERR_PROXY_TUNNEL"
            raise errors.ProxyError(
                f"proxy {where.display} refused the tunnel to {authority}: {status} {reason}".rstrip(),
                code, status=status, proxy=where.display,
            )
        if extra:
            # TLS speaks first, so nothing of the origin's can be here yet.
            raise errors.ProtocolError(f"proxy {where.display} sent bytes after its CONNECT reply")
        return sock
    except OSError as exc:
        sock.close()
        if isinstance(exc, errors.Error):
            raise
        raise errors.from_os_error(exc, during=f"CONNECT through proxy {where.display}") from exc
    except BaseException:
        sock.close()
        raise
