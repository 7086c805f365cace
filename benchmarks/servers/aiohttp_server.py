"""aiohttp.web with one catch-all GET route (no access log)."""

from __future__ import annotations

import ssl

import _args
from aiohttp import web

args = _args.parse(__doc__)
BODY = args.body
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(args.cert, args.key)


async def handler(request: web.Request) -> web.Response:
    return web.Response(body=BODY, content_type="text/plain")


app = web.Application()
app.router.add_route("GET", "/{tail:.*}", handler)
web.run_app(app, host="127.0.0.1", port=args.port, ssl_context=ctx, access_log=None, print=None, backlog=1024,
            keepalive_timeout=60)
