"""Test helpers shared by the server and client tests.

Everything here is independent of greenhttps. The HTTP/1.1 response parser is written
by hand (no h11, no http.client), so it can check greenhttps's framing byte for byte.
All I/O is cooperative: sockets come from ``gevent.socket``/``gevent.ssl`` and
subprocesses from ``gevent.subprocess``. A test can therefore run a peer (curl,
node, a Python child process) while greenhttps serves it in the same process, with
no monkey-patching.
"""

from __future__ import annotations

import contextlib
import gc
import os
import shutil
import socket as stdlib_socket
import ssl
import struct
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import gevent
import gevent.socket
import gevent.ssl
import gevent.subprocess
import greenlet
import pytest

REPO_ROOT: Path = Path(__file__).resolve().parent.parent
"""The checkout root. ``run_python`` puts it on ``PYTHONPATH``."""

Header = tuple[bytes, bytes]


# --------------------------------------------------------------------------- tools


def which(name: str) -> str | None:
    """Return the path of the executable ``name`` on PATH, or None."""
    return shutil.which(name)


requires_curl = pytest.mark.skipif(which("curl") is None, reason="curl not found on PATH")
requires_openssl = pytest.mark.skipif(which("openssl") is None, reason="openssl not found on PATH")
requires_node = pytest.mark.skipif(which("node") is None, reason="node not found on PATH")


def has_ipv6() -> bool:
    """Return whether this host can listen on ``::1``."""
    if not stdlib_socket.has_ipv6:
        return False
    try:
        with stdlib_socket.socket(stdlib_socket.AF_INET6, stdlib_socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
    except OSError:
        return False
    return True


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port that was free a moment ago (for peers that cannot take port 0).

    Another process may take it before the caller binds it, so callers must retry
    (``openssl_s_server`` does).
    """
    family = stdlib_socket.AF_INET6 if ":" in host else stdlib_socket.AF_INET
    with stdlib_socket.socket(family, stdlib_socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
    return port


# ------------------------------------------------------------------------- sockets


def unverified_client_context() -> ssl.SSLContext:
    """Return a client context that checks nothing (raw framing tests only)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def wrap_client(
    sock: gevent.socket.socket,
    ssl_context: ssl.SSLContext,
    server_hostname: str | None,
    *,
    timeout: float = 5,
) -> gevent.ssl.SSLSocket:
    """Wrap a connected gevent socket as a cooperative TLS client and do the handshake.

    ``ssl_context`` may be a plain stdlib context: the socket class, not the context,
    decides whether I/O is cooperative.
    """
    tls = gevent.ssl.SSLSocket(
        sock=sock,
        server_hostname=server_hostname,
        do_handshake_on_connect=False,
        _context=ssl_context,
    )
    try:
        with gevent.Timeout(timeout, TimeoutError(f"TLS handshake took more than {timeout}s")):
            tls.do_handshake()
    except BaseException:
        tls.close()
        raise
    return tls


def wrap_server(
    sock: gevent.socket.socket, ssl_context: ssl.SSLContext, *, timeout: float = 5
) -> gevent.ssl.SSLSocket:
    """Wrap an accepted gevent socket as a cooperative TLS server and do the handshake."""
    tls = gevent.ssl.SSLSocket(
        sock=sock, server_side=True, do_handshake_on_connect=False, _context=ssl_context
    )
    try:
        with gevent.Timeout(timeout, TimeoutError(f"TLS handshake took more than {timeout}s")):
            tls.do_handshake()
    except BaseException:
        tls.close()
        raise
    return tls


def raw_connect(
    port: int,
    *,
    tls: bool = False,
    ssl_context: ssl.SSLContext | None = None,
    server_hostname: str | None = "localhost",
    timeout: float = 5,
    host: str = "127.0.0.1",
) -> gevent.socket.socket:
    """Connect a cooperative socket to ``host:port`` (TLS handshake done if ``tls``).

    ``timeout`` is both the connect/handshake limit and the socket's timeout for later
    ``recv`` calls. With ``tls`` and no ``ssl_context`` nothing is verified; pass
    ``client_ssl_context`` when verification matters. No SNI is sent when
    ``server_hostname`` is an IP literal (Python's rule).
    """
    sock = gevent.socket.create_connection((host, port), timeout=timeout)
    if not tls:
        return sock
    ctx = ssl_context if ssl_context is not None else unverified_client_context()
    tls_sock = wrap_client(sock, ctx, server_hostname, timeout=timeout)
    tls_sock.settimeout(timeout)
    return tls_sock


def rst_close(sock: stdlib_socket.socket) -> None:
    """Close ``sock`` with a TCP RST instead of a FIN (SO_LINGER on, zero timeout)."""
    sock.setsockopt(stdlib_socket.SOL_SOCKET, stdlib_socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def read_until_eof(
    sock: stdlib_socket.socket, timeout: float = 5, *, reset_ok: bool = False
) -> bytes:
    """Read everything until the peer closes; return it.

    Raises ``TimeoutError`` (with the bytes so far in ``.args[1]``) if the peer has not
    closed within ``timeout`` seconds. A connection reset is re-raised unless
    ``reset_ok``, in which case it counts as the end.
    """
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    old = sock.gettimeout()
    try:
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            sock.settimeout(remaining)
            try:
                data = sock.recv(65536)
            except TimeoutError:
                break
            except ConnectionResetError:
                if reset_ok:
                    return b"".join(chunks)
                raise
            if not data:
                return b"".join(chunks)
            chunks.append(data)
    finally:
        with contextlib.suppress(OSError):
            sock.settimeout(old)
    raise TimeoutError(f"peer did not close within {timeout}s", b"".join(chunks))


def read_available(
    sock: stdlib_socket.socket, idle_timeout: float = 0.5, timeout: float = 5
) -> bytes:
    """Read until EOF, a reset, or ``idle_timeout`` seconds without data; return the bytes.

    ``timeout`` bounds the whole call. The socket's own timeout is restored afterwards.
    """
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    old = sock.gettimeout()
    try:
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            sock.settimeout(min(idle_timeout, remaining))
            try:
                data = sock.recv(65536)
            except (TimeoutError, ConnectionResetError):
                break
            if not data:
                break
            chunks.append(data)
    finally:
        with contextlib.suppress(OSError):
            sock.settimeout(old)
    return b"".join(chunks)


def exchange(
    port: int,
    request_bytes: bytes,
    tls: bool = True,
    ssl_context: ssl.SSLContext | None = None,
    *,
    server_hostname: str | None = "localhost",
    idle_timeout: float = 0.5,
    timeout: float = 5,
    host: str = "127.0.0.1",
) -> bytes:
    """Connect, send ``request_bytes`` as is, and return everything read back.

    Reading stops at EOF, at a reset, or after ``idle_timeout`` seconds of silence. Use it
    for hostile-request tests where the exact reply (or its absence) is what is checked.
    """
    sock = raw_connect(
        port,
        tls=tls,
        ssl_context=ssl_context,
        server_hostname=server_hostname,
        timeout=timeout,
        host=host,
    )
    try:
        sock.sendall(request_bytes)
        return read_available(sock, idle_timeout=idle_timeout, timeout=timeout)
    finally:
        sock.close()


def read_request_head(sock: stdlib_socket.socket, timeout: float = 5) -> bytes:
    """Read a request head up to and including the blank line (for script handlers).

    It reads byte by byte, so the body stays in the socket. Returns what it has if the
    peer closes first (``b''`` if nothing came).
    """
    head = bytearray()
    with gevent.Timeout(timeout, TimeoutError(f"no request head within {timeout}s")):
        while not head.endswith(b"\r\n\r\n"):
            b = sock.recv(1)
            if not b:
                break
            head += b
    return bytes(head)


# ----------------------------------------------------------- HTTP response parser


class ProtocolViolation(AssertionError):
    """The bytes received are not a valid HTTP/1.1 response."""


class IncompleteResponse(ProtocolViolation):
    """The peer closed (or the parser ran out of bytes) before the response ended.

    ``data`` holds every byte consumed so far; it is ``b''`` when the connection
    closed before any response byte.
    """

    def __init__(self, message: str, data: bytes) -> None:
        super().__init__(f"{message} (got {len(data)} bytes: {data[:200]!r})")
        self.data = data


@dataclass
class Response:
    """A parsed response, plus what is needed to check its framing exactly.

    It unpacks as ``status_line, headers, body = read_response(sock)``.
    ``framing`` is ``'content-length'``, ``'chunked'``, ``'close'`` (body delimited by
    EOF) or ``'none'`` (HEAD, 1xx, 204, 304). ``raw_body`` is the body as sent on the
    wire (chunk-size lines included). ``chunks`` holds each chunk's data, and ``raw``
    holds every byte of the response.
    """

    status_line: bytes
    headers: list[Header]
    body: bytes
    framing: str
    raw_body: bytes = b""
    chunks: list[bytes] = field(default_factory=list)
    trailers: list[Header] = field(default_factory=list)
    raw: bytes = b""

    def __iter__(self) -> Iterator[object]:
        return iter((self.status_line, self.headers, self.body))

    @property
    def http_version(self) -> bytes:
        """``b'HTTP/1.1'`` etc."""
        return self.status_line.split(b" ", 1)[0]

    @property
    def status(self) -> int:
        """The status code as an int."""
        return int(self.status_line.split(b" ", 2)[1])

    @property
    def reason(self) -> bytes:
        """The reason phrase (``b''`` when absent)."""
        parts = self.status_line.split(b" ", 2)
        return parts[2] if len(parts) > 2 else b""

    def get_all(self, name: str | bytes) -> list[bytes]:
        """All values of header ``name`` (case-insensitive), in order received."""
        key = (name.encode("latin-1") if isinstance(name, str) else name).lower()
        return [v for n, v in self.headers if n.lower() == key]

    def get(self, name: str | bytes) -> bytes | None:
        """The first value of header ``name`` (case-insensitive), or None."""
        values = self.get_all(name)
        return values[0] if values else None

    def header_names(self) -> list[bytes]:
        """The header names exactly as sent (case preserved), in order."""
        return [n for n, _ in self.headers]


class _Source(Protocol):
    consumed: bytearray

    def read_line(self) -> bytes: ...

    def read_exact(self, n: int) -> bytes: ...

    def read_rest(self) -> bytes: ...


class _SocketSource:
    """Reads from a socket without reading past the current response.

    Lines are read one byte at a time and bodies exactly, so pipelined responses stay
    in the socket for the next call.
    """

    def __init__(self, sock: stdlib_socket.socket) -> None:
        self.sock = sock
        self.consumed = bytearray()

    def read_line(self) -> bytes:
        start = len(self.consumed)
        while True:
            b = self.sock.recv(1)
            if not b:
                break
            self.consumed += b
            if b == b"\n":
                break
        return bytes(self.consumed[start:])

    def read_exact(self, n: int) -> bytes:
        start = len(self.consumed)
        while len(self.consumed) - start < n:
            data = self.sock.recv(min(65536, n - (len(self.consumed) - start)))
            if not data:
                break
            self.consumed += data
        return bytes(self.consumed[start:])

    def read_rest(self) -> bytes:
        start = len(self.consumed)
        while True:
            data = self.sock.recv(65536)
            if not data:
                break
            self.consumed += data
        return bytes(self.consumed[start:])


class _BytesSource:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0
        self.consumed = bytearray()

    def _take(self, end: int) -> bytes:
        out = self.data[self.pos : end]
        self.pos = min(end, len(self.data))
        self.consumed += out
        return out

    def read_line(self) -> bytes:
        nl = self.data.find(b"\n", self.pos)
        return self._take(len(self.data) if nl < 0 else nl + 1)

    def read_exact(self, n: int) -> bytes:
        return self._take(self.pos + n)

    def read_rest(self) -> bytes:
        return self._take(len(self.data))


def _line(src: _Source, what: str) -> bytes:
    """Read one line that must end in CRLF; return it without the CRLF."""
    line = src.read_line()
    if not line.endswith(b"\n"):
        raise IncompleteResponse(f"EOF inside {what}", bytes(src.consumed))
    if not line.endswith(b"\r\n"):
        raise ProtocolViolation(f"{what} ends in a bare LF: {line!r}")
    return line[:-2]


def _header_block(src: _Source, what: str) -> list[Header]:
    headers: list[Header] = []
    while True:
        line = _line(src, what)
        if not line:
            return headers
        if line[:1] in (b" ", b"\t"):
            raise ProtocolViolation(f"obsolete line folding in {what}: {line!r}")
        name, sep, value = line.partition(b":")
        if not sep or not name or name != name.strip():
            raise ProtocolViolation(f"malformed field line in {what}: {line!r}")
        headers.append((name, value.strip(b" \t")))


def _parse(src: _Source, method: str | bytes) -> Response:
    meth = method.decode("ascii") if isinstance(method, bytes) else method
    first = src.read_line()
    if not first:
        raise IncompleteResponse("connection closed before any response byte", b"")
    if not first.endswith(b"\r\n"):
        if first.endswith(b"\n"):
            raise ProtocolViolation(f"status line ends in a bare LF: {first!r}")
        raise IncompleteResponse("EOF inside the status line", bytes(src.consumed))
    status_line = first[:-2]
    parts = status_line.split(b" ", 2)
    if (
        len(parts) < 2
        or not parts[0].startswith(b"HTTP/")
        or not (len(parts[1]) == 3 and parts[1].isdigit())
    ):
        raise ProtocolViolation(f"bad status line: {status_line!r}")
    status = int(parts[1])
    headers = _header_block(src, "the header block")

    def values(name: bytes) -> list[bytes]:
        return [v for n, v in headers if n.lower() == name]

    # RFC 9112 section 6.3, in order.
    if (
        meth.upper() == "HEAD"
        or 100 <= status < 200
        or status in (204, 304)
        or (meth.upper() == "CONNECT" and 200 <= status < 300)
    ):
        return Response(status_line, headers, b"", "none", raw=bytes(src.consumed))

    te = values(b"transfer-encoding")
    if te:
        codings = [c.strip().lower() for v in te for c in v.split(b",") if c.strip()]
        if codings and codings[-1] == b"chunked":
            return _parse_chunked(src, status_line, headers)
        body = src.read_rest()
        return Response(status_line, headers, body, "close", raw_body=body, raw=bytes(src.consumed))

    cl = values(b"content-length")
    if cl:
        lengths = {x.strip() for v in cl for x in v.split(b",")}
        if len(lengths) != 1 or not next(iter(lengths)).isdigit():
            raise ProtocolViolation(f"bad Content-Length: {cl!r}")
        n = int(next(iter(lengths)))
        body = src.read_exact(n)
        if len(body) < n:
            raise IncompleteResponse(
                f"EOF after {len(body)} of {n} body bytes", bytes(src.consumed)
            )
        return Response(
            status_line, headers, body, "content-length", raw_body=body, raw=bytes(src.consumed)
        )

    body = src.read_rest()
    return Response(status_line, headers, body, "close", raw_body=body, raw=bytes(src.consumed))


def _parse_chunked(src: _Source, status_line: bytes, headers: list[Header]) -> Response:
    body_start = len(src.consumed)
    chunks: list[bytes] = []
    while True:
        size_line = _line(src, "a chunk-size line")
        size_text = size_line.split(b";", 1)[0].strip()
        try:
            size = int(size_text, 16)
        except ValueError:
            raise ProtocolViolation(f"bad chunk-size line: {size_line!r}") from None
        if size == 0:
            break
        data = src.read_exact(size)
        if len(data) < size:
            raise IncompleteResponse(
                f"EOF after {len(data)} of {size} chunk bytes", bytes(src.consumed)
            )
        chunks.append(data)
        end = src.read_exact(2)
        if end != b"\r\n":
            if len(end) < 2:
                raise IncompleteResponse("EOF after chunk data", bytes(src.consumed))
            raise ProtocolViolation(f"chunk data not followed by CRLF: {end!r}")
    trailers = _header_block(src, "the trailer section")
    raw = bytes(src.consumed)
    return Response(
        status_line,
        headers,
        b"".join(chunks),
        "chunked",
        raw_body=raw[body_start:],
        chunks=chunks,
        trailers=trailers,
        raw=raw,
    )


def read_response(
    sock: stdlib_socket.socket, method: str | bytes = "GET", *, timeout: float = 5
) -> Response:
    """Read exactly one HTTP/1.x response from ``sock`` (never reads past its end).

    ``method`` is the request method it answers (HEAD responses have no body). A 1xx
    response is returned on its own; call again for the final one. Raises
    ``IncompleteResponse`` on early EOF, ``ProtocolViolation`` on malformed framing,
    ``TimeoutError`` after ``timeout`` seconds, and lets socket errors through.
    """
    src = _SocketSource(sock)
    with gevent.Timeout(timeout, TimeoutError(f"no complete response within {timeout}s")):
        return _parse(src, method)


def parse_response(data: bytes, method: str | bytes = "GET") -> tuple[Response, bytes]:
    """Parse one response from the start of ``data``; return it and the bytes after it.

    A close-delimited body takes all the remaining bytes.
    """
    src = _BytesSource(data)
    resp = _parse(src, method)
    return resp, data[src.pos :]


def parse_responses(data: bytes, methods: Sequence[str | bytes]) -> tuple[list[Response], bytes]:
    """Parse one response per entry of ``methods`` (1xx ones are extra); return them and the rest."""
    out: list[Response] = []
    rest = data
    for method in methods:
        while True:
            resp, rest = parse_response(rest, method)
            out.append(resp)
            if not 100 <= resp.status < 200 or resp.status == 101:
                break
    return out, rest


# ------------------------------------------------------------------------- leaks


def open_fds() -> int:
    """The number of file descriptors this process has open (Linux; -1 elsewhere)."""
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:
        return -1


def live_greenlets() -> int:
    """The number of greenlets of this thread (its hub and main one included) that are
    not dead.

    Greenlets of other threads -- gevent's thread pool, which the resolver behind
    ``create_connection`` grows on demand up to its size -- are gevent's, not ours,
    and are not counted.
    """
    def root(g: greenlet.greenlet) -> greenlet.greenlet:
        while g.parent is not None:
            g = g.parent
        return g

    ours = root(greenlet.getcurrent())
    gc.collect()
    return sum(
        1 for obj in gc.get_objects()
        if isinstance(obj, greenlet.greenlet) and not obj.dead and root(obj) is ours
    )


def settle(seconds: float = 0.05) -> None:
    """Let pending greenlets and callbacks run (before counting fds or greenlets)."""
    gevent.sleep(0)
    gevent.sleep(seconds)


# -------------------------------------------------------------------- processes


def _env_with_repo(env: Mapping[str, str] | None = None) -> dict[str, str]:
    out = dict(os.environ)
    if env:
        out.update(env)
    paths = [str(REPO_ROOT)]
    if out.get("PYTHONPATH"):
        paths.append(out["PYTHONPATH"])
    out["PYTHONPATH"] = os.pathsep.join(paths)
    return out


def run_command(
    argv: Sequence[str],
    timeout: float = 30,
    *,
    input: bytes | None = None,
    env: Mapping[str, str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
) -> gevent.subprocess.CompletedProcess[bytes]:
    """Run a program cooperatively (the hub keeps serving) and capture its output as bytes.

    Raises ``subprocess.TimeoutExpired`` (after killing it) past ``timeout`` seconds.
    """
    full_env = dict(os.environ)
    if env:
        full_env.update(env)
    return gevent.subprocess.run(
        list(argv),
        input=input,
        stdout=gevent.subprocess.PIPE,
        stderr=gevent.subprocess.PIPE,
        timeout=timeout,
        env=full_env,
        cwd=cwd,
        check=False,
    )


def run_python(
    code: str, timeout: float = 30, *, env: Mapping[str, str] | None = None
) -> gevent.subprocess.CompletedProcess[str]:
    """Run ``sys.executable -c code`` with the checkout on PYTHONPATH; capture text output.

    The child process is a clean interpreter, useful for monkey-patching tests and for
    stdlib peers (``http.client``, ``urllib``) that would block the hub if run in-process.
    It runs cooperatively, so a server in this process can answer it.
    """
    return gevent.subprocess.run(
        [sys.executable, "-c", code],
        stdout=gevent.subprocess.PIPE,
        stderr=gevent.subprocess.PIPE,
        timeout=timeout,
        env=_env_with_repo(env),
        cwd=str(REPO_ROOT),
        universal_newlines=True,
        check=False,
    )


class PeerError(RuntimeError):
    """A peer process (node, openssl) did not start."""


def _stop(proc: gevent.subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=3)
        except gevent.subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=3)


def _tail(path: Path) -> str:
    try:
        return path.read_text(errors="replace")[-2000:]
    except OSError:
        return ""


@contextlib.contextmanager
def node_server(
    script_js: str,
    args: Sequence[str] = (),
    *,
    env: Mapping[str, str] | None = None,
    timeout: float = 10,
) -> Iterator[int]:
    """Run ``node script.js *args`` and yield the port the script prints.

    The script must print the port it listens on as the first line of stdout, for
    example ``server.listen(0, '127.0.0.1', () => console.log(server.address().port))``.
    Arguments arrive as ``process.argv.slice(2)``. stdout and stderr go to files (a
    chatty script can't fill a pipe and stall). The process is killed on exit. If it
    crashed (non-zero exit) meanwhile, its stderr is raised as ``PeerError``, or
    printed when the block is already raising.
    """
    with tempfile.TemporaryDirectory(prefix="greenhttps-node-") as d:
        script = Path(d, "server.js")
        script.write_text(script_js)
        out, err = Path(d, "stdout"), Path(d, "stderr")
        full_env = dict(os.environ)
        if env:
            full_env.update(env)
        with open(out, "wb") as fo, open(err, "wb") as fe:
            proc = gevent.subprocess.Popen(
                ["node", str(script), *args], stdout=fo, stderr=fe, env=full_env, cwd=d
            )
        try:
            deadline = time.monotonic() + timeout
            while True:
                text = out.read_bytes()
                if b"\n" in text:
                    first = text.split(b"\n", 1)[0].strip()
                    try:
                        port = int(first)
                    except ValueError:
                        raise PeerError(
                            f"node printed {first!r} instead of a port; stderr: {_tail(err)}"
                        ) from None
                    break
                if proc.poll() is not None:
                    raise PeerError(f"node exited with {proc.returncode}: {_tail(err)}")
                if time.monotonic() > deadline:
                    raise PeerError(f"node printed no port within {timeout}s: {_tail(err)}")
                gevent.sleep(0.02)
            try:
                yield port
            except BaseException:
                if proc.poll():
                    sys.stderr.write(f"node exited with {proc.returncode}: {_tail(err)}\n")
                raise
            if proc.poll():
                raise PeerError(f"node exited with {proc.returncode}: {_tail(err)}")
        finally:
            _stop(proc)


@contextlib.contextmanager
def openssl_s_server(
    cert_file: str | os.PathLike[str],
    key_file: str | os.PathLike[str],
    extra_args: Sequence[str] = (),
    *,
    www: bool = True,
    timeout: float = 10,
    attempts: int = 5,
) -> Iterator[int]:
    """Run ``openssl s_server`` on a free loopback port and yield the port.

    With ``www`` (the default) it answers ``GET /`` with an HTTP/1.0 200 status page,
    close-delimited, which is enough for client tests. ``extra_args`` go on the command
    line as given (e.g. ``['-Verify', '1', '-CAfile', ca_file]`` for client certs,
    ``['-tls1_2']``). It yields once the server prints ``ACCEPT``, retries on another
    port if the chosen one was taken, and kills the server on exit.
    """
    last = ""
    for _ in range(attempts):
        port = free_port()
        with tempfile.TemporaryDirectory(prefix="greenhttps-openssl-") as d:
            out, err = Path(d, "stdout"), Path(d, "stderr")
            argv = [
                "openssl", "s_server",
                "-accept", f"127.0.0.1:{port}",
                "-cert", os.fspath(cert_file),
                "-key", os.fspath(key_file),
                *(["-www"] if www else []),
                *extra_args,
            ]  # fmt: skip
            with open(out, "wb") as fo, open(err, "wb") as fe:
                proc = gevent.subprocess.Popen(
                    argv, stdin=gevent.subprocess.DEVNULL, stdout=fo, stderr=fe, cwd=d
                )
            try:
                deadline = time.monotonic() + timeout
                ready = False
                while time.monotonic() < deadline:
                    if b"ACCEPT" in out.read_bytes():
                        ready = True
                        break
                    if proc.poll() is not None:
                        break
                    gevent.sleep(0.02)
                if ready:
                    yield port
                    return
                last = _tail(err) + _tail(out)
                if proc.poll() is None:
                    raise PeerError(f"openssl s_server not ready within {timeout}s: {last}")
            finally:
                _stop(proc)
    raise PeerError(f"openssl s_server did not start after {attempts} attempts: {last}")


def tcp_pair() -> tuple[gevent.socket.socket, gevent.socket.socket]:
    """A connected loopback TCP pair of gevent sockets: (server side, client side)."""
    listener = gevent.socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    client = gevent.socket.create_connection(listener.getsockname())
    server, _ = listener.accept()
    listener.close()
    return server, client


def bio_tls_pair(server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext,
                 hostname: str = "localhost") -> tuple[object, gevent.ssl.SSLSocket]:
    """A finished TLS connection: greenhttps's memory-BIO socket as the server, gevent's
    ``SSLSocket`` as the client, with the client's TLS 1.3 session tickets taken in (a
    client that closes with them unread resets the connection instead of ending it)."""
    from greenhttps._tlsbio import BioSSLSocket

    raw_server, raw_client = tcp_pair()
    server = BioSSLSocket(server_ctx, raw_server, server_side=True)
    client = client_ctx.wrap_socket(raw_client, server_hostname=hostname, do_handshake_on_connect=False)
    handshake = gevent.spawn(server.do_handshake)
    client.settimeout(5)
    client.do_handshake()
    handshake.get(timeout=5)
    client.settimeout(0.05)
    with pytest.raises(TimeoutError):
        client.recv(1)
    client.settimeout(None)
    return server, client


def collect_in_greenlet(sock: object, total: int) -> tuple[gevent.Greenlet, bytearray]:
    """Read ``sock`` in a greenlet until ``total`` bytes (or EOF); the bytes so far."""
    received = bytearray()

    def reader() -> None:
        while len(received) < total:
            data = sock.recv(65536)  # type: ignore[attr-defined]
            if not data:
                return
            received.extend(data)

    return gevent.spawn(reader), received


def run_in_thread(target: object, seconds: float = 10) -> None:
    """Run ``target`` (a blocking peer: stdlib ssl, a subprocess) in a real thread
    while this one's gevent hub keeps serving; wait at most ``seconds``."""
    import threading

    thread = threading.Thread(target=target)  # type: ignore[arg-type]
    thread.start()
    deadline = time.monotonic() + seconds
    while thread.is_alive() and time.monotonic() < deadline:
        gevent.sleep(0.01)
    thread.join(timeout=1)


def fill_backlog(listener: stdlib_socket.socket, settle_for: float = 0.1) -> list[stdlib_socket.socket]:
    """Fill a ``listen(0)`` socket's accept queue with connections nobody accepts, so
    that a new connection to it hangs in the handshake (the kernel drops its SYNs).
    Returns the fillers; closing them (and accepting) lets connections through."""
    fillers = []
    for _ in range(8):
        filler = stdlib_socket.socket(listener.family, stdlib_socket.SOCK_STREAM)
        filler.setblocking(False)
        try:
            filler.connect(listener.getsockname()[:2])
        except BlockingIOError:
            pass
        fillers.append(filler)
    time.sleep(settle_for)
    return fillers
