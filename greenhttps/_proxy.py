"""Proxies: which proxy a URL goes through, and the tunnel through it to an origin.

*Which proxy* follows curl, as requests and httpx do: ``https_proxy``/``HTTPS_PROXY``
for https: URLs, ``http_proxy`` for http: URLs (``HTTP_PROXY`` too, except under CGI,
where any client can set it with a ``Proxy:`` header: "httpoxy"), ``all_proxy``/
``ALL_PROXY`` for either, lowercase first; ``no_proxy``/``NO_PROXY`` lists the hosts
reached directly (curl's rules: ``*`` is every host; a name matches itself and its
subdomains, with or without a leading dot; an IP address matches itself, a CIDR
range its addresses; no port matching).  A proxy URL without a scheme is an
``http://`` one, as curl takes it; ``user:password@`` becomes ``Proxy-Authorization``.

*The tunnel* (:func:`open_tunnel`, on a stream the dialer (:mod:`._dial`) has
connected to the proxy: its name resolved through the agent's DNS cache and raced
by Happy Eyeballs, as an origin's): for an ``http://`` or ``https://`` proxy,
``CONNECT host:port`` and the proxy's reply read up to its blank line; for a
``socks5://`` one, RFC 1928's greeting, RFC 1929's user name and password when the
URL has them, and its CONNECT (``socks5h://``: the proxy resolves the origin's
name; ``socks5://``: the dialer does, as curl, and sends the first address its
lookup gives -- as curl, no other is tried if the proxy cannot reach that one:
``family=4``/``6`` chooses, or ``socks5h://`` lets the proxy choose).  Success leaves the stream a byte
pipe to the origin, on which the dialer runs the TLS handshake and peer checks
against the origin (SNI and certificate name: the origin's, never the proxy's).
Anything else is a :class:`~greenhttps.errors.ProxyError` naming the proxy and its
status; a proxy that is not there is ECONNREFUSED naming the proxy.

*An https:// proxy* is reached over TLS first, verified against the proxy's own
name, with the CAs of the ``proxy_ca`` option or else the default roots (certifi's,
as for an origin without ``ca``) -- never
the request's ``ca``, which is the origin's (Node's built-in proxy support and
curl, whose ``--proxy-cacert`` this is, do the same; undici has ``proxyTls``).
The origin's TLS then runs inside that TLS (TLS in TLS: the inner layer is a
memory-BIO socket, :mod:`._tlsbio`, over the outer one).

``request()``/``get()`` use a proxy when their agent has one (``Agent(proxy=...)``),
when the request names one (``proxy=``), or, with ``Agent(proxy_env=True)`` or
``GREENHTTPS_USE_ENV_PROXY=1`` (Node's ``NODE_USE_ENV_PROXY``), the environment's;
plain http: origins go through a CONNECT tunnel there too (curl's ``--proxytunnel``),
and the proxy is part of the pool key (:meth:`~greenhttps.Agent.get_name`).

Proxy schemes: ``http://`` (port 80 by default), ``https://`` (443), ``socks5://``
and ``socks5h://`` (1080); any other is refused with a clear error.
"""

from __future__ import annotations

import base64
import dataclasses
import ipaddress
import os
import re
from typing import Any, Mapping
from urllib.parse import unquote, urlsplit

from . import errors

__all__ = [
    "ProxyURL", "parse_proxy", "env_proxy", "env_proxy_for", "no_proxy_matches", "proxy_for", "forward_options",
    "open_tunnel", "without_credentials", "USE_ENV_PROXY", "SCHEMES",
]

#: The variable that makes request()/get() read the environment's proxies (as Node's
#: ``NODE_USE_ENV_PROXY=1``); read when an Agent is made (the global ones: at import).
USE_ENV_PROXY = "GREENHTTPS_USE_ENV_PROXY"

#: The most of a proxy's CONNECT reply head we read (its status line and fields).
_MAX_REPLY = 16 * 1024
#: Proxy schemes and their default ports.
SCHEMES = {"http": 80, "https": 443, "socks5": 1080, "socks5h": 1080}
_STATUS_LINE = re.compile(rb"HTTP/1\.[01] (\d{3})(?: ([^\r\n]*))?\r\n")


@dataclasses.dataclass(frozen=True)
class ProxyURL:
    """A parsed proxy URL: where it is, and the ``Proxy-Authorization`` value its
    user-info gives (None without one; ``credentials`` are the user name and
    password themselves, for SOCKS).  ``display`` names it without credentials,
    and so does the repr."""

    host: str
    port: int
    authorization: str | None = dataclasses.field(repr=False)
    scheme: str = "http"
    credentials: tuple[str, str] | None = dataclasses.field(default=None, repr=False)

    @property
    def display(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"

    @property
    def socks(self) -> bool:
        return self.scheme.startswith("socks")


def without_credentials(url: str) -> str:
    """``url`` with its user-info (``user:password@``) replaced by ``***@``: a proxy
    URL as an error message may show it."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        scheme, rest = "", url
    end = min((i for i in (rest.find("/"), rest.find("?"), rest.find("#")) if i >= 0), default=len(rest))
    authority = rest[:end]
    if "@" in authority:
        rest = "***@" + authority.rpartition("@")[2] + rest[end:]
    return f"{scheme}{sep}{rest}"


def parse_proxy(url: str) -> ProxyURL:
    """Parse a proxy URL (``http://user:pass@host:port``; no scheme means http://;
    ``https://``, ``socks5://`` and ``socks5h://`` too).  Error messages never show
    the credentials."""
    if not isinstance(url, str) or not url.strip():
        shown = repr(without_credentials(url)) if isinstance(url, str) else type(url).__name__
        raise errors.InvalidArgumentError(f"proxy must be a URL string, not {shown}", "ERR_INVALID_ARG_VALUE")
    text = url.strip()
    if "://" not in text:
        text = "http://" + text
    parts = urlsplit(text)
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES:
        raise errors.InvalidArgumentError(
            f"proxy {scheme}:// is not supported (http://, https://, socks5:// and socks5h:// are)",
            "ERR_INVALID_ARG_VALUE",
        )
    try:
        host, port = parts.hostname, parts.port
    except ValueError:
        # (not chained: the ValueError's own message may quote the netloc, credentials and all)
        raise errors.InvalidURLError(f"Invalid proxy URL: {without_credentials(url)!r}", "ERR_INVALID_URL") from None
    if not host:
        raise errors.InvalidURLError(f"Invalid proxy URL: {without_credentials(url)!r}", "ERR_INVALID_URL")
    authorization = credentials = None
    if parts.username is not None:
        credentials = (unquote(parts.username), unquote(parts.password or ""))
        if scheme.startswith("socks"):
            user, password = (len(part.encode("utf-8")) for part in credentials)
            if not 1 <= user <= 255 or password > 255:
                # RFC 1929: a user name of 1 to 255 bytes (a password of at most 255).
                raise errors.InvalidArgumentError(
                    f"SOCKS5 proxy {without_credentials(url)!r}: the user name must be 1 to 255 bytes and the "
                    f"password at most 255 (RFC 1929); this one's are {user} and {password}", "ERR_INVALID_ARG_VALUE")
        joined = credentials[0] + ":" + credentials[1]
        authorization = "Basic " + base64.b64encode(joined.encode("utf-8")).decode("ascii")
    return ProxyURL(host, port or SCHEMES[scheme], authorization, scheme, credentials)


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
    absolute-form (RFC 9112 §3.2.2): to the proxy (over TLS for an https:// one),
    the whole URL as the target, the origin's ``Host``, and the proxy's credentials."""
    where = parse_proxy(proxy)
    if where.socks:
        raise errors.InvalidArgumentError(f"a SOCKS proxy cannot forward requests: {where.display}")
    parts = urlsplit(url)
    headers = {"Host": parts.netloc}
    if where.authorization is not None:
        headers["Proxy-Authorization"] = where.authorization
    return {"protocol": where.scheme + ":", "hostname": where.host, "port": where.port, "path": url,
            "headers": headers}


# ----------------------------------------------------------------- the tunnel


def connect_reply_status(head: bytes) -> tuple[int, str]:
    """(status, reason) of a proxy's reply head to CONNECT; ProtocolError if it is none."""
    match = _STATUS_LINE.match(head)
    if match is None:
        raise errors.ProtocolError(f"the proxy's reply to CONNECT is not HTTP: {head[:80]!r}")
    return int(match.group(1)), (match.group(2) or b"").decode("latin-1")


def open_tunnel(stream: Any, where: ProxyURL, host: str, port: int) -> None:
    """Make ``stream`` (connected to the proxy ``where``; over TLS to it for an
    https:// proxy) a pipe to ``host:port``: HTTP CONNECT, or SOCKS5 for a socks
    proxy.  The stream's own timeout bounds each read and write.

    Raises :class:`~greenhttps.errors.ProxyError` for a refusal (``status``: the
    HTTP one; ``socks_reply``: SOCKS5's reply code), and the network errors (reset, timeout)
    naming the proxy.  The caller closes the stream on failure.
    """
    try:
        if where.socks:
            _socks5(stream, where, host, port)
        else:
            _connect(stream, where, host, port)
    except errors.Error:
        raise
    except OSError as exc:
        err = errors.from_os_error(exc, during=f"{'SOCKS5' if where.socks else 'CONNECT'} through proxy {where.display}")
        err.proxy = where.display  # type: ignore[attr-defined]
        raise err from exc


def _connect(stream: Any, where: ProxyURL, host: str, port: int) -> None:
    authority = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    lines = [f"CONNECT {authority} HTTP/1.1", f"Host: {authority}"]
    if where.authorization is not None:
        lines.append(f"Proxy-Authorization: {where.authorization}")
    stream.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
    head = b""
    while b"\r\n\r\n" not in head:
        data = stream.recv(4096)
        if not data:
            raise errors.ConnectionResetError(f"proxy {where.display} closed the connection during CONNECT",
                                              proxy=where.display)
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
        # The client speaks first (TLS, or the request), so nothing of the origin's can be here yet.
        raise errors.ProtocolError(f"proxy {where.display} sent bytes after its CONNECT reply")


#: RFC 1928 §6's reply codes.
_SOCKS_REPLIES = {
    1: "general SOCKS server failure", 2: "connection not allowed by ruleset", 3: "network unreachable",
    4: "host unreachable", 5: "connection refused", 6: "TTL expired", 7: "command not supported",
    8: "address type not supported",
}


def _exactly(stream: Any, size: int, where: ProxyURL) -> bytes:
    """``size`` bytes, no more: whatever follows is the origin's."""
    data = b""
    while len(data) < size:
        more = stream.recv(size - len(data))
        if not more:
            raise errors.ConnectionResetError(f"proxy {where.display} closed the connection during the SOCKS5 "
                                              "handshake", proxy=where.display)
        data += more
    return data


def _socks5(stream: Any, where: ProxyURL, host: str, port: int) -> None:
    """RFC 1928 CONNECT (and RFC 1929 user name and password when the URL has them)."""
    methods = b"\x00\x02" if where.credentials is not None else b"\x00"
    stream.sendall(b"\x05" + bytes([len(methods)]) + methods)
    version, method = _exactly(stream, 2, where)
    if version != 5:
        raise errors.ProtocolError(f"proxy {where.display} does not speak SOCKS5 (version byte {version})")
    if method == 0x02 and where.credentials is not None:
        user, password = (part.encode("utf-8") for part in where.credentials)
        if not 1 <= len(user) <= 255 or len(password) > 255:  # (parse_proxy refuses these first)
            raise errors.InvalidArgumentError("SOCKS5 user name must be 1 to 255 bytes, the password at most 255")
        stream.sendall(b"\x01" + bytes([len(user)]) + user + bytes([len(password)]) + password)
        if _exactly(stream, 2, where)[1] != 0:
            raise errors.ProxyError(f"proxy {where.display} refused the user name and password",
                                    "ERR_PROXY_AUTH_REQUIRED", proxy=where.display)
    elif method != 0x00:
        raise errors.ProxyError(
            f"proxy {where.display} accepts none of the SOCKS5 authentication methods offered"
            + ("" if where.credentials is not None else " (it may want a user name and password)"),
            "ERR_PROXY_AUTH_REQUIRED", proxy=where.display,
        )
    name = host.strip("[]")
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        try:
            encoded = name.encode("idna")
        except UnicodeError:  # Python's IDNA 2003 codec refuses a label over 63 bytes
            if not name.isascii():
                raise errors.InvalidArgumentError(f"host name not valid for SOCKS5: {name!r}") from None
            encoded = name.encode("ascii")  # as curl: the proxy's resolver decides
        if len(encoded) > 255:
            raise errors.InvalidArgumentError(f"host name too long for SOCKS5: {name!r}") from None
        target = b"\x03" + bytes([len(encoded)]) + encoded
    else:
        target = (b"\x01" if address.version == 4 else b"\x04") + address.packed
    stream.sendall(b"\x05\x01\x00" + target + port.to_bytes(2, "big"))
    version, reply, _, kind = _exactly(stream, 4, where)
    if version != 5:
        raise errors.ProtocolError(f"proxy {where.display}: SOCKS5 reply with version byte {version}, not 5",
                                   proxy=where.display)
    if reply != 0:
        authority = f"[{name}]:{port}" if ":" in name else f"{name}:{port}"
        raise errors.ProxyError(
            f"proxy {where.display} refused the tunnel to {authority}: SOCKS5 reply {reply} "
            f"({_SOCKS_REPLIES.get(reply, 'unknown')})", "ERR_PROXY_TUNNEL", socks_reply=reply, proxy=where.display,
        )
    # The address the proxy bound: read past it, up to the origin's first byte.
    if kind == 1:
        _exactly(stream, 4 + 2, where)
    elif kind == 4:
        _exactly(stream, 16 + 2, where)
    elif kind == 3:
        _exactly(stream, _exactly(stream, 1, where)[0] + 2, where)
    else:
        raise errors.ProtocolError(f"proxy {where.display}: SOCKS5 reply with address type {kind}")
