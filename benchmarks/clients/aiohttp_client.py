"""aiohttp: one ClientSession, TCPConnector(limit=--concurrency); force_close=True for
new connections (asyncio's SSL transport never resumes TLS sessions)."""

from __future__ import annotations

import asyncio
import ssl
import time

import _common
import aiohttp

args = _common.parse()
if args.mode == "newconn-resume":
    _common.skip("asyncio's TLS transport has no session resumption")
ctx = ssl.create_default_context(cafile=args.ca)


async def main() -> None:
    connector = aiohttp.TCPConnector(limit=args.concurrency, ssl=ctx, force_close=args.mode == "newconn")
    async with aiohttp.ClientSession(connector=connector) as session:

        async def run(n: int) -> tuple[int, float]:
            left = [n]
            total = [0]

            async def worker() -> None:
                while left[0] > 0:
                    left[0] -= 1
                    async with session.get(args.url) as res:
                        body = await res.read()
                        if res.status != 200:
                            raise RuntimeError(f"status {res.status}")
                    total[0] += len(body)

            start = time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(min(args.concurrency, n))))
            return total[0], time.perf_counter() - start

        if args.warmup:
            await run(args.warmup)
        nbytes, seconds = await run(args.n)
        _common.report(args.n, nbytes, seconds)


asyncio.run(main())
