"""A local site to crawl: several greenhttps origins of linked HTML pages, which
count what each crawling worker does to them.

Each origin serves ``/`` (a link to ``/page/0``) and ``/page/0`` ... ``/page/{N-1}``.
Page *i* links to pages *i+1* and *7i+3* of its origin (relative links, one with a
fragment), to page *i* of the next origin (absolute), and to addresses the crawl
must not follow (another site, ``mailto:``).  Every 50th page also links to a
redirect (``/old/i``, 301 to ``/new/i``, which nothing else links to) and to a
missing page (``/missing/i``, 404).  So a crawl seeded with every origin's ``/``
finds :meth:`Site.expected` and fetches each of :meth:`Site.paths` once.

The site counts, per origin and per crawling worker (the ``X-Crawl-Worker``
header the task sends), the connections open at once (a connection belongs to
the worker of its first request) and the fetches of each path.  ``GET /_stats``
on any origin returns the counts as JSON; ``GET /_reset`` clears them.
"""

from __future__ import annotations

import collections
import json
import time
from typing import Any

import gevent

import greenhttps

REDIRECT_EVERY = 50


class Site:
    def __init__(self, origins: int, pages: int, tls_options: dict[str, Any], *,
                 delay_ms: float = 0.0, host: str = "127.0.0.1") -> None:
        self.count, self.pages, self.delay = origins, pages, delay_ms / 1000
        self.host = host
        self.servers = [
            greenhttps.create_server(tls_options, self._handler(o)) for o in range(origins)
        ]
        self.bases: list[str] = []
        self.reset()

    def listen(self) -> list[str]:
        """Starts every origin on a free port; returns their base URLs (no slash)."""
        for server in self.servers:
            server.listen(0, self.host)
        self.bases = [f"https://{self.host}:{s.address()['port']}" for s in self.servers]
        return self.bases

    def close(self) -> None:
        for server in self.servers:
            server.close()
            server.close_all_connections()

    # ------------------------------------------------------------ what a crawl finds

    def expected(self) -> set[str]:
        """The URLs a crawl seeded with every origin's ``/`` records."""
        urls = set()
        for base in self.bases:
            urls.add(base + "/")
            for i in range(self.pages):
                urls.add(f"{base}/page/{i}")
                if i % REDIRECT_EVERY == 7:
                    urls.update((f"{base}/old/{i}", f"{base}/missing/{i}"))
        return urls

    def paths(self) -> set[str]:
        """The URLs that crawl fetches: :meth:`expected` plus the redirects' targets."""
        return self.expected() | {u.replace("/old/", "/new/") for u in self.expected() if "/old/" in u}

    # --------------------------------------------------------------------- counting

    def reset(self) -> None:
        self.open: collections.Counter[tuple[str, str]] = collections.Counter()
        self.peak: collections.Counter[tuple[str, str]] = collections.Counter()
        self.connections: collections.Counter[tuple[str, str]] = collections.Counter()
        self.fetches: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
        #: (time, (origin, worker), client port, open after, first request path or
        #: "" for a close): what to look at when a peak is higher than expected.
        self.history: list[tuple[float, tuple[str, str], int | None, int, str]] = []

    def stats(self) -> dict[str, Any]:
        def nest(counter: collections.Counter[tuple[str, str]]) -> dict[str, dict[str, int]]:
            out: dict[str, dict[str, int]] = collections.defaultdict(dict)
            for (origin, worker), n in counter.items():
                out[origin][worker] = n
            return out

        return {
            "peak_connections": nest(self.peak),
            "connections": nest(self.connections),
            "fetches": {url: dict(by) for url, by in self.fetches.items()},
        }

    def _count(self, origin: str, req: Any) -> None:
        worker = req.headers.get("x-crawl-worker", "?")
        sock = req.socket
        if getattr(sock, "crawl_worker", None) is None:
            # The first request names the connection's worker; it counts until closed.
            sock.crawl_worker = worker
            who = (origin, worker)
            self.open[who] += 1
            self.connections[who] += 1
            self.peak[who] = max(self.peak[who], self.open[who])
            opened_in = self.open  # a reset() in between must not go negative
            self.history.append((time.monotonic(), who, sock.remote_port, self.open[who], req.url))

            def closed(*_: Any) -> None:
                opened_in[who] -= 1
                self.history.append((time.monotonic(), who, sock.remote_port, opened_in[who], ""))

            sock.on("close", closed)
        self.fetches[origin + req.url][worker] += 1

    # ---------------------------------------------------------------------- pages

    def _handler(self, o: int) -> Any:
        def handle(req: Any, res: Any) -> None:
            path = req.url
            if path == "/_stats":
                return _send(res, 200, json.dumps(self.stats()), "application/json")
            if path == "/_reset":
                self.reset()
                return _send(res, 200, "{}", "application/json")
            base = self.bases[o]
            self._count(base, req)
            if self.delay:
                gevent.sleep(self.delay)
            if path == "/":
                return _send(res, 200, _html("home", ['<a href="/page/0">start</a>']))
            kind, _, number = path[1:].partition("/")
            if not number.isdigit() or int(number) >= self.pages:
                return _send(res, 404, _html("not found", []))
            i = int(number)
            if kind == "page":
                return _send(res, 200, self._page(o, i))
            if kind == "old" and i % REDIRECT_EVERY == 7:
                res.write_head(301, {"Location": f"/new/{i}", "Content-Length": "0"})
                return res.end()
            if kind == "new" and i % REDIRECT_EVERY == 7:
                return _send(res, 200, _html(f"moved page {i}", ['<a href="/page/0">start</a>']))
            return _send(res, 404, _html("not found", []))

        return handle

    def _page(self, o: int, i: int) -> str:
        n = self.pages
        other = self.bases[(o + 1) % self.count]
        links = [
            f'<a href="{(i + 1) % n}">next</a>',
            f'<a href="./{(7 * i + 3) % n}#middle">jump</a>',
            f'<a href="{other}/page/{i}">same page, next origin</a>',
            '<a href="https://elsewhere.invalid/">another site</a>',
            '<a href="mailto:crawler@example.org">mail</a>',
        ]
        if i % REDIRECT_EVERY == 7:
            links += [f'<a href="/old/{i}">moved</a>', f'<a href="/missing/{i}">gone</a>']
        return _html(f"page {i} of origin {o}", links)


def _html(title: str, links: list[str]) -> str:
    body = "\n".join(f"<p>{link}</p>" for link in links)
    return f"<!doctype html><html><head><title>{title}</title></head><body>\n{body}\n</body></html>\n"


def _send(res: Any, status: int, body: str, content_type: str = "text/html; charset=utf-8") -> None:
    data = body.encode()
    res.write_head(status, {"Content-Type": content_type, "Content-Length": str(len(data))})
    res.end(data)
