"""The seed's first ``https.createServer`` example: key and certificate read from files.

Node (seed, "https.createServer(options[, requestListener])")::

    // curl -k https://localhost:8000/
    var options = {
      key: fs.readFileSync('test/fixtures/keys/agent2-key.pem'),
      cert: fs.readFileSync('test/fixtures/keys/agent2-cert.pem')
    };
    https.createServer(options, function (req, res) {
      res.writeHead(200);
      res.end("hello world\n");
    }).listen(8000);

Run it::

    python examples/hello_server.py                  # https://localhost:8000/
    curl --cacert ~/.cache/greenhttps/dev-ca.pem https://localhost:8000/

The key and certificate files are the development ones that ``python -m greenhttps``
makes (``--key``/``--cert`` to use others).  ``--port 0`` takes a free port;
``--exit-after N`` stops after N responses.  The first line printed is the URL.
"""

import argparse
import signal

import gevent

import greenhttps
from greenhttps.devcert import dev_certificate


def main():
    dev = dev_certificate()
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--key", default=dev.key_file, help="PEM private key file")
    parser.add_argument("--cert", default=dev.cert_file, help="PEM certificate file")
    parser.add_argument("--exit-after", type=int, metavar="N", help="stop after N responses")
    args = parser.parse_args()

    options = {
        "key": open(args.key, "rb").read(),  # fs.readFileSync(...)
        "cert": open(args.cert, "rb").read(),
    }

    def hello(req, res):
        res.writeHead(200)
        res.end("hello world\n")

    server = greenhttps.createServer(options, hello)
    # Ctrl-C: stop accepting, let requests in flight finish, then serve_forever() returns.
    gevent.signal_handler(signal.SIGINT, server.close)
    server.listen(args.port, "127.0.0.1")  # loopback only (the seed's takes every interface)
    url = f"https://localhost:{server.address()['port']}/"
    print(f"listening on {url}")
    print(f"try: curl --cacert {dev.ca_file} {url}", flush=True)
    if args.exit_after:
        close_after(server, args.exit_after)
    server.serve_forever()  # returns once closed and the last response is out


def close_after(server, count):
    """Close ``server`` once ``count`` responses have finished (``--exit-after``)."""
    left = [count]

    def on_request(req, res):
        def finished():
            left[0] -= 1
            if left[0] == 0:
                server.close()

        res.once("finish", finished)

    server.prepend_listener("request", on_request)  # before the handler ends the response


if __name__ == "__main__":
    main()
