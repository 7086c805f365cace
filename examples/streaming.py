"""Streaming both ways: a 5 MiB upload written in chunks, echoed back chunk by chunk.

The client sends a generated body with ``req.write(chunk)`` (no length known in
advance, so it goes out chunked) and reads the echo as it comes back, in its
``'response'`` listener, while it is still writing.  The server's handler copies each
piece of the request body to the response as it arrives.  Neither side ever holds
the whole body: memory stays flat however big it is.

Run it::

    python examples/streaming.py                     # 5 MiB
    python examples/streaming.py --mib 50
"""

import argparse
import hashlib
import sys
import time

import gevent.event

import greenhttps
from greenhttps.devcert import dev_certificate

CHUNK = 64 * 1024


def echo(req, res):
    res.writeHead(200, {"Content-Type": "application/octet-stream"})
    for chunk in req:  # each piece as it arrives (also emitted as 'data')
        res.write(chunk)  # blocks this connection's greenlet until the kernel has it
    res.end()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mib", type=int, default=5, help="upload size in MiB (default 5)")
    args = parser.parse_args()

    dev = dev_certificate()
    server = greenhttps.createServer(dev.server_options(), echo).listen(0, "127.0.0.1")
    options = {
        "hostname": "localhost",
        "port": server.address()["port"],
        "path": "/echo",
        "method": "PUT",
        "ca": dev.ca_pem(),
        # Ask before sending megabytes.  The client then reads the response from the
        # moment the head is out, so the echo flows back while we still write.
        "headers": {"Expect": "100-continue"},
    }

    received = gevent.event.AsyncResult()

    def on_response(res):
        print("statusCode:", res.statusCode, file=sys.stderr)
        digest, size = hashlib.sha256(), 0
        for chunk in res:  # in the reader's greenlet, concurrently with the writes
            digest.update(chunk)
            size += len(chunk)
        received.set((size, digest.hexdigest()))

    req = greenhttps.request(options, on_response)
    req.on("error", received.set_exception)

    started = time.monotonic()
    sent = hashlib.sha256()
    for i in range(args.mib * 1024 * 1024 // CHUNK):
        chunk = hashlib.sha256(str(i).encode()).digest() * (CHUNK // 32)  # 64 KiB, generated
        sent.update(chunk)
        req.write(chunk)
    req.end()
    size, digest = received.get(timeout=60)
    took = time.monotonic() - started

    print(f"sent {args.mib} MiB in {CHUNK // 1024} KiB chunks, ", end="")
    print(f"received {size} bytes back in {took:.2f} s")
    print("echo matches" if digest == sent.hexdigest() else "ECHO DIFFERS")
    server.close()
    return 0 if digest == sent.hexdigest() else 1


if __name__ == "__main__":
    sys.exit(main())
