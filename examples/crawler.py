"""A polite crawler: URLs on two sites, fetched by a pool of greenlets through one Agent.

The shape of a crawl, on two local sites (two servers, two origins):

- one ``Agent`` for the whole crawl: ``max_sockets`` bounds the connections to each
  site, ``pace`` spaces the requests to each site (a site gets one request every
  ``pace`` ms however many greenlets ask; the other site is not held up), and
  ``proxy_env`` sends them through ``HTTPS_PROXY`` as curl would, ``NO_PROXY``
  honoured (the demo's sites are local, so they are added to it);
- ``greenhttps.fetch(..., retry=2)``: a 503 with ``Retry-After`` is tried again (each
  site answers every 7th page with one, once), connection failures too;
- gzip bodies decoded by fetch; ``res.timings`` for each page.

Each site stamps the arrival of every request, so the summary shows the pacing from
the servers' side (as a rate: the pace spaces the moments requests get their
connection, and a new connection's handshakes come after that).  Progress goes to stderr, the summary to stdout.

Run it::

    python examples/crawler.py                       # 1,000 URLs, pace 2 ms
    python examples/crawler.py --count 100 --greenlets 20 --pace 50
    HTTPS_PROXY=http://proxy:3128 python examples/crawler.py   # the local sites stay direct
"""

import argparse
import gzip
import os
import statistics
import sys
import time

import gevent.pool

import greenhttps
from greenhttps.devcert import dev_certificate


class Site:
    """A local HTTPS site: gzip pages, every 7th one a 503 the first time it is asked."""

    def __init__(self, dev):
        self.arrivals = []
        self.connections = 0
        self.failed_once = set()
        self.server = greenhttps.createServer(dev.server_options(), self.page).listen(0, "127.0.0.1")
        self.server.on("secureConnection", self.connected)
        self.base = f"https://localhost:{self.server.address()['port']}"

    def connected(self, socket):
        self.connections += 1

    def page(self, req, res):
        self.arrivals.append(time.monotonic())
        number = int(req.url.rsplit("/", 1)[1])
        if number % 7 == 3 and number not in self.failed_once:
            self.failed_once.add(number)
            res.writeHead(503, {"Retry-After": "0"})
            res.end()
            return
        html = f"<a href='{req.url}/next'>page {req.url}</a>\n".encode()
        res.writeHead(200, {"Content-Type": "text/html", "Content-Encoding": "gzip"})
        res.end(gzip.compress(html))

    def rate(self):
        """Requests per second as this site saw them (first to last arrival)."""
        span = self.arrivals[-1] - self.arrivals[0] if len(self.arrivals) > 1 else 0
        return (len(self.arrivals) - 1) / span if span else float("nan")


def proxy_environment(local_hosts):
    """The environment's proxy variables, with ``local_hosts`` added to NO_PROXY."""
    env = dict(os.environ)
    no_proxy = env.get("no_proxy") or env.get("NO_PROXY") or ""
    env["no_proxy"] = env["NO_PROXY"] = ",".join(filter(None, [no_proxy, *local_hosts]))
    return env


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=1000, help="how many URLs (default 1000)")
    parser.add_argument("--greenlets", type=int, default=100, help="how many at once (default 100)")
    parser.add_argument("--max-sockets", type=int, default=10, help="connections per site (default 10)")
    parser.add_argument("--pace", type=float, default=2, help="ms between requests to one site (default 2)")
    args = parser.parse_args()

    dev = dev_certificate()
    sites = [Site(dev), Site(dev)]
    agent = greenhttps.Agent(
        keep_alive=True,
        max_sockets=args.max_sockets,
        pace=args.pace,
        proxy_env=proxy_environment(["localhost", "127.0.0.1"]),
        ca=dev.ca_pem(),
    )

    timings = []

    def fetch(url):
        res = greenhttps.fetch(url, agent=agent, timeout=10_000, retry=2)
        text = res.text()  # decoded from gzip
        timings.append(res.timings)
        return res.status, len(text)

    urls = [f"{sites[i % 2].base}/page/{i // 2}" for i in range(args.count)]
    statuses = {}
    total_bytes = 0
    started = time.monotonic()
    pool = gevent.pool.Pool(args.greenlets)
    for done, (status, size) in enumerate(pool.imap_unordered(fetch, urls), 1):
        statuses[status] = statuses.get(status, 0) + 1
        total_bytes += size
        if done % 50 == 0 or done == args.count:
            print(f"\r{done}/{args.count} fetched", end="", file=sys.stderr, flush=True)
    took = time.monotonic() - started
    print(file=sys.stderr)

    retried = sum(t.retries for t in timings)
    reused = sum(t.reused for t in timings)
    print(f"{args.count} URLs, {args.greenlets} greenlets: statuses {statuses}, {total_bytes} bytes")
    print(f"connections per site: {', '.join(str(s.connections) for s in sites)} (max_sockets={args.max_sockets})")
    print(f"pace {args.pace:g} ms: at most {1000 / args.pace:.0f} requests/s per site; "
          f"they saw {', '.join(f'{s.rate():.0f}' for s in sites)}")
    print(f"{retried} retries (503 + Retry-After), {reused} of {args.count} over a pooled connection")
    print(f"median fetch {statistics.median(t.total for t in timings):.1f} ms "
          f"(waiting for its turn and a connection included), {args.count / took:.0f} requests/s")
    agent.destroy()
    for site in sites:
        site.server.close()
    ok = statuses == {200: args.count} and all(s.connections <= args.max_sockets for s in sites)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
