"""Mutual TLS: the server requires a client certificate from its CA.

The server sets ``requestCert`` and ``rejectUnauthorized`` with its own ``ca``: a
client without a certificate from that CA fails the TLS handshake, before any HTTP.
The client passes ``key``/``cert`` (and ``ca`` to check the server in turn).  In
the handler, ``req.socket.authorized`` is True and ``get_peer_certificate()`` tells
who the client is.  Both certificates come from the development CA; the client's is
made in memory.

Run it::

    python examples/mtls.py
"""

import sys

import greenhttps
from greenhttps.devcert import dev_certificate


def whoami(req, res):
    peer = req.socket.get_peer_certificate()
    subject = ", ".join(f"{name}={value}" for rdn in peer["subject"] for name, value in rdn)
    res.writeHead(200, {"Content-Type": "text/plain"})
    res.end(f"authorized: {req.socket.authorized}\npeer subject: {subject}\n")


def main():
    dev = dev_certificate()
    server_options = dict(
        dev.server_options(),
        requestCert=True,  # ask every client for a certificate ...
        rejectUnauthorized=True,  # ... and refuse those without a valid one
        ca=dev.ca_pem(),  # valid = issued by this CA
    )
    server = greenhttps.createServer(server_options, whoami).listen(0, "127.0.0.1")
    server.on("tlsClientError", lambda err, sock: print("server refused a client:", err.code))

    client = dev.issue_cert("client.localhost", client=True)
    options = {
        "hostname": "localhost",
        "port": server.address()["port"],
        "ca": dev.ca_pem(),  # the client checks the server too
        "key": client["key"],
        "cert": client["cert"],
    }
    res = greenhttps.get(options)
    print("statusCode:", res.statusCode)
    print(res.read().decode(), end="")

    # The negative control: the same request without a certificate is refused.
    del options["key"], options["cert"]
    try:
        greenhttps.get(options).read()
        print("a client without a certificate got in!")
        status = 1
    except greenhttps.Error as exc:
        print("without a client certificate:", exc.code)
        status = 0
    server.close()
    return status


if __name__ == "__main__":
    sys.exit(main())
