"""greenhttps.fetch(), decoding on: one Agent(keep_alive=True, max_sockets=per-origin)
shared by every greenlet; ``res.content`` is the decoded page."""

from __future__ import annotations

import _common

import greenhttps

plan = _common.plan_from_argv()
with open(plan.ca, "rb") as f:
    agent = greenhttps.Agent(keep_alive=True, max_sockets=plan.per_origin, ca=f.read())
TIMEOUT_MS = _common.TIMEOUT_S * 1000


def one(url: str) -> tuple[int, bytes]:
    res = greenhttps.fetch(url, agent=agent, timeout=TIMEOUT_MS)
    return res.status, res.content


_common.crawl_greenlets(plan, one)
