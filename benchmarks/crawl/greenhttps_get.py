"""greenhttps.get() and gzip.decompress() by hand (how issue 22 measured before fetch()):
one Agent(keep_alive=True, max_sockets=per-origin) shared by every greenlet."""

from __future__ import annotations

import _common

import greenhttps

plan = _common.plan_from_argv()
with open(plan.ca, "rb") as f:
    agent = greenhttps.Agent(keep_alive=True, max_sockets=plan.per_origin, ca=f.read())
HEADERS = {"Accept-Encoding": "gzip"}
TIMEOUT_MS = _common.TIMEOUT_S * 1000


def one(url: str) -> tuple[int, bytes]:
    res = greenhttps.get(url, agent=agent, headers=HEADERS, timeout=TIMEOUT_MS)
    raw = res.read()
    return res.status_code, _common.gunzip_if(res.headers.get("content-encoding"), raw)


_common.crawl_greenlets(plan, one)
