"""One server, two certificates, chosen by the name the client asks for (SNI).

``SNICallback`` (``sni_callback``) is called during the handshake with the
servername the client sent and returns the options (or a context) to use for it;
returning None keeps the server's own ``key``/``cert``.  Here ``localhost`` gets
the development certificate and ``api.localhost`` one of its own.  The client then
connects twice to the same address, with ``servername`` set to each name, and prints
the certificate it was shown.  (Both names verify, since each certificate names
exactly what was asked for.)

Run it::

    python examples/sni_server.py
"""

import sys

import greenhttps
from greenhttps.devcert import dev_certificate


def main():
    dev = dev_certificate()
    by_name = {"api.localhost": dev.issue_cert("api.localhost")}  # {'key': ..., 'cert': ...}

    def sni_callback(servername):
        return by_name.get(servername)  # None: the default certificate below

    def hello(req, res):
        res.writeHead(200, {"Content-Type": "text/plain"})
        res.end(f"hello {req.socket.servername}\n")

    options = dict(dev.server_options(), SNICallback=sni_callback)
    server = greenhttps.createServer(options, hello).listen(0, "127.0.0.1")

    for servername in ("localhost", "api.localhost"):
        res = greenhttps.get(
            {
                "hostname": "127.0.0.1",  # the address to connect to ...
                "servername": servername,  # ... and the name to ask for and verify
                "port": server.address()["port"],
                "ca": dev.ca_pem(),
            }
        )
        cert = res.socket.get_peer_certificate()
        subject = dict(pair for rdn in cert["subject"] for pair in rdn)
        names = ", ".join(value for kind, value in cert["subjectAltName"])
        says = res.read().decode().strip()
        print(f"servername {servername}: CN={subject['commonName']} SAN=[{names}]; says {says!r}")
    server.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
