"""The seed's "TLS options with a custom Agent" example: a client certificate.

Node (seed, "https.request(options, callback)", second example)::

    var options = {
      hostname: 'encrypted.google.com', port: 443, path: '/', method: 'GET',
      key: fs.readFileSync('test/fixtures/keys/agent2-key.pem'),
      cert: fs.readFileSync('test/fixtures/keys/agent2-cert.pem')
    };
    options.agent = new https.Agent(options);
    var req = https.request(options, function(res) { ... });

Run it::

    python examples/agent_tls_options.py             # against its own local server
    python examples/agent_tls_options.py https://localhost:8443/ --ca ~/.cache/greenhttps/dev-ca.pem

With no URL it starts a local server that asks for a client certificate
(``requestCert``) without requiring one, and answers with what it saw:
``authorized: True`` means the certificate below verified against its CA.  The key
and certificate are a fresh client certificate from the development CA, made in
memory (the seed reads its test fixtures from files).
"""

import argparse
import sys
from urllib.parse import urlsplit

import gevent.event

import greenhttps
from greenhttps.devcert import dev_certificate


def local_server(dev):
    """A server that asks for client certificates and says whether yours verified."""

    def whoami(req, res):
        peer = req.socket.get_peer_certificate()
        subject = dict(pair for rdn in peer.get("subject", ()) for pair in rdn)
        res.writeHead(200, {"Content-Type": "text/plain"})
        res.end(
            f"hello {subject.get('commonName', 'stranger')}\n"
            f"authorized: {req.socket.authorized}\n"
            f"your request said Connection: {req.headers.get('connection')}\n"
        )

    options = dict(
        dev.server_options(), requestCert=True, rejectUnauthorized=False, ca=dev.ca_pem()
    )
    return greenhttps.createServer(options, whoami).listen(0, "127.0.0.1")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("url", nargs="?", help="https URL to fetch (default: a local server)")
    parser.add_argument("--ca", help="PEM file of the CA to trust (default: the usual roots)")
    args = parser.parse_args()

    dev = dev_certificate()
    client = dev.issue_cert("client.localhost", client=True)
    server = None
    if args.url:
        url = urlsplit(args.url)
        hostname, port = url.hostname, url.port or 443
        path = (url.path or "/") + (f"?{url.query}" if url.query else "")
        ca = open(args.ca, "rb").read() if args.ca else None
    else:
        server = local_server(dev)
        hostname, port, path, ca = "localhost", server.address()["port"], "/", dev.ca_pem()

    options = {
        "hostname": hostname,
        "port": port,
        "path": path,
        "method": "GET",
        "key": client["key"],  # fs.readFileSync('.../agent2-key.pem')
        "cert": client["cert"],  # fs.readFileSync('.../agent2-cert.pem')
    }
    if ca is not None:
        options["ca"] = ca  # our local server's CA (the seed trusts the default roots)
    options["agent"] = greenhttps.Agent(options)  # the agent's connections use the TLS options

    done = gevent.event.AsyncResult()

    def on_response(res):
        print("statusCode:", res.statusCode)
        sys.stdout.flush()
        res.on("data", sys.stdout.buffer.write)
        res.on("end", lambda: done.set(0))

    def on_error(e):
        print(e, file=sys.stderr)
        done.set(1)

    req = greenhttps.request(options, on_response)
    req.on("error", on_error)
    req.end()
    status = done.get()
    sys.stdout.flush()
    options["agent"].destroy()
    if server is not None:
        server.close()
    return status


if __name__ == "__main__":
    sys.exit(main())
