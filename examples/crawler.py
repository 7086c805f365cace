"""A crawler: 1,000 URLs fetched by 100 greenlets through one pooled ``Agent``.

The pool does the rate limiting: ``Agent(keep_alive=True, max_sockets=10)`` keeps at
most 10 connections to the server, so 100 greenlets queue for them (first come,
first served) and each connection carries about 100 requests.  The local server
counts its TLS connections to show it, and sends its pages gzip-encoded:
``greenhttps.fetch()`` decodes them, retries what is worth retrying (``retry=2``),
honours ``HTTPS_PROXY``/``NO_PROXY`` (this one is local: ``proxy=False``) and
measures each fetch (``res.timings``).  Progress goes to stderr, the summary to
stdout.

Run it::

    python examples/crawler.py                       # 1,000 URLs
    python examples/crawler.py --count 100 --greenlets 20
"""

import argparse
import gzip
import statistics
import sys
import time

import gevent.pool

import greenhttps
from greenhttps.devcert import dev_certificate


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=1000, help="how many URLs (default 1000)")
    parser.add_argument("--greenlets", type=int, default=100, help="how many at once (default 100)")
    parser.add_argument(
        "--max-sockets", type=int, default=10, help="the agent's limit (default 10)"
    )
    args = parser.parse_args()

    dev = dev_certificate()
    connections = []

    def page(req, res):
        html = f"<a href='{req.url}/next'>page {req.url}</a>\n".encode()
        res.writeHead(200, {"Content-Type": "text/html", "Content-Encoding": "gzip"})
        res.end(gzip.compress(html))

    server = greenhttps.createServer(dev.server_options(), page).listen(0, "127.0.0.1")
    server.on("secureConnection", connections.append)
    base = f"https://localhost:{server.address()['port']}"

    agent = greenhttps.Agent(keep_alive=True, max_sockets=args.max_sockets)
    ca = dev.ca_pem()

    timings = []

    def fetch(url):
        res = greenhttps.fetch(url, agent=agent, ca=ca, timeout=10_000, retry=2, proxy=False)
        text = res.text()  # decoded from gzip
        timings.append(res.timings.total)
        return res.status, len(text)

    urls = [f"{base}/page/{i}" for i in range(args.count)]
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

    rate = args.count / took
    print(
        f"{args.count} URLs, {args.greenlets} greenlets: statuses {statuses}, {total_bytes} bytes"
    )
    print(f"{len(connections)} connections (max_sockets={args.max_sockets}), {rate:.0f} requests/s")
    print(f"median fetch {statistics.median(timings):.1f} ms (queueing for a connection included)")
    agent.destroy()
    server.close()
    return 0 if statuses == {200: args.count} and len(connections) <= args.max_sockets else 1


if __name__ == "__main__":
    sys.exit(main())
