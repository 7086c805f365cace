"""``python -m greenhttps``: a demo HTTPS server, and a small curl-like client.

    python -m greenhttps [serve] [--host H] [--port P] [--cert F --key F | --pfx F]
    python -m greenhttps get URL [--ca FILE] [-k] [-o FILE] [-H 'Name: value'] [-X M] [-d DATA]

The demo server makes a development CA and certificate once (kept in the user cache
folder, never in the repository) and prints the exact commands that reach it with
verification on.  Its first line is the URL, with the real port when ``--port 0``.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import time
from typing import Any, Sequence

import gevent

import greenhttps

from ._devcert import dev_certificate

_COMMANDS = ("serve", "get")


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _fail(message: str, code: int = 1) -> int:
    print(f"greenhttps: {message}", file=sys.stderr, flush=True)
    return code


# ------------------------------------------------------------------ serve


def _demo_handler(req: Any, res: Any) -> None:
    received = sum(len(chunk) for chunk in req)  # count, never buffer, an upload
    body = (
        json.dumps(
            {
                "hello": "from greenhttps",
                "method": req.method,
                "url": req.url,
                "http_version": req.http_version,
                "tls": req.socket.get_protocol(),
                "cipher": (req.socket.get_cipher() or {}).get("name"),
                "your_address": req.socket.remote_address,
                "request_body_bytes": received,
            },
            indent=2,
        ).encode()
        + b"\n"
    )
    res.write_head(200, {"Content-Type": "application/json", "Content-Length": len(body)})
    res.end(body)


def _access_log(server: Any) -> None:
    """One stderr line per response: ``address "METHOD url HTTP/v" status time``.

    Written on the response's ``'close'``, which also comes for a response cut short
    (the client left, the handler failed): those show ``aborted`` after the status.
    """

    def log(req: Any, res: Any) -> None:
        started = time.monotonic()

        def done(*_: Any) -> None:
            took = (time.monotonic() - started) * 1000
            note = "" if res.finished else " aborted"
            print(
                f'{req.socket.remote_address} "{req.method} {req.url} HTTP/{req.http_version}" '
                f"{res.status_code}{note} {took:.1f}ms",
                file=sys.stderr,
                flush=True,
            )

        res.once("close", done)

    server.prepend_listener("request", log)  # before the handler, so it times the handler


def serve(args: argparse.Namespace) -> int:
    ca_file = None
    try:
        if args.pfx:
            with open(args.pfx, "rb") as f:
                options: dict[str, Any] = {"pfx": f.read(), "passphrase": args.passphrase}
        elif args.cert or args.key:
            if not (args.cert and args.key):
                return _fail("--cert and --key go together", 2)
            options = {"cert": args.cert, "key": args.key}
        else:
            dev = dev_certificate()
            options, ca_file = dev.server_options(), str(dev.ca_file)
        server = greenhttps.create_server(options, _demo_handler)
    except (greenhttps.Error, OSError, ValueError) as exc:  # unreadable, mismatched, passphrase
        return _fail(f"cannot load the certificate: {_one_line(exc)}")
    _access_log(server)

    def stop() -> None:
        # First signal: Node's server.close() -- stop accepting, let requests in
        # flight finish, then serve_forever() returns.  A second one drops them too.
        if server.listening:
            print("greenhttps: stopping (again to drop requests in flight)", file=sys.stderr)
            server.close()
        else:
            server.close_all_connections()

    # Installed before anything is printed: whoever reads our first line may signal.
    handlers = [gevent.signal_handler(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)]
    try:
        try:
            server.listen(args.port, args.host)
        except (greenhttps.Error, OSError) as exc:
            return _fail(f"cannot listen on {args.host}:{args.port}: {_one_line(exc)}")
        url = f"https://localhost:{server.address()['port']}/"  # type: ignore[index]  # real port
        print(f"greenhttps {greenhttps.__version__}: serving HTTPS on {url}")
        if ca_file:
            print(f"development CA (trust it to verify the server): {ca_file}")
            print("reach it with verification on:")
            print(f"  curl --cacert {ca_file} {url}")
            print(f"  {sys.executable} -m greenhttps get {url} --ca {ca_file}")
        print("Ctrl-C to stop.", flush=True)
        server.serve_forever()
    finally:
        for handler in handlers:
            handler.cancel()
    return 0


# -------------------------------------------------------------------- get


def _copy(res: Any, out: Any) -> None:
    for chunk in res:  # as it arrives: a streamed response shows as it streams
        out.write(chunk)
        out.flush()


def get(args: argparse.Namespace) -> int:
    headers: dict[str, str] = {}
    for line in args.header:
        name, sep, value = line.partition(":")
        if not sep or not name.strip():
            return _fail(f"bad header {line!r} (want 'Name: value')", 2)
        headers[name.strip()] = value.strip()
    options: dict[str, Any] = {
        "method": args.method or ("POST" if args.data is not None else "GET"),
        "headers": headers,
    }
    if args.timeout:
        options["timeout"] = int(args.timeout * 1000)  # greenhttps takes milliseconds
    secure = not args.url.startswith("http:")
    if secure and args.insecure:
        options["reject_unauthorized"] = False
    try:
        if secure and args.ca:
            with open(args.ca, "rb") as f:
                options["ca"] = f.read()
        req = (greenhttps if secure else greenhttps.http).request(args.url, **options)
        req.end(args.data.encode() if args.data is not None else None)
        res = req.getresponse()
        print(f"HTTP/{res.http_version} {res.status_code} {res.status_message}", file=sys.stderr)
        for name, value in zip(res.raw_headers[0::2], res.raw_headers[1::2]):
            print(f"{name}: {value}", file=sys.stderr)
        sys.stderr.flush()
        if args.output:
            with open(args.output, "wb") as out:
                _copy(res, out)
        else:
            _copy(res, sys.stdout.buffer)
    except (greenhttps.Error, OSError, ValueError) as exc:
        return _fail(_one_line(exc))
    return 0 if res.status_code < 400 else 22  # curl --fail's code for an HTTP error


# ------------------------------------------------------------------- main


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m greenhttps",
        description="A demo HTTPS server (the default command) and a small curl-like client.",
        epilog="get exits 0 on success, 22 for an HTTP status of 400 or more (as curl --fail), "
        "1 on a network or TLS error (one line on stderr), 2 on bad arguments.",
    )
    commands = parser.add_subparsers(dest="command", metavar="{serve,get}")
    p_serve = commands.add_parser("serve", help="demo HTTPS server with a development certificate")
    p_serve.add_argument(
        "--host", default="localhost", help="address to listen on (default localhost)"
    )
    p_serve.add_argument(
        "--port", type=int, default=8443, help="0 takes a free port (default 8443)"
    )
    p_serve.add_argument("--cert", help="PEM certificate chain file (with --key)")
    p_serve.add_argument("--key", help="PEM private key file (with --cert)")
    p_serve.add_argument("--pfx", help="PKCS#12 file instead of --cert/--key")
    p_serve.add_argument("--passphrase", help="for the key or the PKCS#12 file")
    p_get = commands.add_parser(
        "get", help="fetch a URL: status and headers to stderr, body to stdout"
    )
    p_get.add_argument("url")
    p_get.add_argument("--ca", help="PEM file of the CA(s) to trust instead of the default roots")
    p_get.add_argument(
        "-k", "--insecure", action="store_true", help="do not verify the server's certificate"
    )
    p_get.add_argument("-o", "--output", help="write the body to this file")
    p_get.add_argument(
        "-H", "--header", action="append", default=[], help="'Name: value' (repeatable)"
    )
    p_get.add_argument("-X", "--method", help="default GET, or POST with -d")
    p_get.add_argument("-d", "--data", help="request body")
    p_get.add_argument(
        "--timeout",
        type=float,
        default=30.0,
        help="idle timeout in seconds, 0 for none (default 30)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or (argv[0] not in _COMMANDS and argv[0] not in ("-h", "--help")):
        argv.insert(0, "serve")  # `python -m greenhttps --port 0` is `serve --port 0`
    args = _parser().parse_args(argv)
    # Ctrl-C is ours to handle: keep gevent's hub from printing it as an error.
    hub = gevent.get_hub()
    hub.NOT_ERROR = (*hub.NOT_ERROR, KeyboardInterrupt)
    try:
        return get(args) if args.command == "get" else serve(args)
    except KeyboardInterrupt:
        return 130  # the shell's code for "stopped by SIGINT"


if __name__ == "__main__":
    sys.exit(main())
