"""``python -m greenhttps`` (or the ``greenhttps`` command): an HTTPS server (a demo
or static files) and a small curl.

    greenhttps [serve] [DIR] [--host H] [--port P] [--cert F --key F | --pfx F]
    greenhttps get URL [--ca FILE] [-k] [-L] [-i] [-v] [-s] [-u USER:PASS] [--compressed]
                       [--proxy URL] [-o FILE] [-H 'Name: value'] [-X M] [-d DATA | -d @FILE]
    greenhttps help [COMMAND]        greenhttps --version

Without DIR the server answers every request with a JSON description of it (the
demo); with DIR it serves the files under DIR (``greenhttps._static``).  Without a
certificate it makes a development CA and certificate once (kept in the user cache
folder, never in the repository) and prints the exact commands that reach it with
verification on.  Its first line is the URL, with the real port when ``--port 0`` and
an address reachable where it listens.  One access-log line per response goes to
stderr (the ``greenhttps.access`` logger).  SIGINT or SIGTERM stops it (Node's
``server.close()``; a second one drops requests in flight), whatever state its
output streams are in: a closed pipe on stdout or stderr does not keep it running.

``get`` is in ``greenhttps._cli_get``.  Exit statuses: 0; 1 for a network, TLS or
file error; 2 for bad arguments or a bad URL; 22 for an HTTP status >= 400; 130 when
interrupted.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import logging
import os
import signal
import socket
import sys
from typing import Any, Sequence

import gevent

import greenhttps

from . import _cli_get
from ._static import StaticFiles
from .devcert import dev_certificate

_COMMANDS = ("serve", "get", "help")

EXIT_STATUSES = (
    "exit status: 0 success; 1 a network, TLS or file error (one line on stderr); "
    "2 bad arguments or a bad URL; 22 an HTTP status of 400 or more (as curl --fail); "
    "130 interrupted (Ctrl-C)."
)


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


_fail = _cli_get.fail


def _say(stream: Any, text: str) -> None:
    """Write a line and flush, never raising: a stream that is gone (the reader of a
    pipe exited) is pointed at /dev/null, so that later writes and the interpreter's
    final flush cannot fail either.  A server must stay stoppable whatever its output."""
    try:
        stream.write(text + "\n")
        stream.flush()
    except (OSError, ValueError):
        _to_devnull(stream)


def _to_devnull(stream: Any) -> None:
    try:
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, stream.fileno())
        os.close(null)
    except (OSError, ValueError):
        pass


class _QuietStreamHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """The access log's handler: a line it cannot write (stderr is a closed pipe) is
    dropped, where logging's own handler would print a traceback -- to that stderr."""

    def handleError(self, record: logging.LogRecord) -> None:  # noqa: N802  (logging's name)
        _to_devnull(self.stream)


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
    """The server's access log (``access_log=True``: Combined Log Format -- time,
    client, request line, status, bytes -- plus the duration, one line per response,
    ``aborted`` at the end of one cut short) goes to stderr, line by line."""
    log = logging.getLogger("greenhttps.access")
    handler = _QuietStreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False  # not again through the root logger's WARNING format


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _own_address(family: int) -> str | None:
    """An address of this machine that others can reach: the one a datagram to a
    documentation address (RFC 5737/3849) would leave from.  Nothing is sent."""
    probe = "192.0.2.1" if family == socket.AF_INET else "2001:db8::1"
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as s:
            s.connect((probe, 9))
            address = s.getsockname()[0]
    except OSError:
        return None
    return None if ipaddress.ip_address(address.split("%")[0]).is_loopback else address


def _urls(host: str, port: int) -> tuple[str, str]:
    """(the URL to show, the one the printed commands use: it must match the
    development certificate, which names localhost and the loopback addresses).

    A wildcard (0.0.0.0, ::) listens everywhere: the URL shown is this machine's
    address, the commands use localhost.  A named host or address is used as given.
    """
    local = f"https://localhost:{port}/"
    if host in ("", "localhost"):
        return local, local
    try:
        address = ipaddress.ip_address(host)
    except ValueError:  # a host name
        return f"https://{host}:{port}/", f"https://{host}:{port}/"
    if address.is_unspecified:
        own = _own_address(socket.AF_INET6 if address.version == 6 else socket.AF_INET)
        return (f"https://{_url_host(own)}:{port}/" if own else local), local
    url = f"https://{_url_host(host)}:{port}/"
    return url, (url if address.is_loopback else local)


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
        # Close first, then say so: saying may fail (a closed pipe) and must not
        # keep the server running (issue 20: only SIGKILL ended it).
        if server.listening:
            server.close()
            _say(sys.stderr, "greenhttps: stopping (again to drop requests in flight)")
        else:
            server.close_all_connections()

    # Installed before anything is printed: whoever reads our first line may signal.
    handlers = [gevent.signal_handler(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)]
    try:
        try:
            server.listen(args.port, args.host)
        except (greenhttps.Error, OSError) as exc:
            return _fail(f"cannot listen on {args.host}:{args.port}: {_one_line(exc)}")
        url, command_url = _urls(args.host, int(server.address()["port"]))  # type: ignore[index]  # real port
        lines = [f"greenhttps {greenhttps.__version__}: serving HTTPS on {url}"]
        if command_url != url:
            lines.append(f"on this machine: {command_url}")
        if isinstance(on_request, StaticFiles):
            lines.append(f"files from {on_request.root} (GET/HEAD, Range, directory listings)")
        if ca_file:
            lines.append(f"development CA (trust it to verify the server): {ca_file}")
            if command_url != url:
                lines.append("(its certificate names localhost and the loopback addresses only)")
            lines.append("reach it with verification on:")
            lines.append(f"  curl --cacert {ca_file} {command_url}")
            lines.append(f"  {sys.executable} -m greenhttps get {command_url} --ca {ca_file}")
        lines.append("Ctrl-C to stop.")
        _say(sys.stdout, "\n".join(lines))
        server.serve_forever()
    finally:
        for handler in handlers:
            handler.cancel()
    return 0


# ------------------------------------------------------------------- main


def _port(text: str) -> int:
    """An argparse type: a TCP port, 0 to 65535 (argparse says what is wrong, exit 2)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{value} is not a port (0 to 65535; 0 takes a free one)")
    return value


def _prog() -> str:
    """The program's name as invoked: ``greenhttps`` for the installed command,
    ``python -m greenhttps`` for the module."""
    name = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else ""
    if not name or name in ("__main__.py", "-c", "-m"):
        return "python -m greenhttps"
    return name


def _parser() -> argparse.ArgumentParser:
    prog = _prog()
    parser = argparse.ArgumentParser(
        prog=prog,
        description="An HTTPS server (the default command: a demo, or the files in DIR) "
        "and a small curl-like client, for gevent's greenhttps.",
        epilog=f"'{prog} COMMAND --help' tells more of each command.  " + EXIT_STATUSES,
    )
    parser.add_argument(
        "-V", "--version", action="version",
        version=f"greenhttps {greenhttps.__version__} (Python {sys.version.split()[0]}, gevent {gevent.__version__})",
    )
    commands = parser.add_subparsers(dest="command", metavar="{serve,get,help}")
    p_serve = commands.add_parser(
        "serve",
        help="HTTPS server: the files in DIR, or a JSON demo without DIR (the default command)",
        description="Serve the files in DIR over HTTPS (directory listings, Range, "
        "conditional GET), or without DIR a demo answering every request with JSON. "
        "Without --cert/--key or --pfx a development certificate is made (once, in the "
        "user cache folder) and the commands that reach the server are printed. "
        "One access-log line per response on stderr: Combined Log Format (time, client, "
        "request line, status, bytes) and the duration in seconds. "
        "SIGINT/SIGTERM: stop accepting and finish the requests in flight; a second one "
        "drops them.",
        epilog="exit status: 0 stopped by a signal; 1 the certificate or the address is "
        "unusable; 2 bad arguments.",
    )
    p_serve.add_argument(
        "directory", nargs="?", metavar="DIR", help="serve the files in DIR (default: the demo)"
    )
    p_serve.add_argument(
        "--host", default="localhost",
        help="address to listen on (default localhost; 0.0.0.0 or :: for every interface)",
    )
    p_serve.add_argument(
        "--port", type=_port, default=8443, help="0 takes a free port (default 8443)"
    )
    p_serve.add_argument("--cert", metavar="FILE", help="PEM certificate chain file (with --key)")
    p_serve.add_argument("--key", metavar="FILE", help="PEM private key file (with --cert)")
    p_serve.add_argument("--pfx", metavar="FILE", help="PKCS#12 file instead of --cert/--key")
    p_serve.add_argument("--passphrase", help="for the key or the PKCS#12 file")
    p_get = commands.add_parser(
        "get",
        help="fetch a URL, like curl: status and headers to stderr, body to stdout",
        description="Fetch URL (http:// or https://) and write the body to stdout or -o FILE; "
        "the status line and headers go to stderr (-i: to stdout, -s: nowhere). "
        "The server's certificate is verified against the default roots (certifi) "
        "or --ca FILE. A progress bar with an ETA is drawn on stderr when it is a "
        "terminal and the body does not go to it.",
        epilog=EXIT_STATUSES,
    )
    _cli_get.add_arguments(p_get)
    p_help = commands.add_parser("help", help="this help, or a command's", description="Show help.")
    p_help.add_argument("topic", nargs="?", choices=("serve", "get", "help"), metavar="COMMAND",
                        help="the command to tell about (serve, get)")
    parser.set_defaults(_subparsers={"serve": p_serve, "get": p_get, "help": p_help})
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or (argv[0] not in _COMMANDS and argv[0] not in ("-h", "--help", "-V", "--version")):
        argv.insert(0, "serve")  # `python -m greenhttps --port 0` is `serve --port 0`
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command == "help":
        (args._subparsers[args.topic] if args.topic else parser).print_help()
        return 0
    # Ctrl-C is ours to handle: keep gevent's hub from printing it as an error.
    hub = gevent.get_hub()
    hub.NOT_ERROR = (*hub.NOT_ERROR, KeyboardInterrupt)
    try:
        return _cli_get.run(args) if args.command == "get" else serve(args)
    except KeyboardInterrupt:
        return 130  # the shell's code for "stopped by SIGINT"
    finally:
        # The interpreter flushes both at exit; into a closed pipe that would print
        # "Exception ignored" and turn the status into 120.
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                _to_devnull(stream)


if __name__ == "__main__":
    sys.exit(main())
