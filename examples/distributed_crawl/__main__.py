"""Commands: ``seed`` starts a crawl, ``report`` prints its progress and totals,
``site`` serves a local site to crawl.  Run from ``examples/``::

    python -m distributed_crawl site --origins 4 --pages 500 > site-urls.txt
    python -m distributed_crawl seed $(cat site-urls.txt)
    python -m distributed_crawl report --wait

(the workers: ``celery -A distributed_crawl worker -P gevent -c 500``).
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
import uuid


def seed(args: argparse.Namespace) -> int:
    from .app import app
    from .tasks import crawl, frontier, origin

    crawl_id = args.crawl or uuid.uuid4().hex[:12]
    front = frontier(crawl_id)
    if front.client.exists(front.config):
        print(f"crawl {crawl_id} exists already: pick another --crawl", file=sys.stderr)
        return 2
    origins = {origin(url) for url in args.urls} | {origin(o) for o in args.allow}
    fresh = front.create(args.urls, sorted(origins), args.max_pages)
    with app.producer_or_acquire() as producer:
        for url in fresh:
            crawl.apply_async((crawl_id, url), producer=producer)
    front.client.set("crawl:latest", crawl_id)
    front.client.sadd("crawl:active", crawl_id)  # the workers' upkeep watches it
    print(crawl_id)
    print(f"crawl {crawl_id}: {len(fresh)} seeds, origins {sorted(origins)}", file=sys.stderr)
    return 0


def report(args: argparse.Namespace) -> int:
    from .tasks import frontier

    probe = frontier("-")
    crawl_id = args.crawl or (probe.client.get("crawl:latest") or b"").decode()
    if not crawl_id or not probe.client.exists(f"crawl:{crawl_id}:config"):
        print(f"no crawl {crawl_id!r}: start one with seed", file=sys.stderr)
        return 2
    front = frontier(crawl_id)
    give_up = time.monotonic() + args.timeout
    while True:
        p = front.progress()
        done = p["pending"] == 0
        if not args.json:
            print(
                f"crawl {crawl_id}: {p['recorded']}/{p['discovered']} recorded, "
                f"{p['pending']} pending, {p['fetches']} fetches",
                file=sys.stderr if args.wait and not done else sys.stdout,
                flush=True,
            )
        if done or not args.wait:
            break
        if time.monotonic() > give_up:
            print(f"crawl {crawl_id}: not done after {args.timeout} s", file=sys.stderr)
            return 1
        time.sleep(args.interval)
    rate = p["recorded"] / p["seconds"] if p["seconds"] else 0.0
    p["pages_per_second"] = round(rate, 1)
    if args.json:
        print(json.dumps(p, sort_keys=True))
    else:
        print(f"statuses {p['statuses']}, errors {p['errors']}, {p['bytes']} bytes")
        print(f"{p['recorded']} pages in {p['seconds']:.2f} s: {rate:.0f} pages/s")
    return 0 if done else 3


def site(args: argparse.Namespace) -> int:
    import gevent
    import gevent.event

    from .site import Site

    if args.key and args.cert:
        with open(args.key, "rb") as k, open(args.cert, "rb") as c:
            tls = {"key": k.read(), "cert": c.read()}
        ca_note = ""
    else:
        from greenhttps.devcert import dev_certificate

        dev = dev_certificate()
        tls = dev.server_options()
        ca_note = f"; workers trust it with CRAWL_CA_FILE={dev.ca_file}"
    demo = Site(args.origins, args.pages, tls, delay_ms=args.delay_ms)
    for base in demo.listen():
        print(base + "/", flush=True)
    print(f"site: {args.origins} origins x {args.pages} pages{ca_note} (Ctrl-C stops)",
          file=sys.stderr, flush=True)
    stop = gevent.event.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        gevent.signal_handler(signum, stop.set)
    stop.wait()
    demo.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m distributed_crawl", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("seed", help="start a crawl from these URLs")
    p.add_argument("urls", nargs="+", metavar="URL")
    p.add_argument("--crawl", help="the crawl's id (default: a new random one)")
    p.add_argument("--allow", action="append", default=[], metavar="ORIGIN",
                   help="another origin the crawl may enter (the seeds' are allowed)")
    p.add_argument("--max-pages", type=int, default=0, help="stop discovering after N URLs (0: no limit)")
    p.set_defaults(run=seed)

    p = sub.add_parser("report", help="progress and totals of a crawl")
    p.add_argument("--crawl", help="the crawl's id (default: the latest seeded)")
    p.add_argument("--wait", action="store_true", help="until nothing is pending")
    p.add_argument("--interval", type=float, default=1.0, help="seconds between progress lines")
    p.add_argument("--timeout", type=float, default=3600.0, help="give up waiting after this")
    p.add_argument("--json", action="store_true", help="the totals as one JSON object")
    p.set_defaults(run=report)

    p = sub.add_parser("site", help="serve a local site to crawl (prints its origins' URLs)")
    p.add_argument("--origins", type=int, default=4)
    p.add_argument("--pages", type=int, default=500, help="pages per origin")
    p.add_argument("--delay-ms", type=float, default=0.0, help="each page answers after this")
    p.add_argument("--key", help="PEM key (default: the development certificate's)")
    p.add_argument("--cert", help="PEM certificate chain")
    p.set_defaults(run=site)

    args = parser.parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
