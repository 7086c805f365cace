"""greenhttps: create_server(opts, handler) with its defaults, one greenlet per connection."""

from __future__ import annotations

import _args

import greenhttps

args = _args.parse(__doc__)
body = args.body
with open(args.cert, "rb") as f:
    cert = f.read()
with open(args.key, "rb") as f:
    key = f.read()

server = greenhttps.create_server({"key": key, "cert": cert}, lambda req, res: res.end(body))
server.listen(args.port, "127.0.0.1")
server.serve_forever()
