"""A crawler: 1,000 URLs fetched by 100 greenlets through one pooled ``Agent``.

The pool does the rate limiting: ``Agent(keep_alive=True, max_sockets=10)`` keeps at
most 10 connections to the server, so 100 greenlets queue for them (first come,
first served) and each connection carries about 100 requests.  The local server
counts its TLS connections to show it.  Progress goes to stderr, the summary to
stdout.

Run it::

    python examples/crawler.py                       # 1,000 URLs
    python examples/crawler.py --count 100 --greenlets 20
"""

import argparse
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
        res.writeHead(200, {"Content-Type": "text/html"})
        res.end(f"<a href='{req.url}/next'>page {req.url}</a>\n")

    server = greenhttps.createServer(dev.server_options(), page).listen(0, "127.0.0.1")
    server.on("secureConnection", connections.append)
    base = f"https://localhost:{server.address()['port']}"

    agent = greenhttps.Agent(keep_alive=True, max_sockets=args.max_sockets)
    ca = dev.ca_pem()

    def fetch(url):
        res = greenhttps.get(url, agent=agent, ca=ca, timeout=10_000)
        return res.statusCode, len(res.read())

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
    agent.destroy()
    server.close()
    return 0 if statuses == {200: args.count} and len(connections) <= args.max_sockets else 1


if __name__ == "__main__":
    sys.exit(main())
