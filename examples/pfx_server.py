"""The seed's second ``https.createServer`` example: a PKCS#12 (``.pfx``) file.

Node (seed, "https.createServer(options[, requestListener])")::

    var options = {
      pfx: fs.readFileSync('server.pfx')
    };
    https.createServer(options, function (req, res) {
      res.writeHead(200);
      res.end("hello world\n");
    }).listen(8000);

Run it::

    python examples/pfx_server.py                    # https://localhost:8000/
    python examples/pfx_server.py --pfx server.pfx --passphrase secret
    curl --cacert ~/.cache/greenhttps/dev-ca.pem https://localhost:8000/

Without ``--pfx`` it packs the development key and certificate (see
``python -m greenhttps``) into ``server.pfx`` in a temporary folder, protected by
the passphrase ``--passphrase`` (default ``greenhttps``), and serves that.
``--port 0`` takes a free port; ``--exit-after N`` stops after N responses.
The first line printed is the URL.
"""

import argparse
import os
import signal
import tempfile

import gevent
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs12

import greenhttps
from greenhttps.devcert import dev_certificate


def make_pfx(folder, passphrase):
    """Write the development key and certificate as ``folder/server.pfx``."""
    dev = dev_certificate()
    key = serialization.load_pem_private_key(dev.key_file.read_bytes(), None)
    cert = x509.load_pem_x509_certificate(dev.cert_file.read_bytes())
    data = pkcs12.serialize_key_and_certificates(
        b"localhost", key, cert, None, serialization.BestAvailableEncryption(passphrase.encode())
    )
    path = os.path.join(folder, "server.pfx")
    with open(path, "wb") as out:
        out.write(data)
    return path


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument(
        "--pfx", help="PKCS#12 file (default: one made from the development certificate)"
    )
    parser.add_argument("--passphrase", help="the .pfx file's passphrase (default: greenhttps)")
    parser.add_argument("--exit-after", type=int, metavar="N", help="stop after N responses")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as folder:
        passphrase = args.passphrase or (None if args.pfx else "greenhttps")
        pfx_file = args.pfx or make_pfx(folder, passphrase)
        options = {
            "pfx": open(pfx_file, "rb").read(),  # fs.readFileSync('server.pfx')
            "passphrase": passphrase,
        }

        def hello(req, res):
            res.writeHead(200)
            res.end("hello world\n")

        server = greenhttps.createServer(options, hello)
        # Ctrl-C: stop accepting, let requests in flight finish, then serve_forever() returns.
        gevent.signal_handler(signal.SIGINT, server.close)
        server.listen(args.port, "127.0.0.1")  # loopback only (the seed's: every interface)
        print(
            f"listening on https://localhost:{server.address()['port']}/ ({pfx_file})", flush=True
        )
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
