"""The seed's ``https.get(options, callback)`` example.

Node (seed, "https.get(options, callback)")::

    https.get('https://encrypted.google.com/', function(res) {
      console.log("statusCode: ", res.statusCode);
      console.log("headers: ", res.headers);
      res.on('data', function(d) { process.stdout.write(d); });
    }).on('error', function(e) {
      console.error(e);
    });

Run it::

    python examples/get.py                           # against its own local server
    python examples/get.py https://localhost:8443/ --ca ~/.cache/greenhttps/dev-ca.pem

With no URL it starts a greenhttps server in this process (127.0.0.1, a free port,
the development certificate) and gets ``https://localhost:<port>/`` from it,
trusting the development CA.
"""

import argparse
import sys

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
    parser.add_argument("url", nargs="?", help="https URL to get (default: a local server)")
    parser.add_argument("--ca", help="PEM file of the CA to trust (default: the usual roots)")
    args = parser.parse_args()

    server, tls = None, {}
    if args.url:
        url = args.url
        if args.ca:
            tls["ca"] = open(args.ca, "rb").read()
    else:
        server, tls["ca"] = local_server()
        url = f"https://localhost:{server.address()['port']}/"

    done = gevent.event.AsyncResult()  # Node's event loop keeps the process alive; we wait

    def on_response(res):
        print("statusCode:", res.statusCode)
        print("headers:", res.headers)
        sys.stdout.flush()  # the body goes to the byte stream underneath
        res.on("data", sys.stdout.buffer.write)  # process.stdout.write(d)
        res.on("end", lambda: done.set(0))

    def on_error(e):
        print(e, file=sys.stderr)  # console.error(e)
        done.set(1)

    greenhttps.get(url, on_response, **tls).on("error", on_error)

    status = done.get()
    sys.stdout.flush()
    if server is not None:
        server.close()
    return status


if __name__ == "__main__":
    sys.exit(main())
