"""``https.get`` the greenlet way: no callback, the call blocks and returns the response.

This is the seed's ``https.get(url, callback)`` example rewritten as plain blocking
code, which is what greenhttps is for: each greenlet waits for its own response
while the others run::

    res = greenhttps.get(url)          # blocks this greenlet only
    print(res.statusCode, res.read())

Run it::

    python examples/blocking_get.py                  # 20 greenlets against a local server
    python examples/blocking_get.py https://localhost:8443/ --ca ~/.cache/greenhttps/dev-ca.pem -n 5

With no URL it starts a local server (127.0.0.1, a free port, the development
certificate) whose handler sleeps 0.2 s before answering: 20 greenlets finish in
about 0.2 s, not 4 s, because they wait together.
"""

import argparse
import sys
import time

import gevent

import greenhttps
from greenhttps.devcert import dev_certificate


def local_server():
    """A slow hello-world server (0.2 s per request); returns it and the CA to trust."""
    dev = dev_certificate()

    def slow_hello(req, res):
        gevent.sleep(0.2)  # stands for a database call; blocks this connection only
        res.writeHead(200, {"Content-Type": "text/plain"})
        res.end(f"hello world from {req.url}\n")

    server = greenhttps.createServer(dev.server_options(), slow_hello).listen(0, "127.0.0.1")
    return server, dev.ca_pem()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("url", nargs="?", help="https URL to get (default: a local server)")
    parser.add_argument("--ca", help="PEM file of the CA to trust (default: the usual roots)")
    parser.add_argument("-n", type=int, default=20, help="how many greenlets (default 20)")
    args = parser.parse_args()

    server, tls = None, {}
    if args.url:
        base = args.url
        if args.ca:
            tls["ca"] = open(args.ca, "rb").read()
    else:
        server, tls["ca"] = local_server()
        base = f"https://localhost:{server.address()['port']}/"

    def fetch(i):
        url = base if args.url else f"{base}page/{i}"
        res = greenhttps.get(url, **tls)  # blocks this greenlet until the head arrives
        body = res.read()  # ... and until the whole body is in
        return res.statusCode, body

    started = time.monotonic()
    jobs = [gevent.spawn(fetch, i) for i in range(args.n)]
    gevent.joinall(jobs)
    took = time.monotonic() - started

    failed = 0
    for i, job in enumerate(jobs):
        if job.successful():
            status, body = job.value
            print(f"{i:3}: statusCode: {status}, {body.decode(errors='replace').strip()[:60]}")
        else:
            failed += 1
            print(f"{i:3}: error: {job.exception}", file=sys.stderr)
    print(f"{args.n - failed} of {args.n} responses in {took:.2f} s")
    if server is not None:
        server.close()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
