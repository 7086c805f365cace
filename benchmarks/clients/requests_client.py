"""requests after gevent.monkey.patch_all(): one Session, pool_maxsize=--concurrency."""

from __future__ import annotations

from gevent import monkey

monkey.patch_all()

import _common  # noqa: E402
import requests  # noqa: E402
from requests.adapters import HTTPAdapter  # noqa: E402

args = _common.parse()
if args.mode.startswith("newconn"):
    _common.skip("keep-alive client only in this suite")
session = requests.Session()
session.mount("https://", HTTPAdapter(pool_connections=1, pool_maxsize=args.concurrency, pool_block=True))


def one() -> int:
    res = session.get(args.url, verify=args.ca)  # per call: REQUESTS_CA_BUNDLE would override session.verify
    if res.status_code != 200:
        raise RuntimeError(f"status {res.status_code}")
    return len(res.content)


_common.run_greenlets(args, one)
