"""The test helpers checked against peers that do not involve greenhttps.

If these fail, every other failure is suspect.
"""

from __future__ import annotations

import shutil
import ssl
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import gevent
import gevent.event
import gevent.socket
import gevent.ssl
import pytest

import helpers
from conftest import ScriptServer

Handler = Callable[[gevent.socket.socket], None]


def reply(data: bytes, *, close: bool = True) -> Handler:
    """A script handler: read one request head, send ``data``, then close (or wait)."""

    def handler(sock: gevent.socket.socket) -> None:
        helpers.read_request_head(sock)
        sock.sendall(data)
        if not close:
            gevent.sleep(10)

    return handler


# ------------------------------------------------------------------ parser


def test_content_length_then_pipelined_chunked_with_trailers(script_server: ScriptServer) -> None:
    chunked = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Sum\r\n\r\n"
        b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nX-Sum: 42\r\n\r\n"
    )
    port = script_server(
        reply(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: 1\r\n\r\nhello" + chunked, close=False)
    )
    sock = helpers.raw_connect(port)
    sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")

    status_line, headers, body = first = helpers.read_response(sock)
    assert status_line == b"HTTP/1.1 200 OK"
    assert headers == [(b"Content-Length", b"5"), (b"X-A", b"1")]
    assert body == b"hello"
    assert first.framing == "content-length" and first.status == 200 and first.reason == b"OK"

    second = helpers.read_response(sock)  # nothing of it was consumed by the first call
    assert second.framing == "chunked"
    assert second.body == b"hello world"
    assert second.chunks == [b"hello", b" world"]
    assert second.trailers == [(b"X-Sum", b"42")]
    assert second.raw_body == b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nX-Sum: 42\r\n\r\n"
    assert second.raw == chunked
    assert second.get("trailer") == b"X-Sum"
    sock.close()


def test_close_delimited(script_server: ScriptServer) -> None:
    port = script_server(reply(b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nall of it"))
    sock = helpers.raw_connect(port)
    sock.sendall(b"GET / HTTP/1.0\r\n\r\n")
    resp = helpers.read_response(sock)
    assert (resp.http_version, resp.framing, resp.body) == (b"HTTP/1.0", "close", b"all of it")
    sock.close()


@pytest.mark.parametrize(
    ("method", "head"),
    [
        ("HEAD", b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n"),
        ("HEAD", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"),
        ("GET", b"HTTP/1.1 204 No Content\r\n\r\n"),
        ("GET", b"HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n"),
        ("GET", b"HTTP/1.1 100 Continue\r\n\r\n"),
    ],
)
def test_responses_without_body(script_server: ScriptServer, method: str, head: bytes) -> None:
    after = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
    port = script_server(reply(head + after, close=False))
    sock = helpers.raw_connect(port)
    sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    resp = helpers.read_response(sock, method)
    assert (resp.framing, resp.body, resp.raw) == ("none", b"", head)
    assert helpers.read_response(sock).body == b"ok"
    sock.close()


def test_early_eof_is_reported_with_the_bytes(script_server: ScriptServer) -> None:
    port = script_server(reply(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc"))
    sock = helpers.raw_connect(port)
    sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    with pytest.raises(helpers.IncompleteResponse) as info:
        helpers.read_response(sock)
    assert info.value.data.endswith(b"\r\n\r\nabc")
    sock.close()

    port = script_server(reply(b""))
    sock = helpers.raw_connect(port)
    sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    with pytest.raises(helpers.IncompleteResponse) as info:
        helpers.read_response(sock)
    assert info.value.data == b""
    sock.close()


@pytest.mark.parametrize(
    "data",
    [
        b"HTTP/1.1 200 OK\nContent-Length: 0\n\n",
        b"HTTP/1.1 2000 OK\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabcd\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nX: 1\r\n  folded\r\nContent-Length: 0\r\n\r\n",
    ],
)
def test_malformed_framing_is_rejected(data: bytes) -> None:
    with pytest.raises(helpers.ProtocolViolation):
        helpers.parse_response(data)


def test_parse_responses_from_bytes() -> None:
    data = (
        b"HTTP/1.1 100 Continue\r\n\r\n"
        b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\na"
        b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n"
        b"HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nextra"
    )
    responses, rest = helpers.parse_responses(data, ["POST", "HEAD", "GET"])
    assert [r.status for r in responses] == [100, 200, 200, 404]
    assert [r.body for r in responses] == [b"", b"a", b"", b""]
    assert rest == b"extra"


# ------------------------------------------------------------ sockets and TLS


def test_tls_round_trip_with_negative_controls(
    script_server: ScriptServer,
    client_ssl_context: ssl.SSLContext,
    other_ca: object,
    loopback_host: str,
) -> None:
    port = script_server(
        reply(b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nsecure"), tls=True, host=loopback_host
    )
    for name in ("localhost", loopback_host):
        sock = helpers.raw_connect(
            port,
            tls=True,
            ssl_context=client_ssl_context,
            server_hostname=name,
            host=loopback_host,
        )
        assert isinstance(sock, gevent.ssl.SSLSocket)
        sock.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        assert helpers.read_response(sock).body == b"secure"
        sock.close()

    # An unrelated CA and a wrong name must both fail, or the success means nothing.
    untrusting = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    other_ca.configure_trust(untrusting)  # type: ignore[attr-defined]
    with pytest.raises(ssl.SSLCertVerificationError):
        helpers.raw_connect(port, tls=True, ssl_context=untrusting, host=loopback_host)
    with pytest.raises(ssl.SSLCertVerificationError):
        helpers.raw_connect(
            port,
            tls=True,
            ssl_context=client_ssl_context,
            server_hostname="example.org",
            host=loopback_host,
        )


def test_exchange_over_tls(script_server: ScriptServer, client_ssl_context: ssl.SSLContext) -> None:
    got: list[bytes] = []

    def handler(sock: gevent.socket.socket) -> None:
        got.append(helpers.read_request_head(sock))
        sock.sendall(b"HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n")

    port = script_server(handler, tls=True)
    request = b"GET /x HTTP/1.1\r\nHost: localhost\r\n\r\n"
    data = helpers.exchange(port, request, ssl_context=client_ssl_context)
    assert data == b"HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n"
    assert got == [request]

    # Idle timeout: a peer that says nothing and keeps the connection open.
    port = script_server(lambda sock: gevent.sleep(10))
    assert helpers.exchange(port, b"x", tls=False, idle_timeout=0.1) == b""


def test_rst_close_and_read_until_eof(script_server: ScriptServer) -> None:
    def rst(sock: gevent.socket.socket) -> None:
        sock.recv(100)
        helpers.rst_close(sock)

    port = script_server(rst)
    sock = helpers.raw_connect(port)
    sock.sendall(b"GET / HTTP/1.1\r\n\r\n")
    with pytest.raises(ConnectionResetError):
        helpers.read_until_eof(sock)
    sock.close()

    sock = helpers.raw_connect(port)
    sock.sendall(b"GET / HTTP/1.1\r\n\r\n")
    assert helpers.read_until_eof(sock, reset_ok=True) == b""
    sock.close()

    port = script_server(reply(b"partial", close=False))
    sock = helpers.raw_connect(port)
    sock.sendall(b"GET / HTTP/1.1\r\n\r\n")
    with pytest.raises(TimeoutError) as info:
        helpers.read_until_eof(sock, timeout=0.3)
    assert info.value.args[1] == b"partial"
    sock.close()

    port = script_server(reply(b"bye"))
    sock = helpers.raw_connect(port)
    sock.sendall(b"GET / HTTP/1.1\r\n\r\n")
    assert helpers.read_until_eof(sock) == b"bye"
    sock.close()


def test_failed_handshake_in_script_server_is_not_a_hub_error(
    script_server: ScriptServer, hub_errors: list[object]
) -> None:
    port = script_server(reply(b"never"), tls=True)
    sock = helpers.raw_connect(port)  # plain TCP to a TLS port
    sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert helpers.read_available(sock, idle_timeout=1) == b""
    sock.close()
    helpers.settle()
    assert hub_errors == []


# ----------------------------------------------------------- hub and leaks


@pytest.mark.allow_hub_errors
def test_hub_errors_are_recorded(hub_errors: list[tuple[object, type, BaseException]]) -> None:
    def boom() -> None:
        raise ValueError("from a greenlet")

    g = gevent.spawn(boom)
    g.join()
    assert [(c, t) for c, t, _ in hub_errors] == [(g, ValueError)]


def test_hub_error_fails_an_unmarked_test(tmp_path: Path) -> None:
    tests = Path(__file__).parent
    shutil.copy(tests / "conftest.py", tmp_path)
    shutil.copy(tests / "helpers.py", tmp_path)
    (tmp_path / "test_it.py").write_text(
        textwrap.dedent(
            """
            import gevent
            import pytest

            def boom():
                raise ValueError("xyzzy")

            def test_unmarked():
                gevent.spawn(boom).join()

            @pytest.mark.allow_hub_errors
            def test_marked():
                gevent.spawn(boom).join()
            """
        )
    )
    result = helpers.run_command(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-rA", str(tmp_path)],
        timeout=60,
        cwd=tmp_path,
    )
    out = result.stdout.decode()
    assert result.returncode == 1, out
    assert "ERROR test_it.py::test_unmarked" in out, out
    assert "PASSED test_it.py::test_marked" in out, out
    assert "ValueError: ValueError('xyzzy')" in out, out


def test_fd_and_greenlet_counters(script_server: ScriptServer) -> None:
    helpers.settle()
    fds = helpers.open_fds()
    assert fds > 0

    port = script_server(reply(b"ok"))  # the listening socket stays open until teardown
    listening_fds = helpers.open_fds()
    sock = helpers.raw_connect(port)
    assert helpers.open_fds() == listening_fds + 1
    sock.sendall(b"GET / HTTP/1.1\r\n\r\n")
    assert helpers.read_until_eof(sock) == b"ok"
    sock.close()
    helpers.settle()
    assert helpers.open_fds() == listening_fds

    # Greenlets left by earlier tests may end at any switch, so each count is compared
    # with one taken just before, with no switch in between.
    event = gevent.event.Event()
    before = helpers.live_greenlets()
    assert before >= 2  # the hub and this one at least
    g = gevent.spawn(event.wait)
    assert helpers.live_greenlets() == before + 1
    gevent.sleep(0)
    waiting = helpers.live_greenlets()
    event.set()
    g.join()
    del g
    assert helpers.live_greenlets() <= waiting - 1
    assert fds <= listening_fds


# -------------------------------------------------------------- processes


def test_run_python_is_cooperative_and_sees_the_checkout(script_server: ScriptServer) -> None:
    port = script_server(reply(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\npong"))
    code = textwrap.dedent(
        f"""
        import http.client, sys
        conn = http.client.HTTPConnection("127.0.0.1", {port}, timeout=5)
        conn.request("GET", "/")
        print(conn.getresponse().read().decode())
        print(sys.path)
        """
    )
    result = helpers.run_python(code)
    assert result.returncode == 0, result.stderr
    body, path = result.stdout.splitlines()
    assert body == "pong"
    assert repr(str(helpers.REPO_ROOT)) in path


@helpers.requires_openssl
@pytest.mark.needs_openssl
def test_openssl_s_server_round_trip(
    server_cert_files: dict[str, str], client_ssl_context: ssl.SSLContext
) -> None:
    with helpers.openssl_s_server(server_cert_files["cert"], server_cert_files["key"]) as port:
        sock = helpers.raw_connect(port, tls=True, ssl_context=client_ssl_context)
        sock.sendall(b"GET / HTTP/1.0\r\n\r\n")
        resp = helpers.read_response(sock)
        sock.close()
    assert resp.status == 200 and resp.framing == "close"
    assert b"<HTML>" in resp.body.upper()


NODE_SERVER = r"""
const https = require('https');
const fs = require('fs');
const [key, cert] = process.argv.slice(2).map((p) => fs.readFileSync(p));
const server = https.createServer({ key, cert }, (req, res) => {
  if (req.method === 'HEAD') return res.end();
  res.setHeader('Trailer', 'X-Done');
  res.write('hello ');
  res.addTrailers({ 'X-Done': 'yes' });
  res.end('node');
});
server.listen(0, '127.0.0.1', () => console.log(server.address().port));
"""


@helpers.requires_node
@pytest.mark.needs_node
def test_node_server_round_trip(
    server_cert_files: dict[str, str], client_ssl_context: ssl.SSLContext
) -> None:
    args = [server_cert_files["key"], server_cert_files["cert"]]
    with helpers.node_server(NODE_SERVER, args) as port:
        sock = helpers.raw_connect(port, tls=True, ssl_context=client_ssl_context)
        sock.sendall(
            b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\nHEAD / HTTP/1.1\r\nHost: localhost\r\n\r\n"
        )
        resp = helpers.read_response(sock)
        head = helpers.read_response(sock, "HEAD")
        sock.close()
    assert resp.framing == "chunked"
    assert resp.body == b"hello node"
    assert resp.trailers == [(b"X-Done", b"yes")]
    assert head.status == 200 and head.framing == "none"


@helpers.requires_curl
@pytest.mark.needs_curl
def test_curl_against_script_server(script_server: ScriptServer, ca_file: str) -> None:
    seen: list[bytes] = []

    def handler(sock: gevent.socket.socket) -> None:
        seen.append(helpers.read_request_head(sock))
        sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\ncurl!")

    port = script_server(handler, tls=True)
    result = helpers.run_command(
        ["curl", "-sS", "--max-time", "10", "--cacert", ca_file, f"https://localhost:{port}/p"]
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == b"curl!"
    assert seen and seen[0].startswith(b"GET /p HTTP/1.1\r\n")

    # Negative control: without the CA, curl refuses the certificate.
    result = helpers.run_command(
        ["curl", "-sS", "--max-time", "10", "--cacert", "/dev/null", f"https://localhost:{port}/"]
    )
    assert result.returncode != 0
