"""The crawl task: fetch one URL, record the result once, enqueue the new links.

The fetch goes through one :class:`greenhttps.Agent` per worker process, so the
per-origin connection limit (``CRAWL_MAX_SOCKETS``) holds across all the greenlets
of a ``-P gevent`` worker: 500 greenlets crawling one site share its 6 connections.
greenhttps needs no patching of its own; Celery's gevent pool patches the standard
library for redis-py and kombu, and greenhttps works either way.

Under ``-P threads`` each thread runs its own gevent hub, and greenhttps's sockets
belong to the hub that made them, so each thread gets its own Agent (and the limit
is per thread).  ``-P solo`` runs one task at a time: one Agent, one connection.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import socket
import threading
import time
from html.parser import HTMLParser
from typing import Any
from urllib.parse import urldefrag, urljoin, urlsplit

import gevent.monkey
import redis

import greenhttps

from .app import BROKER_URL, app
from .frontier import Frontier

REDIS_URL = os.environ.get("CRAWL_REDIS_URL", BROKER_URL)
MAX_SOCKETS = int(os.environ.get("CRAWL_MAX_SOCKETS", "6"))
#: The least time between two requests' starts to one origin, per worker (0: none).
PACE_MS = float(os.environ.get("CRAWL_PACE_MS", "0"))
TIMEOUT_MS = float(os.environ.get("CRAWL_TIMEOUT_MS", "30000"))
CA_FILE = os.environ.get("CRAWL_CA_FILE")
#: Sent with every request: who is crawling (the demo site counts connections by it).
WORKER_ID = f"{socket.gethostname()}/{os.getpid()}"

_local = threading.local()
_shared: dict[str, Any] = {}
_lock = threading.Lock()


def agent() -> greenhttps.Agent:
    """The Agent of this process (gevent pool, solo) or of this thread (threads pool)."""
    # With the gevent pool, threading is patched: "threads" are greenlets, and one
    # Agent must serve them all, or the per-origin limit would be per greenlet.
    holder = _shared if gevent.monkey.is_module_patched("threading") else _local.__dict__
    found = holder.get("agent")
    if found is None:
        options: dict[str, Any] = {"keep_alive": True, "max_sockets": MAX_SOCKETS, "pace": PACE_MS or None}
        if CA_FILE:
            with open(CA_FILE, "rb") as f:
                options["ca"] = f.read()
        found = holder["agent"] = greenhttps.Agent(**options)
    return found


def frontier(crawl_id: str) -> Frontier:
    """A :class:`Frontier` over this process's Redis pool (a bounded, blocking one:
    500 greenlets wait for one of its connections instead of opening 500)."""
    with _lock:
        client = _shared.get("redis")
        if client is None:
            pool = redis.BlockingConnectionPool.from_url(
                REDIS_URL,
                max_connections=int(os.environ.get("CRAWL_REDIS_CONNECTIONS", "50")),
                timeout=60,
            )
            client = _shared["redis"] = redis.Redis(connection_pool=pool)
        return Frontier(client, crawl_id)


# ----------------------------------------------------------------- fetching


@dataclasses.dataclass
class Page:
    status: int | None
    url: str
    content_type: str
    content: bytes
    timings: dict[str, Any]
    error: str | None = None


def fetch_page(url: str) -> Page:
    """One URL through greenhttps.fetch() and the shared Agent: redirects followed,
    bodies decoded, one retry of a refused or reset connection."""
    try:
        res = greenhttps.fetch(
            url,
            agent=agent(),
            headers={"X-Crawl-Worker": WORKER_ID},
            deadline=TIMEOUT_MS,
            retry=1,
        )
        content = res.content
    except (greenhttps.Error, OSError) as exc:
        code = getattr(exc, "code", None) or type(exc).__name__
        return Page(None, url, "", b"", {}, error=str(code))
    return Page(
        res.status,
        res.url,
        res.headers.get("content-type", ""),
        content,
        {k: round(v, 3) if isinstance(v, float) else v for k, v in dataclasses.asdict(res.timings).items()},
    )


# ------------------------------------------------------------------ links


class _Links(HTMLParser):
    def __init__(self, base: str) -> None:
        super().__init__(convert_charrefs=True)
        self.base = base
        self.hrefs: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "base":
            href = dict(attrs).get("href")
            if href:
                self.base = urljoin(self.base, href)
        elif tag in ("a", "area"):
            href = dict(attrs).get("href")
            if href:
                self.hrefs.append(urljoin(self.base, href.strip()))


def origin(url: str) -> str:
    """``scheme://host:port`` with the default port spelled out."""
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return f"{parts.scheme}://{parts.hostname}:{port}"


def extract_links(page_url: str, html: str, origins: frozenset[str]) -> list[str]:
    """The links of an HTML page, absolute, without fragments, in the crawl's origins,
    each once, in page order."""
    parser = _Links(page_url)
    parser.feed(html)
    parser.close()
    links: dict[str, None] = {}
    for href in parser.hrefs:
        link = urldefrag(href).url
        if urlsplit(link).scheme in ("http", "https") and origin(link) in origins:
            links[link] = None
    return list(links)


# -------------------------------------------------------------------- task


# ignore_result: the record goes to the frontier's results hash (once per URL, what
# ``report`` reads); storing it in the result backend too would cost a write per
# task, and sending a task whose result is kept costs a subscription to its result.
@app.task(
    bind=True,
    name="distributed_crawl.crawl",
    acks_late=True,
    reject_on_worker_lost=True,
    ignore_result=True,
)
def crawl(self: Any, crawl_id: str, url: str) -> dict[str, Any] | None:
    """Fetch ``url`` for crawl ``crawl_id``; record it; enqueue the links it claims."""
    front = frontier(crawl_id)
    if not front.begin(url):
        return None  # recorded already: a duplicate delivery after a worker died
    started = time.monotonic()
    page = fetch_page(url)
    links: list[str] = []
    if page.status == 200 and "html" in page.content_type:
        links = extract_links(page.url, page.content.decode("utf-8", "replace"), front.origins())
    # Claim before enqueueing, enqueue before recording: a kill anywhere in between
    # leaves this task unacknowledged, and its next run enqueues the claimed links again.
    children = front.claim(url, links)
    if children:
        with app.producer_or_acquire() as producer:
            for child in children:
                crawl.apply_async((crawl_id, child), producer=producer)
    record = {
        "status": page.status,
        "final_url": page.url,
        "error": page.error,
        "sha256": hashlib.sha256(page.content).hexdigest() if page.status is not None else None,
        "bytes": len(page.content),
        "links": len(links),
        "timings": {**page.timings, "task_ms": round((time.monotonic() - started) * 1000, 3)},
        "worker": WORKER_ID,
    }
    front.record(url, record)
    return record
