"""``python -m greenhttps get``: a small curl, built on :func:`greenhttps.fetch`.

The status line and headers go to stderr (``-i``: to stdout before the body; ``-s``:
nowhere), the body to stdout or ``-o FILE``.  ``-v`` tells on stderr what curl's does:
the address connected to, the TLS version and cipher, the certificate's subject and
issuer, and both heads (``>`` sent, ``<`` received).  A progress bar with an ETA is
drawn on stderr when it is a terminal and the body does not go to that terminal.

Exit status: 0; 1 for a network, TLS or file error (one line on stderr); 2 for bad
arguments or a bad URL; 22 for an HTTP status of 400 or more (curl ``--fail``'s);
130 when interrupted.  The same table is in the ``--help`` epilog and the README.
"""

from __future__ import annotations

import argparse
import base64
import os
import sys
import time
from typing import Any
from urllib.parse import urlsplit

from . import errors
from ._fetch import fetch

#: Exit statuses (curl's where curl has one).
EXIT_ERROR, EXIT_USAGE, EXIT_HTTP_ERROR = 1, 2, 22


class UsageError(Exception):
    """A bad argument found after parsing: one line, exit status 2."""


def one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def fail(message: str, code: int = EXIT_ERROR) -> int:
    try:
        print(f"greenhttps: {message}", file=sys.stderr, flush=True)
    except (OSError, ValueError):  # stderr itself is gone: the status still says it
        pass
    return code


# ------------------------------------------------------------- progress bar


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


def _clock(seconds: float) -> str:
    """``m:ss`` (``h:mm:ss`` past an hour), as curl's time columns."""
    whole = int(seconds + 0.5)
    hours, rest = divmod(whole, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


class Progress:
    """A one-line progress bar, redrawn in place (``\\r``) on a terminal.

    It appears only for a large download (``LARGE`` bytes) or a slow one (still going
    after ``SLOW`` seconds): a small quick answer shows no bar at all.  Redrawn at most
    every ``INTERVAL`` seconds; :meth:`finish` draws the final state and a newline.
    With a known size it shows the percentage, the bar, the rate and the ETA (the
    time left at the mean rate so far).
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
        per_second = self.received / max(now - self.started, 1e-3)
        rate = f"{_size(per_second)}/s"
        if self.total:  # the size is known: percentage, bar, ETA
            done = min(self.received / self.total, 1.0)
            filled = int(done * self.WIDTH)
            bar = "#" * filled + " " * (self.WIDTH - filled)
            left = max(self.total - self.received, 0) / per_second if per_second else 0.0
            line = (
                f"{done * 100:3.0f}% [{bar}] {_size(self.received)} of {_size(self.total)}  {rate}"
                f"  ETA {_clock(left)}"
            )
        else:
            line = f"{_size(self.received)}  {rate}"
        self.stream.write("\r" + line.ljust(self._length))
        self.stream.flush()
        self._length = len(line)


def _wants_progress(args: argparse.Namespace) -> bool:
    """A bar on a terminal's stderr, unless the body itself goes to that terminal."""
    if args.no_progress or args.silent or args.verbose or not sys.stderr.isatty():
        return False
    return bool(args.output) or not sys.stdout.isatty()


# --------------------------------------------------------------- the request


def _request_options(args: argparse.Namespace) -> dict[str, Any]:
    """fetch()'s arguments from the command line; UsageError for a bad one."""
    headers: list[tuple[str, str]] = []
    for line in args.header:
        name, sep, value = line.partition(":")
        if not sep or not name.strip():
            raise UsageError(f"bad header {line!r} (want 'Name: value')")
        headers.append((name.strip(), value.strip()))
    if args.user is not None:
        if ":" not in args.user:
            raise UsageError("-u wants user:password")
        token = base64.b64encode(args.user.encode("utf-8")).decode("ascii")
        headers.append(("Authorization", f"Basic {token}"))
    if not args.compressed and not any(name.lower() == "accept-encoding" for name, _ in headers):
        # curl sends no Accept-Encoding without --compressed: the body comes as stored.
        headers.append(("Accept-Encoding", "identity"))
    body = None
    if args.data is not None:
        body = _data(args.data)
    options: dict[str, Any] = {
        "method": args.method or ("POST" if body is not None else "GET"),
        "headers": headers,
        "body": body,
        "redirect": "follow" if args.location else "manual",
        "max_redirects": args.max_redirs,
        "decompress": args.compressed,
        # None: fetch() reads HTTPS_PROXY & co., as curl does; --proxy URL names one, and
        # --proxy '' none (curl's spelling).
        "proxy": False if args.proxy == "" else args.proxy,
    }
    if args.timeout:
        options["timeout"] = args.timeout * 1000  # greenhttps takes milliseconds
    if urlsplit(args.url).scheme == "https":
        if args.insecure:
            options["reject_unauthorized"] = False
        if args.ca:
            with open(args.ca, "rb") as f:
                options["ca"] = f.read()
    if args.proxy_cacert:
        # An https:// proxy's own certificate is checked against these, never --ca (curl's
        # --proxy-cacert): the proxy and the origin are different parties.
        with open(args.proxy_cacert, "rb") as f:
            options["proxy_ca"] = f.read()
    return options


def _data(spec: str) -> bytes:
    """``-d``: the text as given, or ``@FILE`` the file's bytes (``@-``: stdin)."""
    if not spec.startswith("@"):
        return spec.encode("utf-8")
    if spec == "@-":
        return sys.stdin.buffer.read()
    with open(spec[1:], "rb") as f:
        return f.read()


def check_url(url: str) -> None:
    """UsageError unless ``url`` is an http: or https: URL with a host."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  (raises ValueError for a bad port)
    except ValueError as exc:
        raise UsageError(f"bad URL {url!r}: {exc}") from None
    if parts.scheme not in ("http", "https"):
        raise UsageError(f"bad URL {url!r}: want http:// or https://")
    if not parts.hostname:
        raise UsageError(f"bad URL {url!r}: no host")


def _name(parts: Any) -> str:
    """``CN=localhost, O=...`` from getpeercert()'s ``((('commonName', 'x'),), ...)``."""
    short = {"commonName": "CN", "organizationName": "O", "organizationalUnitName": "OU",
             "countryName": "C", "localityName": "L", "stateOrProvinceName": "ST"}
    return ", ".join(f"{short.get(key, key)}={value}" for rdn in parts or () for key, value in rdn)


def _as_text(value: Any) -> str:
    return value.decode("latin-1") if isinstance(value, (bytes, bytearray)) else str(value)


def _tell_verbose(res: Any, out: Any) -> None:
    """curl -v's story, after the fact: the connection, TLS, then both heads."""
    raw, req = res.raw, getattr(res, "_request", None)
    sock = raw.socket
    if sock is not None:
        out.write(f"* Connected to {sock.remote_address} port {sock.remote_port}\n")
        if sock.get_protocol():
            cipher = (sock.get_cipher() or {}).get("name")
            out.write(f"* TLS: {sock.get_protocol()}, cipher {cipher}\n")
            cert = sock.get_peer_certificate()
            if cert:
                out.write("* Server certificate:\n")
                out.write(f"*   subject: {_name(cert.get('subject'))}\n")
                out.write(f"*   issuer: {_name(cert.get('issuer'))}\n")
                if cert.get("notAfter"):
                    out.write(f"*   expires: {cert['notAfter']}\n")
    if req is not None:
        out.write(f"> {req.method} {req.path} HTTP/1.1\n")
        for name, value in getattr(req, "_pairs", None) or ():
            out.write(f"> {_as_text(name)}: {_as_text(value)}\n")
        out.write(">\n")
    for line in _head_lines(raw):
        out.write(f"< {line}\n")
    out.write("<\n")
    out.flush()


def _head_lines(raw: Any) -> list[str]:
    lines = [f"HTTP/{raw.http_version} {raw.status_code} {raw.status_message}"]
    lines += [f"{name}: {value}" for name, value in zip(raw.raw_headers[0::2], raw.raw_headers[1::2])]
    return lines


def _copy(res: Any, out: Any, progress: Progress | None) -> None:
    for chunk in res:  # as it arrives: a streamed response shows as it streams
        out.write(chunk)
        out.flush()
        if progress is not None:
            progress.update(len(chunk))


def _where(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.hostname}:{parts.port or (443 if parts.scheme == 'https' else 80)}"


def _tls_hint(exc: errors.Error, url: str) -> str:
    return (f"{_where(url)}: {one_line(exc)} -- to trust the server's CA: --ca FILE (the CA certificate, PEM); "
            f"to skip the check: -k")


def run(args: argparse.Namespace) -> int:
    """The ``get`` command; returns the exit status."""
    try:
        check_url(args.url)
        options = _request_options(args)
    except UsageError as exc:
        return fail(str(exc), EXIT_USAGE)
    except OSError as exc:  # --ca or -d @FILE unreadable
        return fail(one_line(exc))
    progress: Progress | None = None
    try:
        res = fetch(args.url, **options)
        if args.verbose:
            _tell_verbose(res, sys.stderr)
        elif args.include:
            sys.stdout.buffer.write("".join(f"{line}\r\n" for line in _head_lines(res.raw)).encode() + b"\r\n")
        elif not args.silent:
            print("\n".join(_head_lines(res.raw)), file=sys.stderr, flush=True)
        length = res.headers.get("content-length")
        if _wants_progress(args):
            # A decoded body is longer than its Content-Length: then the size is unknown.
            known = length is not None and length.isdigit() and not (
                args.compressed and res.headers.get("content-encoding"))
            progress = Progress(int(length) if length is not None and known else None, sys.stderr)
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
        if args.output or isinstance(exc, errors.Error):
            return fail(one_line(exc))
        # `get URL | head`: the reader of stdout has what it wanted.  Quietly, as curl;
        # stdout goes to /dev/null so that the exit's final flush cannot complain.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_ERROR
    except (errors.InvalidURLError, errors.InvalidProtocolError) as exc:
        return fail(f"bad URL {args.url!r}: {one_line(exc)}", EXIT_USAGE)
    except errors.InvalidArgumentError as exc:  # a bad host in the URL, a bad -H value...
        return fail(one_line(exc), EXIT_USAGE)
    except errors.CertificateError as exc:
        return fail(_tls_hint(exc, args.url))
    except errors.TLSError as exc:  # not the certificate: a protocol or cipher mismatch...
        return fail(f"{_where(args.url)}: TLS: {one_line(exc)}")
    except (errors.Error, OSError, ValueError) as exc:
        return fail(one_line(exc))
    return 0 if res.status < 400 else EXIT_HTTP_ERROR


def count(text: str) -> int:
    """An argparse type: an int >= 0 (argparse then says what is wrong, exit 2)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more: {text!r}")
    return value


def seconds(text: str) -> float:
    """An argparse type: a number of seconds >= 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0: {text!r}")
    return value


def add_arguments(p_get: argparse.ArgumentParser) -> None:
    """The ``get`` command's options (curl's letters where curl has them)."""
    p_get.add_argument("url", metavar="URL", help="the http:// or https:// URL to fetch")
    p_get.add_argument("--ca", metavar="FILE",
                       help="trust the CA certificate(s) in this PEM file instead of the default roots "
                            "(the demo server prints its development CA's path)")
    p_get.add_argument("-k", "--insecure", action="store_true", help="do not verify the server's certificate")
    p_get.add_argument("-o", "--output", metavar="FILE", help="write the body to FILE instead of stdout")
    p_get.add_argument("-H", "--header", action="append", default=[], metavar="'NAME: VALUE'",
                       help="send this header (repeatable)")
    p_get.add_argument("-X", "--method", help="the request method (default GET, or POST with -d)")
    p_get.add_argument("-d", "--data", metavar="DATA",
                       help="send DATA as the request body; @FILE sends the file's bytes, @- standard input")
    p_get.add_argument("-u", "--user", metavar="USER:PASSWORD", help="HTTP Basic authentication")
    p_get.add_argument("-L", "--location", action="store_true", help="follow redirects")
    p_get.add_argument("--max-redirs", type=count, default=20, metavar="N",
                       help="with -L, give up after N redirects (default 20)")
    p_get.add_argument("--compressed", action="store_true",
                       help="ask for a compressed body (gzip, deflate, and br/zstd when installed) and decode it")
    p_get.add_argument("--proxy", metavar="URL",
                       help="go through this proxy (http://[user:password@]host:port; https://, socks5://, "
                            "socks5h:// too), or none with "
                            "--proxy ''; by default HTTPS_PROXY, HTTP_PROXY, ALL_PROXY and NO_PROXY are read, "
                            "as curl does")
    p_get.add_argument("--proxy-cacert", metavar="FILE",
                       help="check an https:// proxy's certificate against the CA certificate(s) in this PEM file "
                            "(--ca is for the origin only; default: the system's roots)")
    p_get.add_argument("-i", "--include", action="store_true",
                       help="write the status line and headers to stdout, before the body")
    p_get.add_argument("-v", "--verbose", action="store_true",
                       help="tell on stderr: the address, TLS version and cipher, the certificate's "
                            "subject and issuer, the request and response heads")
    p_get.add_argument("-s", "--silent", action="store_true",
                       help="no status, headers or progress bar on stderr (errors still are)")
    p_get.add_argument("--no-progress", action="store_true",
                       help="no progress bar (by default one is drawn on stderr when it is a terminal)")
    p_get.add_argument("--timeout", type=seconds, default=30.0, metavar="SECONDS",
                       help="idle timeout in seconds, 0 for none (default 30)")
