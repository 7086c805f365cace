"""``python -m greenhttps``: a demo HTTPS server, and a small curl-like client.

    python -m greenhttps                    demo server on https://localhost:8443
    python -m greenhttps serve [--host H] [--port P] [--cert F --key F | --pfx F]
    python -m greenhttps get URL [--ca FILE] [-k] [-o FILE] [-H 'Name: value'] [-X M] [-d DATA]

The demo makes a development CA and certificate once (kept in the user cache folder,
never in the repository) and prints the exact commands that reach it with
verification on.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from typing import Any, Sequence

import greenhttps

from ._devcert import dev_certificate


def _demo_handler(req: Any, res: Any) -> None:
    body = json.dumps(
        {
            "hello": "from greenhttps",
            "method": req.method,
            "url": req.url,
            "http_version": req.http_version,
            "tls": req.socket.get_protocol(),
            "cipher": (req.socket.get_cipher() or {}).get("name"),
            "your_address": req.socket.remote_address,
            "request_body_bytes": len(req.read()),
        },
        indent=2,
    ).encode() + b"\n"
    res.write_head(200, {"Content-Type": "application/json", "Content-Length": len(body)})
    res.end(body)


def _access_log(server: Any) -> None:
    def log(req: Any, res: Any) -> None:
        started = time.monotonic()

        def done() -> None:
            took = (time.monotonic() - started) * 1000
            print(
                f'{req.socket.remote_address} "{req.method} {req.url} HTTP/{req.http_version}" '
                f"{res.status_code} {took:.1f}ms",
                file=sys.stderr,
                flush=True,
            )

        res.once("finish", done)

    server.prepend_listener("request", log)


def serve(args: argparse.Namespace) -> int:
    if args.pfx:
        with open(args.pfx, "rb") as f:
            options: dict[str, Any] = {"pfx": f.read(), "passphrase": args.passphrase}
        ca_note = None
    elif args.cert or args.key:
        if not (args.cert and args.key):
            print("greenhttps: --cert and --key go together", file=sys.stderr)
            return 2
        options, ca_note = {"cert": args.cert, "key": args.key}, None
    else:
        dev = dev_certificate()
        options, ca_note = dev.server_options(), str(dev.ca_file)
    server = greenhttps.create_server(options, _demo_handler)
    _access_log(server)
    try:
        server.listen(args.port, args.host)
    except greenhttps.Error as exc:
        print(f"greenhttps: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    port = server.address()["port"]  # type: ignore[index]
    url = f"https://localhost:{port}/"
    print(f"greenhttps {greenhttps.__version__}: serving HTTPS on {url}", flush=True)
    if ca_note:
        print(f"development CA (trust it to verify the server): {ca_note}")
        print("reach it with verification on:")
        print(f"  curl --cacert {ca_note} {url}")
        print(f"  {sys.executable} -m greenhttps get {url} --ca {ca_note}")
    print("Ctrl-C to stop.", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        server.close()
    return 0


def get(args: argparse.Namespace) -> int:
    options: dict[str, Any] = {"method": args.method or ("POST" if args.data is not None else "GET")}
    headers: dict[str, Any] = {}
    for line in args.header:
        name, sep, value = line.partition(":")
        if not sep:
            print(f"greenhttps: bad header {line!r} (want 'Name: value')", file=sys.stderr)
            return 2
        headers[name.strip()] = value.strip()
    options["headers"] = headers
    if args.ca:
        with open(args.ca, "rb") as f:
            options["ca"] = f.read()
    if args.insecure:
        options["reject_unauthorized"] = False
    if args.timeout:
        options["timeout"] = int(args.timeout * 1000)
    module = greenhttps.http if args.url.startswith("http:") else greenhttps
    try:
        req = module.request(args.url, **options)
        req.end(args.data.encode() if args.data is not None else None)
        res = req.getresponse()
        print(f"HTTP/{res.http_version} {res.status_code} {res.status_message}", file=sys.stderr)
        for name, value in zip(res.raw_headers[0::2], res.raw_headers[1::2]):
            print(f"{name}: {value}", file=sys.stderr)
        out = open(args.output, "wb") if args.output else sys.stdout.buffer
        try:
            for chunk in res:
                out.write(chunk)
        finally:
            if args.output:
                out.close()
            else:
                out.flush()
    except greenhttps.Error as exc:
        print(f"greenhttps: {exc}", file=sys.stderr)
        return 1
    return 0 if res.status_code < 400 else 22


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    parser = argparse.ArgumentParser(prog="greenhttps", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command")
    p_serve = commands.add_parser("serve", help="demo HTTPS server (the default)")
    p_serve.add_argument("--host", default="localhost")
    p_serve.add_argument("--port", type=int, default=8443)
    p_serve.add_argument("--cert")
    p_serve.add_argument("--key")
    p_serve.add_argument("--pfx")
    p_serve.add_argument("--passphrase")
    p_get = commands.add_parser("get", help="fetch a URL (status and headers to stderr, body to stdout)")
    p_get.add_argument("url")
    p_get.add_argument("--ca", help="PEM file of the CA(s) to trust instead of the defaults")
    p_get.add_argument("-k", "--insecure", action="store_true", help="do not verify the certificate")
    p_get.add_argument("-o", "--output", help="write the body to this file")
    p_get.add_argument("-H", "--header", action="append", default=[], help="'Name: value'")
    p_get.add_argument("-X", "--method")
    p_get.add_argument("-d", "--data")
    p_get.add_argument("--timeout", type=float, default=30.0, help="idle timeout in seconds")
    args = parser.parse_args(argv)
    if args.command == "get":
        return get(args)
    if args.command is None:
        args = parser.parse_args(["serve", *(argv or [])])
    return serve(args)


if __name__ == "__main__":
    sys.exit(main())
