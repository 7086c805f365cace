"""``python -m greenhttps``: an HTTPS server (demo or static files), and a small
curl-like client.

    python -m greenhttps [serve] [DIR] [--host H] [--port P] [--cert F --key F | --pfx F]
    python -m greenhttps get URL [--ca FILE] [-k] [-o FILE] [-H 'Name: value'] [-X M] [-d DATA]

Without DIR the server answers every request with a JSON description of it (the
demo); with DIR it serves the files under DIR (``greenhttps._static``).  Without a
certificate it makes a development CA and certificate once (kept in the user cache
folder, never in the repository) and prints the exact commands that reach it with
verification on.  Its first line is the URL, with the real port when ``--port 0``.

``get`` prints the status and headers to stderr and the body to stdout (or ``-o``),
with a progress bar on stderr for large or slow downloads when stderr is a terminal
and the body is not going to that terminal.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import time
from typing import Any, Sequence

import gevent

import greenhttps

from ._static import StaticFiles
from .devcert import dev_certificate

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


def _access_log_to_stderr() -> None:
    """The server's access log (``access_log=True``: Combined Log Format plus the
    duration, one line per response, ``aborted`` at the end of one cut short) goes
    to stderr, line by line."""
    log = logging.getLogger("greenhttps.access")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False  # not again through the root logger's WARNING format


def serve(args: argparse.Namespace) -> int:
    ca_file = None
    on_request: Any = _demo_handler
    if args.directory is not None:
        try:
            on_request = StaticFiles(args.directory)
        except OSError as exc:
            return _fail(f"cannot serve {args.directory}: {_one_line(exc)}", 2)
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
        server = greenhttps.create_server(on_request, **options, access_log=True)
    except (greenhttps.Error, OSError, ValueError) as exc:  # unreadable, mismatched, passphrase
        return _fail(f"cannot load the certificate: {_one_line(exc)}")
    _access_log_to_stderr()

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
        if isinstance(on_request, StaticFiles):
            print(f"files from {on_request.root} (GET/HEAD, Range, directory listings)")
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


def _size(n: float) -> str:
    """``n`` bytes for people: ``512 B``, ``1.5 KiB``, ``3.0 MiB``."""
    if n < 1024:
        return f"{n:.0f} B"
    for unit in ("KiB", "MiB", "GiB"):
        n /= 1024
        if n < 1024:
            break
    else:
        unit = "TiB"
        n /= 1024
    return f"{n:.1f} {unit}"


class _Progress:
    """A one-line progress bar, redrawn in place (``\\r``) on a terminal.

    It appears only for a large download (``LARGE`` bytes) or a slow one (still going
    after ``SLOW`` seconds): a small quick answer shows no bar at all.  Redrawn at most
    every ``INTERVAL`` seconds; :meth:`finish` draws the final state and a newline.
    """

    LARGE = 1 << 20
    SLOW = 1.0
    INTERVAL = 0.1
    WIDTH = 24  # of the bar itself

    def __init__(self, total: int | None, stream: Any) -> None:
        self.total = total
        self.stream = stream
        self.received = 0
        self.started = time.monotonic()
        self._drawn_at: float | None = None
        self._length = 0  # of the last line drawn, to blank out what a shorter one leaves

    def update(self, count: int) -> None:
        self.received += count
        now = time.monotonic()
        if self._drawn_at is None:
            if self.received < self.LARGE and now - self.started < self.SLOW:
                return
        elif now - self._drawn_at < self.INTERVAL:
            return
        self._draw(now)

    def finish(self) -> None:
        """Draw the final state and end the line (nothing if no bar was due)."""
        if self._drawn_at is None and self.received < self.LARGE:
            return
        self._draw(time.monotonic())
        self.stream.write("\n")
        self.stream.flush()

    def _draw(self, now: float) -> None:
        self._drawn_at = now
        rate = f"{_size(self.received / max(now - self.started, 1e-3))}/s"
        if self.total:  # the size is known: percentage and bar
            done = min(self.received / self.total, 1.0)
            filled = int(done * self.WIDTH)
            bar = "#" * filled + " " * (self.WIDTH - filled)
            line = (
                f"{done * 100:3.0f}% [{bar}] {_size(self.received)} of {_size(self.total)}  {rate}"
            )
        else:
            line = f"{_size(self.received)}  {rate}"
        self.stream.write("\r" + line.ljust(self._length))
        self.stream.flush()
        self._length = len(line)


def _wants_progress(args: argparse.Namespace) -> bool:
    """A bar on a terminal's stderr, unless the body itself goes to that terminal."""
    if args.no_progress or not sys.stderr.isatty():
        return False
    return bool(args.output) or not sys.stdout.isatty()


def _copy(res: Any, out: Any, progress: _Progress | None) -> None:
    for chunk in res:  # as it arrives: a streamed response shows as it streams
        out.write(chunk)
        out.flush()
        if progress is not None:
            progress.update(len(chunk))


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
    progress: _Progress | None = None
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
        length = res.headers.get("content-length")
        if _wants_progress(args):
            total = int(length) if isinstance(length, str) and length.isdigit() else None
            progress = _Progress(total, sys.stderr)
        try:
            if args.output:
                with open(args.output, "wb") as out:
                    _copy(res, out, progress)
            else:
                _copy(res, sys.stdout.buffer, progress)
        finally:
            if progress is not None:
                progress.finish()  # also before an error: it then starts a fresh line
    except BrokenPipeError as exc:
        if args.output or isinstance(exc, greenhttps.Error):
            return _fail(_one_line(exc))
        # `get URL | head`: the reader of stdout has what it wanted.  Quietly, as curl;
        # stdout goes to /dev/null so that the exit's final flush cannot complain.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except (greenhttps.Error, OSError, ValueError) as exc:
        return _fail(_one_line(exc))
    return 0 if res.status_code < 400 else 22  # curl --fail's code for an HTTP error


# ------------------------------------------------------------------- main


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m greenhttps",
        description="An HTTPS server (the default command: a demo, or the files in DIR) "
        "and a small curl-like client.",
        epilog="get exits 0 on success, 22 for an HTTP status of 400 or more (as curl --fail), "
        "1 on a network or TLS error (one line on stderr), 2 on bad arguments.",
    )
    commands = parser.add_subparsers(dest="command", metavar="{serve,get}")
    p_serve = commands.add_parser(
        "serve",
        help="HTTPS server: the files in DIR, or a JSON demo without DIR",
        description="Serve the files in DIR over HTTPS (directory listings, Range, "
        "conditional GET), or without DIR a demo answering every request with JSON. "
        "Without --cert/--key or --pfx a development certificate is made (once, in the "
        "user cache folder) and the commands that reach the server are printed. "
        "One access-log line per response on stderr (Combined Log Format and the "
        "duration in seconds).",
    )
    p_serve.add_argument(
        "directory", nargs="?", metavar="DIR", help="serve the files in DIR (default: the demo)"
    )
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
        "--no-progress",
        action="store_true",
        help="no progress bar (by default one is drawn on stderr when it is a terminal)",
    )
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
