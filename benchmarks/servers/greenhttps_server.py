"""greenhttps: create_server(opts, handler) with its defaults, one greenlet per connection.

``--tls-bio`` serves TLS on memory BIOs (``GREENHTTPS_TLS_BIO=1``, read at import).
"""

from __future__ import annotations

import os
import signal
import sys

if "--tls-bio" in sys.argv:
    sys.argv.remove("--tls-bio")
    os.environ["GREENHTTPS_TLS_BIO"] = "1"

import _args  # noqa: E402
import gevent  # noqa: E402

import greenhttps  # noqa: E402

args = _args.parse(__doc__)
body = args.body
with open(args.cert, "rb") as f:
    cert = f.read()
with open(args.key, "rb") as f:
    key = f.read()

server = greenhttps.create_server({"key": key, "cert": cert}, lambda req, res: res.end(body))
server.listen(args.port, "127.0.0.1")
# A clean exit on SIGINT/SIGTERM (peer_instructions.py reads valgrind's total at exit).
for signum in (signal.SIGINT, signal.SIGTERM):
    gevent.signal_handler(signum, server.close)
server.serve_forever()
