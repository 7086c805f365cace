"""geventhttpclient: its HTTPClientPool (one HTTPClient per origin, each with
concurrency=per-origin connections); the body is gunzipped by hand (HTTPClient hands
back the bytes as sent)."""

from __future__ import annotations

from urllib.parse import urlsplit

import _common
from geventhttpclient.client import HTTPClientPool

plan = _common.plan_from_argv()
pool = HTTPClientPool(concurrency=plan.per_origin, ssl_options={"ca_certs": plan.ca},
                      connection_timeout=_common.TIMEOUT_S, network_timeout=_common.TIMEOUT_S)
HEADERS = {"Accept-Encoding": "gzip"}


def one(url: str) -> tuple[int, bytes]:
    res = pool.get_client(url).get(urlsplit(url).path, headers=HEADERS)
    try:
        raw = res.read()
    finally:
        res.release()
    return res.status_code, _common.gunzip_if(res.get("content-encoding"), raw)


_common.crawl_greenlets(plan, one)
