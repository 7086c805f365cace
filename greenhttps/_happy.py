"""Happy Eyeballs (RFC 8305): connect to whichever of a name's addresses answers first.

Node's ``autoSelectFamily`` (on by default since Node 20): the addresses are put in
the order RFC 8305 §4 and Node use -- alternating families, starting with the
family of the resolver's first answer, each address once -- and attempts start
one ``attempt_delay`` apart (Node's ``autoSelectFamilyAttemptTimeout``, 250 ms).
Unlike Node, which abandons an attempt when the next one starts, earlier attempts
keep going as RFC 8305 §5 says: a slow address may still win.  An attempt that
fails starts the next one at once.  The first connection made wins and the others
are closed; ``timeout`` (the connect timeout) bounds the whole race.

The attempts are non-blocking sockets waited on together with gevent's
``select``, in the calling greenlet: no greenlet per attempt.
"""

from __future__ import annotations

import errno
import os
import socket as _stdlib_socket
import time
from typing import Any, Sequence

import gevent.select
from gevent import socket as gsocket

__all__ = ["RaceFailed", "order", "race"]

_IN_PROGRESS = frozenset({errno.EINPROGRESS, errno.EWOULDBLOCK, errno.EALREADY, errno.EAGAIN})


class RaceFailed(Exception):
    """No attempt connected: ``failures`` are ``(address, OSError)`` in the order the
    attempts failed; ``timed_out`` if the timeout ended the race first."""

    def __init__(self, failures: list[tuple[Any, OSError]], timed_out: bool) -> None:
        super().__init__(failures, timed_out)
        self.failures = failures
        self.timed_out = timed_out


def order(infos: Sequence[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """getaddrinfo tuples in Happy Eyeballs order: families alternate, the first
    answer's family first; an address (with its port) appears once."""
    first: list[tuple[Any, ...]] = []
    other: list[tuple[Any, ...]] = []
    seen: set[Any] = set()
    lead = None
    for info in infos:
        family, address = info[0], info[4]
        if family not in (_stdlib_socket.AF_INET, _stdlib_socket.AF_INET6) or address[:2] in seen:
            continue
        seen.add(address[:2])
        if lead is None:
            lead = family
        (first if family == lead else other).append(info)
    out: list[tuple[Any, ...]] = []
    for index in range(max(len(first), len(other))):
        out.extend(group[index] for group in (first, other) if index < len(group))
    return out


def race(candidates: Sequence[tuple[Any, ...]], attempt_delay: float, timeout: float | None) -> gsocket.socket:
    """Connect to the first of ``candidates`` (getaddrinfo tuples, already in
    :func:`order`) that answers; ``attempt_delay`` and ``timeout`` in seconds
    (``timeout`` None: no limit but the kernel's).  Returns the connected gevent
    socket (blocking again, with ``timeout``); raises :class:`RaceFailed`."""
    deadline = None if timeout is None else time.monotonic() + timeout
    waiting = list(candidates)
    pending: dict[gsocket.socket, Any] = {}  # attempts in flight -> their address
    failures: list[tuple[Any, OSError]] = []
    next_start = 0.0
    winner: gsocket.socket | None = None
    timed_out = False
    try:
        while winner is None and (waiting or pending):
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                timed_out = True
                break
            if waiting and now >= next_start:
                family, kind, proto, _, address = waiting.pop(0)
                sock = gsocket.socket(family, kind, proto)
                try:
                    sock.setblocking(False)
                    err = sock.connect_ex(address)  # EINPROGRESS: the kernel goes on alone
                except BaseException:
                    sock.close()
                    raise
                if err in (0, errno.EISCONN):
                    winner = sock
                elif err in _IN_PROGRESS:
                    pending[sock] = address
                    next_start = now + attempt_delay
                else:
                    sock.close()
                    failures.append((address, OSError(err, os.strerror(err))))
                continue
            until = next_start if waiting else deadline
            if deadline is not None and until is not None:
                until = min(until, deadline)
            wait = None if until is None else max(until - time.monotonic(), 0.0)
            _, writable, _ = gevent.select.select([], list(pending), [], wait)
            for sock in writable:
                address = pending.pop(sock)
                err = sock.getsockopt(_stdlib_socket.SOL_SOCKET, _stdlib_socket.SO_ERROR)
                if err == 0 and winner is None:
                    winner = sock
                    continue
                sock.close()
                if err:
                    failures.append((address, OSError(err, os.strerror(err))))
                    next_start = time.monotonic()  # a failure starts the next attempt at once
    finally:
        for sock in pending:
            sock.close()
    if winner is None:
        raise RaceFailed(failures, timed_out)
    winner.settimeout(timeout)
    return winner
