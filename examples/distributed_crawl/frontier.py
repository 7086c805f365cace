"""The crawl's shared state in Redis: the frontier's "seen" set and the results.

Every worker on every machine sees the same keys, so deduplication and the
results are global.  Each step that must not be split by a worker dying is one
Lua script (Redis runs a script atomically):

``crawl:{id}:config``   hash: ``origins`` (JSON list), ``max_pages``, ``started_at``
``crawl:{id}:seen``     set of every URL ever claimed (the dedup set)
``crawl:{id}:results``  hash URL -> JSON record, written with HSETNX: once per URL
``crawl:{id}:stats``    hash of counters: ``pages``, ``fetches``, ``bytes``,
                        ``status:<code>``, ``error:<code>``, ``last_at``
``crawl:{id}:children:{url}``  list of the links a page claimed, kept until the
                        page's result is recorded (see :data:`CLAIM`)

A worker killed between claiming a page's links and enqueueing them would lose
them: they are in ``seen`` (no one else claims them) but in no queue.  So the
claim also writes them to the page's ``children`` list, and the page's task,
when it runs again after the kill (late acknowledgement re-delivers it), enqueues
that whole list again.  A child that was enqueued twice that way is fetched once:
its task returns early when its URL is already recorded.
"""

from __future__ import annotations

import json
import time

import redis

#: KEYS: seen, children.  ARGV: max_pages, link...
#: Adds each link to ``seen`` while ``seen`` holds fewer than max_pages (0: no limit);
#: the links this call added join the page's ``children`` list; returns the whole list
#: (the links an earlier, killed run of the same page claimed come back too).
CLAIM = """
local max = tonumber(ARGV[1])
for i = 2, #ARGV do
  if max > 0 and redis.call('SCARD', KEYS[1]) >= max then break end
  if redis.call('SADD', KEYS[1], ARGV[i]) == 1 then
    redis.call('RPUSH', KEYS[2], ARGV[i])
  end
end
return redis.call('LRANGE', KEYS[2], 0, -1)
"""

#: KEYS: results, stats, children.  ARGV: url, record JSON, status-or-error key, bytes, now.
#: Records a URL once (HSETNX); counts it only if this call recorded it; drops the
#: page's ``children`` list (its links are enqueued by now).  Returns 1 if recorded.
RECORD = """
local fresh = redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2])
if fresh == 1 then
  redis.call('HINCRBY', KEYS[2], 'pages', 1)
  redis.call('HINCRBY', KEYS[2], ARGV[3], 1)
  redis.call('HINCRBY', KEYS[2], 'bytes', ARGV[4])
  redis.call('HSET', KEYS[2], 'last_at', ARGV[5])
end
redis.call('DEL', KEYS[3])
return fresh
"""


def key(crawl_id: str, name: str) -> str:
    return f"crawl:{crawl_id}:{name}"


class Frontier:
    """One crawl's keys, through a redis-py client (thread- and greenlet-safe)."""

    def __init__(self, client: redis.Redis, crawl_id: str) -> None:
        self.client = client
        self.crawl_id = crawl_id
        self.seen = key(crawl_id, "seen")
        self.results = key(crawl_id, "results")
        self.stats = key(crawl_id, "stats")
        self.config = key(crawl_id, "config")
        self._claim = client.register_script(CLAIM)
        self._record = client.register_script(RECORD)
        self._origins: frozenset[str] | None = None
        self._max_pages: int | None = None

    # ---------------------------------------------------------------- setup

    def create(self, seeds: list[str], origins: list[str], max_pages: int) -> list[str]:
        """Writes the crawl's config and claims the seeds; returns the seeds to enqueue."""
        self.client.hset(
            self.config,
            mapping={
                "origins": json.dumps(sorted(origins)),
                "max_pages": max_pages,
                "started_at": repr(time.time()),
            },
        )
        return [url for url in seeds if self.client.sadd(self.seen, url)]

    def origins(self) -> frozenset[str]:
        """The origins (``scheme://host:port``) this crawl may enter (read once)."""
        if self._origins is None:
            raw = self.client.hget(self.config, "origins")
            self._origins = frozenset(json.loads(raw) if raw else ())
        return self._origins

    def max_pages(self) -> int:
        if self._max_pages is None:
            self._max_pages = int(self.client.hget(self.config, "max_pages") or 0)
        return self._max_pages

    # ----------------------------------------------------------- the task's steps

    def begin(self, url: str) -> bool:
        """False if ``url`` is already recorded (a duplicate delivery: skip it);
        otherwise counts one more fetch."""
        if self.client.hexists(self.results, url):
            return False
        self.client.hincrby(self.stats, "fetches", 1)
        return True

    def claim(self, parent: str, links: list[str]) -> list[str]:
        """The links ``parent`` must enqueue (see :data:`CLAIM`)."""
        children = key(self.crawl_id, f"children:{parent}")
        got = self._claim(keys=[self.seen, children], args=[self.max_pages(), *links])
        return [link.decode() if isinstance(link, bytes) else link for link in got]

    def record(self, url: str, record: dict) -> bool:
        """Stores ``url``'s result once; True if this call stored it."""
        counter = f"error:{record['error']}" if record.get("error") else f"status:{record['status']}"
        children = key(self.crawl_id, f"children:{url}")
        return bool(
            self._record(
                keys=[self.results, self.stats, children],
                args=[url, json.dumps(record, sort_keys=True), counter, record.get("bytes", 0), repr(time.time())],
            )
        )

    # ----------------------------------------------------------------- reading

    def progress(self) -> dict:
        """Counters for ``report``: discovered, recorded, fetches, statuses, errors..."""
        pipe = self.client.pipeline()
        pipe.scard(self.seen).hgetall(self.stats).hget(self.config, "started_at")
        seen, stats, started = pipe.execute()
        stats = {k.decode(): v.decode() for k, v in stats.items()}
        pages = int(stats.get("pages", 0))
        last = float(stats.get("last_at", 0) or 0)
        started_at = float(started or 0)
        return {
            "discovered": seen,
            "recorded": pages,
            "pending": seen - pages,
            "fetches": int(stats.get("fetches", 0)),
            "bytes": int(stats.get("bytes", 0)),
            "statuses": {k[7:]: int(v) for k, v in stats.items() if k.startswith("status:")},
            "errors": {k[6:]: int(v) for k, v in stats.items() if k.startswith("error:")},
            "seconds": max(last - started_at, 0.0) if last else 0.0,
        }

    def unrecorded(self) -> list[str]:
        """The URLs claimed but not recorded yet (queued, running, or lost)."""
        pipe = self.client.pipeline()
        pipe.smembers(self.seen).hkeys(self.results)
        seen, recorded = pipe.execute()
        return sorted(url.decode() for url in seen - set(recorded))

    def records(self) -> dict[str, dict]:
        """Every recorded URL and its record."""
        return {
            k.decode(): json.loads(v)
            for k, v in self.client.hscan_iter(self.results, count=1000)
        }
