"""gevent.pywsgi.WSGIServer with keyfile/certfile, as shipped (--nodelay adds TCP_NODELAY).

As shipped, pywsgi wraps each accepted socket with ``keyfile``/``certfile`` (a new
SSLContext per connection) and leaves Nagle on.  The access log is off (log=None) so
that every server in the suite is measured without per-request logging.
"""

from __future__ import annotations

import socket
import sys

nodelay = "--nodelay" in sys.argv
if nodelay:
    sys.argv.remove("--nodelay")

import _args  # noqa: E402
from gevent import pywsgi  # noqa: E402

args = _args.parse(__doc__)
BODY = args.body
HEADERS = [("Content-Type", "text/plain"), ("Content-Length", str(len(BODY)))]


def app(environ, start_response):  # type: ignore[no-untyped-def]
    start_response("200 OK", HEADERS)
    return [BODY]


class NoDelayServer(pywsgi.WSGIServer):
    def wrap_socket_and_handle(self, client_socket, address):  # type: ignore[no-untyped-def]
        client_socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return super().wrap_socket_and_handle(client_socket, address)


cls = NoDelayServer if nodelay else pywsgi.WSGIServer
cls(("127.0.0.1", args.port), app, keyfile=args.key, certfile=args.cert, log=None, backlog=1024).serve_forever()
