"""urllib3 after gevent.monkey.patch_all(): one PoolManager, maxsize=--concurrency."""

from __future__ import annotations

from gevent import monkey

monkey.patch_all()

import _common  # noqa: E402
import urllib3  # noqa: E402

args = _common.parse()
if args.mode.startswith("newconn"):
    _common.skip("keep-alive client only in this suite")
http = urllib3.PoolManager(maxsize=args.concurrency, block=True, ca_certs=args.ca, retries=False)


def one() -> int:
    res = http.request("GET", args.url)
    if res.status != 200:
        raise RuntimeError(f"status {res.status}")
    return len(res.data)


_common.run_greenlets(args, one)
