"""Taking a PROXY protocol header off an accepted socket, and not one byte more.

The header precedes the client's own bytes (its TLS ClientHello, or its request on
plain HTTP), so the reader must stop exactly at its end: it looks with
``MSG_PEEK``, and takes only bytes it knows to be header.  After each look it either
has the whole header (it takes exactly that much) or knows that all it saw is header
(it takes all of it), so the next look blocks until new bytes arrive -- there is no
busy loop.  The parsing is :mod:`greenhttps._proxy_protocol`'s; the caller bounds the
whole read with a timeout (the server's handshake timeout).
"""

from __future__ import annotations

import socket

import gevent

from ._proxy_protocol import (
    V1_MAX,
    V2_SIGNATURE,
    ProxyHeader,
    ProxyProtocolError,
    allow_list,
    detect,
    parse,
    versions_from_option,
)

__all__ = ["receive_proxy_header", "read_proxy_header", "refuse_proxy_header"]

#: While the first bytes could still be either a header or not (a client that sent
#: 1-11 bytes and paused), :func:`refuse_proxy_header` looks again after 5 ms, then
#: twice as long each time, and gives up after about half a second: such a peer is
#: served as any other (a TLS handshake or an HTTP parser then judges its bytes),
#: and a thousand of them cannot keep the hub busy polling.
_RECHECK_FIRST = 0.005
_RECHECK_LAST = 0.32


def receive_proxy_header(
    sock: socket.socket, peer: str | None, option: object, allowed: object, timeout: float | None
) -> ProxyHeader | None:
    """The server's PROXY protocol step, before anything else is read (TLS included).

    ``option`` is the server's ``proxy_protocol``, ``allowed`` its ``proxy_allow_ips``,
    ``peer`` the connecting address (None for a Unix socket peer, trusted as gunicorn
    does: only a local process can connect).  A peer in the list must send a header
    (the spec forbids guessing: a proxy that forgot would let its clients send their
    own); any other peer must not, and without one it is served as it is (None).
    Raises :class:`ProxyProtocolError` otherwise, or when ``timeout`` seconds pass.
    With the option off (``'off'`` is a true string) nothing is read.
    """
    versions = versions_from_option(option)
    if not versions:
        return None  # 'off'
    expired = ProxyProtocolError(f"PROXY protocol: no complete header within {timeout} s")
    with gevent.Timeout(timeout, expired):
        if peer is not None and peer not in allow_list(allowed):  # type: ignore[arg-type]
            refuse_proxy_header(sock)
            return None
        return read_proxy_header(sock, versions)


def read_proxy_header(sock: socket.socket, versions: tuple[int, ...]) -> ProxyHeader:
    """Read the header that must open ``sock`` (a gevent socket); raises
    :class:`ProxyProtocolError` if it is missing, malformed, or cut short."""
    taken = b""
    need = V1_MAX + 1  # enough for any version 1 line, and to learn a v2 length
    while True:
        try:
            peeked = sock.recv(max(need, V1_MAX + 1) - len(taken), socket.MSG_PEEK)
        except OSError as exc:
            raise ProxyProtocolError(f"PROXY protocol: connection failed before the header ended: {exc}") from exc
        if not peeked:
            raise ProxyProtocolError("PROXY protocol: connection closed before the header ended")
        result = parse(taken + peeked, versions)
        if isinstance(result, ProxyHeader):
            _take(sock, result.size - len(taken))  # exactly the rest of the header
            return result
        taken += _take(sock, len(peeked))  # not complete yet: all of it is header
        need = result


def refuse_proxy_header(sock: socket.socket) -> None:
    """For a peer not allowed to send a header: raise :class:`ProxyProtocolError` if
    its first bytes are one; take nothing off the socket either way."""
    pause = _RECHECK_FIRST
    while True:
        try:
            first = sock.recv(len(V2_SIGNATURE), socket.MSG_PEEK)
        except OSError:
            return  # the connection failed: the server's own read will say so
        verdict = detect(first) if first else False
        if verdict:
            raise ProxyProtocolError("PROXY protocol: a header from a peer not in proxy_allow_ips")
        if verdict is False or pause > _RECHECK_LAST:
            return
        gevent.sleep(pause)
        pause *= 2


def _take(sock: socket.socket, count: int) -> bytes:
    """Receive exactly ``count`` bytes the peek saw (already in the kernel buffer)."""
    parts = []
    while count > 0:
        piece = sock.recv(count)
        if not piece:
            raise ProxyProtocolError("PROXY protocol: connection closed inside the header")
        parts.append(piece)
        count -= len(piece)
    return b"".join(parts)
