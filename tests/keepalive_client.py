"""Load clients for the shutdown tests: keep-alive, never retrying, counting outcomes.

Each client greenlet loops requests over one TLS keep-alive connection at a time.
Like every pooling client (Node's Agent drops a pooled socket that emitted
``'end'``; urllib3 checks ``is_connection_dropped`` before reuse) it looks at a
pooled connection before sending on it: one the server has closed (EOF) is put
away and a new one opened -- no request was sent on it, so nothing is retried.  A
response with ``Connection: close`` ends its connection the same way.  A request
that was sent is never sent again, whatever happens to it.

Outcomes are counted by kind in :attr:`Clients.outcomes`; kinds starting with
``FAIL`` must not happen.  The others:

* ``ok``; ``pooled connection closed by the server, put away``; ``Connection:
  close, put away`` -- normal.
* ``idle_race`` -- a request sent on a reused connection read EOF (or a reset)
  before any byte of a response: the server closed the idle connection while the
  request was on its way.  No server can answer it (RFC 9112 §9.3.1 lets the
  client retry exactly this); tests bound and show it rather than hide it.
* ``refused after close`` -- ECONNREFUSED once :attr:`Clients.closed_at` has passed.
* ``reset in the closing listener's backlog`` -- a connection the kernel queued
  for a listening socket that then closed (so it was reset, not refused); only
  after :attr:`Clients.closed_at`.
"""

from __future__ import annotations

import select
import ssl
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import gevent
import gevent.event
import gevent.socket

from helpers import wrap_client


class Closed(Exception):
    """The server closed the connection; ``got`` bytes of a response had come."""

    def __init__(self, got: int, why: str) -> None:
        super().__init__(f"closed after {got} bytes: {why}")
        self.got = got


def read_response(sock: Any, timeout: float) -> tuple[int, dict[str, str], bytes]:
    """One response framed by Content-Length; raises Closed with the count of bytes
    that had arrived if the connection ends (EOF or reset) first."""
    data = b""
    deadline = time.monotonic() + timeout

    def more() -> None:
        nonlocal data
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            chunk = sock.recv(65536)
        except (ConnectionError, ssl.SSLError) as exc:
            raise Closed(len(data), repr(exc)) from None
        if not chunk:
            raise Closed(len(data), "EOF")
        data += chunk

    while b"\r\n\r\n" not in data:
        more()
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        more()
        body = data.partition(b"\r\n\r\n")[2]
    return int(lines[0].split()[1]), headers, body[:length]


def dropped_by_server(sock: Any) -> bool:
    """True if a pooled connection is readable because the server closed it (EOF or
    close_notify): it cannot carry a request.  (The first response read the TLS 1.3
    tickets; nothing else is expected on an idle connection.)"""
    readable, _, _ = select.select([sock.fileno()], [], [], 0)
    if not readable or sock.pending():
        return False
    sock.settimeout(0)
    try:
        return sock.recv(1) == b""
    except (ssl.SSLWantReadError, BlockingIOError):
        return False  # a TLS record without application data
    except OSError:
        return True


class Clients:
    """``count`` client greenlets against 127.0.0.1:``port`` until :meth:`stop`."""

    def __init__(self, port: int, ctx: ssl.SSLContext, count: int, *,
                 path: Callable[[int, int], str] = lambda n, i: f"/?c={n}",
                 on_connect: Callable[[Any, float], None] | None = None,
                 on_response: Callable[[str, bytes], None] | None = None) -> None:
        self.port, self.ctx = port, ctx
        self.path, self.on_connect, self.on_response = path, on_connect, on_response
        self.outcomes: Counter[str] = Counter()
        self.details: list[str] = []
        #: When the listener closed (or began to): refusals are expected from then on.
        self.closed_at = float("inf")
        self._stop = gevent.event.Event()
        self.greenlets = [gevent.spawn(self._run, n) for n in range(count)]

    def stop(self, timeout: float = 20) -> None:
        self._stop.set()
        gevent.joinall(self.greenlets, timeout=timeout)

    def failures(self) -> list[str]:
        return [kind for kind in self.outcomes if kind.startswith("FAIL")]

    def report(self) -> str:
        return "\n".join([f"{k}: {v}" for k, v in sorted(self.outcomes.items())] + self.details[:20])

    def _count(self, kind: str, detail: str | None = None) -> None:
        self.outcomes[kind] += 1
        if detail is not None:
            self.details.append(f"{kind}: {detail}")

    def _connect(self) -> Any:
        started = time.monotonic()
        after_close = started >= self.closed_at
        try:
            raw = gevent.socket.create_connection(("127.0.0.1", self.port), timeout=10)
        except ConnectionRefusedError:
            self._count("refused after close" if after_close else "FAIL refused before close")
            return None
        try:
            sock = wrap_client(raw, self.ctx, "localhost", timeout=10)
        except (OSError, ssl.SSLError) as exc:
            raw.close()
            self._count("reset in the closing listener's backlog" if after_close else "FAIL handshake", repr(exc))
            return None
        if self.on_connect is not None:
            self.on_connect(sock, started)
        return sock

    def _run(self, n: int) -> None:
        sock: Any = None
        reused = False
        count = 0
        while not self._stop.is_set():
            if sock is not None and dropped_by_server(sock):
                self._count("pooled connection closed by the server, put away")
                sock.close()
                sock = None
            if sock is None:
                sock = self._connect()
                if sock is None:
                    gevent.sleep(0.05)
                    continue
                reused = False
            count += 1
            path = self.path(n, count)
            try:
                sock.sendall(f"GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode())
                status, headers, body = read_response(sock, timeout=15)
            except (Closed, OSError) as exc:
                got = exc.got if isinstance(exc, Closed) else 0
                kind = "idle_race" if reused and got == 0 else "FAIL request dropped"
                self._count(kind, f"{path} reused={reused}: {exc!r}")
                sock.close()
                sock = None
                continue
            if status != 200:
                self._count(f"FAIL status {status}")
            else:
                self._count("ok")
                if self.on_response is not None:
                    self.on_response(path, body)
            reused = True
            if headers.get("connection", "").lower() == "close":
                self._count("Connection: close, put away")
                sock.close()
                sock = None
        if sock is not None:
            sock.close()
