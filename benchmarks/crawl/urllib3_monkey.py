"""urllib3 after gevent.monkey.patch_all(): one PoolManager(maxsize=per-origin,
block=True), num_pools at least the number of origins (its default, 10, would evict
pools, and their connections, all through the crawl); urllib3 decodes gzip itself."""

from __future__ import annotations

from gevent import monkey

monkey.patch_all()

import _common  # noqa: E402
import urllib3  # noqa: E402

plan = _common.plan_from_argv()
http = urllib3.PoolManager(num_pools=max(10, len(plan.ports)), maxsize=plan.per_origin, block=True,
                           ca_certs=plan.ca, retries=False, timeout=_common.TIMEOUT_S,
                           headers={"Accept-Encoding": "gzip"})


def one(url: str) -> tuple[int, bytes]:
    res = http.request("GET", url)
    return res.status, res.data


_common.crawl_greenlets(plan, one)
