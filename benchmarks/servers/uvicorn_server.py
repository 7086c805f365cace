"""uvicorn with httptools and a raw ASGI app (asyncio loop; no access log)."""

from __future__ import annotations

import _args
import uvicorn

args = _args.parse(__doc__)
BODY = args.body
START = {
    "type": "http.response.start",
    "status": 200,
    "headers": [(b"content-type", b"text/plain"), (b"content-length", str(len(BODY)).encode())],
}
END = {"type": "http.response.body", "body": BODY}


async def app(scope, receive, send):  # type: ignore[no-untyped-def]
    if scope["type"] != "http":
        return
    await send(START)
    await send(END)


uvicorn.run(
    app,
    host="127.0.0.1",
    port=args.port,
    ssl_certfile=args.cert,
    ssl_keyfile=args.key,
    http="httptools",
    loop="asyncio",
    lifespan="off",
    access_log=False,
    log_level="warning",
    backlog=2048,
    # Long enough that idle connections of the memory test stay open while measured.
    timeout_keep_alive=60,
)
