"""The seed's ``https.request(options, callback)`` example, in Python.

Node (seed, "https.request(options, callback)")::

    var options = {hostname: 'encrypted.google.com', port: 443, path: '/', method: 'GET'};
    var req = https.request(options, function(res) {
      console.log("statusCode: ", res.statusCode);
      console.log("headers: ", res.headers);
      res.on('data', function(d) { process.stdout.write(d); });
    });
    req.end();
    req.on('error', function(e) { console.error(e); });

Run it::

    python examples/request_options.py              # against its own local server
    python examples/request_options.py https://localhost:8443/ --ca ~/.cache/greenhttps/dev-ca.pem

With no URL it starts a greenhttps server in this process (127.0.0.1, a free port,
the development certificate) and asks ``localhost`` on that port, trusting the
development CA, since encrypted.google.com is not reachable from here.
"""

import argparse
import sys
from urllib.parse import urlsplit

import gevent.event

import greenhttps
from greenhttps.devcert import dev_certificate


def local_server():
    """A server like the seed's hello-world one; returns it and the CA to trust."""
    dev = dev_certificate()

    def hello(req, res):
        res.writeHead(200)
        res.end("hello world\n")

    server = greenhttps.createServer(dev.server_options(), hello).listen(0, "127.0.0.1")
    return server, dev.ca_pem()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("url", nargs="?", help="https URL to fetch (default: a local server)")
    parser.add_argument("--ca", help="PEM file of the CA to trust (default: the usual roots)")
    args = parser.parse_args()

    server = None
    if args.url:
        url = urlsplit(args.url)
        options = {
            "hostname": url.hostname,
            "port": url.port or 443,
            "path": (url.path or "/") + (f"?{url.query}" if url.query else ""),
            "method": "GET",
        }
        if args.ca:
            options["ca"] = open(args.ca, "rb").read()
    else:
        server, ca = local_server()
        options = {
            "hostname": "localhost",
            "port": server.address()["port"],
            "path": "/",
            "method": "GET",
            "ca": ca,  # the seed trusts the default roots; our server's CA is local
        }

    done = gevent.event.AsyncResult()  # Node's event loop keeps the process alive; we wait

    def on_response(res):
        print("statusCode:", res.statusCode)
        print("headers:", res.headers)
        sys.stdout.flush()  # the body goes to the byte stream underneath
        res.on("data", sys.stdout.buffer.write)  # process.stdout.write(d)
        res.on("end", lambda: done.set(0))

    def on_error(e):
        print(e, file=sys.stderr)  # console.error(e); the message ends with e.code
        done.set(1)

    req = greenhttps.request(options, on_response)
    req.end()
    req.on("error", on_error)  # after end(), as in the seed: errors come on a later turn

    status = done.get()
    sys.stdout.flush()
    if server is not None:
        server.close()
    return status


if __name__ == "__main__":
    sys.exit(main())
