"""A per-agent DNS cache: resolver answers kept for a while, failures for less.

An :class:`~greenhttps.Agent` keeps one (``dns_cache=True``, the default) so that a
crawler opening many connections to one origin asks the resolver once, not once
per connection.  The cache is fed by whatever resolves for the request: the
request's ``lookup`` function (Node's option) or gevent's ``getaddrinfo`` (its
configured resolver: a slow lookup blocks only the greenlet that waits for it).
The resolver is part of the key, so two ``lookup`` functions never share answers.

``getaddrinfo()`` does not say how long its records live, so every answer is kept
for one fixed ``ttl`` (aiohttp's and undici's 10 s by default) and a failure
(``socket.gaierror``: ENOTFOUND, EAI_AGAIN) for ``negative_ttl`` (1 s): a dead name
is not asked again by every request in that second.  At most ``max_entries`` keys
are kept, the least recently used going first.  Lookups of one key at the same
time share one resolver call (the others wait for it); if that call ends without
an answer to keep (the greenlet was killed, a non-DNS error), the next waiter
asks again itself.

No socket is touched here; the cache only calls the resolver it is given.
"""

from __future__ import annotations

import collections
import socket as _stdlib_socket
import time
from typing import Any, Callable, Sequence

from gevent.event import Event

from . import errors

__all__ = ["DnsCache", "Resolver"]

#: ``resolver(host, port, family, kind)`` -> getaddrinfo-shaped tuples.
Resolver = Callable[[str, int, int, int], Sequence[tuple[Any, ...]]]


class DnsCache:
    """Resolver answers by ``(resolver, host, port, family, kind)``; times in milliseconds."""

    __slots__ = ("ttl", "negative_ttl", "max_entries", "_entries", "_flights", "_clock")

    def __init__(self, *, ttl: float = 10_000, negative_ttl: float = 1_000, max_entries: int = 1024,
                 clock: Callable[[], float] = time.monotonic) -> None:
        for name, value in (("dns_cache_ttl", ttl), ("dns_cache_negative_ttl", negative_ttl),
                            ("dns_cache_size", max_entries)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
                raise errors.InvalidArgumentError(f"{name} must be a number >= 0, got {value!r}", "ERR_OUT_OF_RANGE")
        self.ttl = ttl / 1000.0
        self.negative_ttl = negative_ttl / 1000.0
        self.max_entries = int(max_entries)
        #: key -> (expires_at, addresses or None, (error class, args) or None); LRU order.
        self._entries: collections.OrderedDict[tuple[Any, ...], tuple[float, Any, Any]] = collections.OrderedDict()
        #: key -> set when the lookup in flight for it ends.
        self._flights: dict[tuple[Any, ...], Event] = {}
        self._clock = clock

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"<DnsCache entries={len(self._entries)} ttl={self.ttl}s negative_ttl={self.negative_ttl}s>"

    def clear(self) -> None:
        """Forget every answer (lookups in flight still finish)."""
        self._entries.clear()

    def resolve(self, resolver: Resolver, host: str, port: int, family: int, kind: int) -> Sequence[tuple[Any, ...]]:
        """``resolver(host, port, family, kind)``'s answer, from the cache while it is fresh.

        Raises the resolver's ``socket.gaierror`` (a fresh copy of a cached one)."""
        key = (resolver, host, port, family, kind)
        while True:
            entry = self._entries.get(key)
            if entry is not None:
                if entry[0] > self._clock():
                    self._entries.move_to_end(key)
                    if entry[2] is not None:
                        cls, args = entry[2]
                        raise cls(*args)  # a new exception: a kept one would grow a traceback per raise
                    return entry[1]  # type: ignore[no-any-return]
                del self._entries[key]
            flight = self._flights.get(key)
            if flight is None:
                break
            flight.wait()  # someone asks the resolver right now: use their answer
        flight = self._flights[key] = Event()
        try:
            try:
                answer = tuple(resolver(host, port, family, kind))
            except _stdlib_socket.gaierror as exc:
                if self.negative_ttl > 0:
                    self._keep(key, self.negative_ttl, None, (type(exc), exc.args))
                raise
            if self.ttl > 0 and answer:
                self._keep(key, self.ttl, answer, None)
            return answer
        finally:
            del self._flights[key]
            flight.set()

    def _keep(self, key: tuple[Any, ...], ttl: float, answer: Any, failure: Any) -> None:
        if self.max_entries <= 0:
            return
        entries = self._entries
        entries[key] = (self._clock() + ttl, answer, failure)
        entries.move_to_end(key)
        while len(entries) > self.max_entries:
            entries.popitem(last=False)
