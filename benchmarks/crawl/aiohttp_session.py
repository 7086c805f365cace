"""aiohttp: one ClientSession(connector=TCPConnector(limit=0, limit_per_host=per-origin,
ssl=ctx)), --concurrency worker coroutines pulling from the shared URL list;
aiohttp decodes gzip itself (auto_decompress, its default)."""

from __future__ import annotations

import asyncio
import ssl

import _common
import aiohttp

plan = _common.plan_from_argv()
ctx = ssl.create_default_context(cafile=plan.ca)


async def main() -> _common.Measure:
    connector = aiohttp.TCPConnector(limit=0, limit_per_host=plan.per_origin, ssl=ctx)
    timeout = aiohttp.ClientTimeout(total=_common.TIMEOUT_S)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        todo = iter(plan.urls)

        async def worker() -> None:
            for url in todo:
                try:
                    async with session.get(url) as res:
                        body = await res.read()
                        status = res.status
                except Exception as exc:
                    plan.failed(exc)
                    continue
                plan.check(status, body)

        with _common.Measure() as m:
            await asyncio.gather(*(worker() for _ in range(min(plan.concurrency, plan.pages))))
    return m


_common.report(plan, asyncio.run(main()))
