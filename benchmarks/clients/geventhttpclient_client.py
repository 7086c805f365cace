"""geventhttpclient: one HTTPClient with a pool of --concurrency connections."""

from __future__ import annotations

import _common
from geventhttpclient import HTTPClient

args = _common.parse()
if args.mode.startswith("newconn"):
    _common.skip("keep-alive client only in this suite")
client = HTTPClient("127.0.0.1", args.port, ssl=True, ssl_options={"ca_certs": args.ca},
                    concurrency=args.concurrency, connection_timeout=10, network_timeout=30)


def one() -> int:
    res = client.get("/")
    body = res.read()
    res.release()
    if res.status_code != 200:
        raise RuntimeError(f"status {res.status_code}")
    return len(body)


_common.run_greenlets(args, one)
