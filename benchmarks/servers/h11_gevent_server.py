"""The reference ceiling: a minimal gevent + gevent.ssl + h11 keep-alive loop.

No timeouts, no error pages, no Node-shaped API: just what any gevent + h11 server
has to do per request.  One SSLContext, TCP_NODELAY, one greenlet per connection.
"""

from __future__ import annotations

import socket

import _args
import h11
from gevent import ssl
from gevent.server import StreamServer

args = _args.parse(__doc__)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(args.cert, args.key)
ctx.set_alpn_protocols(["http/1.1"])
BODY = args.body
HEADERS = [("Content-Type", "text/plain"), ("Content-Length", str(len(BODY)))]


def handle(sock: ssl.SSLSocket, _address: object) -> None:
    conn = h11.Connection(h11.SERVER)
    try:
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                conn.receive_data(sock.recv(65536))
                continue
            if isinstance(event, h11.Request):
                continue
            if isinstance(event, h11.EndOfMessage):
                sock.sendall(
                    conn.send(h11.Response(status_code=200, headers=HEADERS))
                    + conn.send(h11.Data(data=BODY))
                    + conn.send(h11.EndOfMessage())
                )
                if conn.our_state is h11.MUST_CLOSE:
                    return
                conn.start_next_cycle()
                continue
            return  # ConnectionClosed, or anything unexpected
    except (OSError, h11.ProtocolError):
        pass
    finally:
        sock.close()


class Server(StreamServer):
    def wrap_socket_and_handle(self, client_socket, address):  # type: ignore[no-untyped-def]
        client_socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return super().wrap_socket_and_handle(client_socket, address)


Server(("127.0.0.1", args.port), handle, ssl_context=ctx, backlog=1024).serve_forever()
