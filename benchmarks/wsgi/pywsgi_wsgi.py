"""gevent.pywsgi.WSGIServer(keyfile=, certfile=) running an app, TCP_NODELAY on.

``PORT CERT KEY [MODULE]`` (MODULE: ``flask_app``, the default, or ``django_app``);
the listening socket is made here with SO_REUSEPORT so that several copies can share
the port, as the greenhttps ones do.  Access log off.
"""

from __future__ import annotations

import importlib
import socket
import sys

from gevent import pywsgi
from gevent import socket as gsocket

port, cert, key = int(sys.argv[1]), sys.argv[2], sys.argv[3]
# The application module: flask_app (default) or django_app, both in this directory.
app = importlib.import_module(sys.argv[4] if len(sys.argv) > 4 else "flask_app").app


class NoDelayServer(pywsgi.WSGIServer):
    def wrap_socket_and_handle(self, client_socket, address):  # type: ignore[no-untyped-def]
        client_socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return super().wrap_socket_and_handle(client_socket, address)


listener = gsocket.socket(socket.AF_INET, socket.SOCK_STREAM)  # a gevent socket: StreamServer needs one
listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
listener.bind(("127.0.0.1", port))
listener.listen(1024)
NoDelayServer(listener, app, keyfile=key, certfile=cert, log=None).serve_forever()
