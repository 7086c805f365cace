"""``python -m greenhttps``: the demo server, the ``get`` client, and the development
certificate behind them (``greenhttps.devcert``).

Each command runs in a subprocess (``gevent.subprocess``, so a greenhttps server or a
scripted peer in this process can answer it) with the checkout on ``PYTHONPATH`` and
``XDG_CACHE_HOME`` in the test's tmp dir.  The commands the demo prints are run as
printed: curl (an independent client) and ``python -m greenhttps get``.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import json
import os
import pty
import re
import shlex
import signal
import socket
import ssl
import stat
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import gevent
import gevent.event
import gevent.socket
import gevent.subprocess
import pytest
from cryptography import x509

import greenhttps
import helpers
from conftest import ScriptServer
from greenhttps import devcert

pytestmark = pytest.mark.timeout(30)

TIMEOUT = 20


def _env(cache: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(helpers.REPO_ROOT), env.get("PYTHONPATH")])
    )
    env["XDG_CACHE_HOME"] = str(cache)
    return env


def cli(
    *args: str, cache: Path, timeout: float = TIMEOUT
) -> gevent.subprocess.CompletedProcess[str]:
    """Run ``python -m greenhttps ARGS`` to the end; text output captured."""
    return gevent.subprocess.run(
        [sys.executable, "-m", "greenhttps", *args],
        stdout=gevent.subprocess.PIPE,
        stderr=gevent.subprocess.PIPE,
        timeout=timeout,
        env=_env(cache),
        cwd=str(cache),
        universal_newlines=True,
        check=False,
    )


def one_line_error(proc: gevent.subprocess.CompletedProcess[str]) -> str:
    """The failure's stderr: exactly one line, ``greenhttps: ...``, and no traceback."""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("greenhttps: "), proc.stderr
    return lines[0]


class Demo:
    """A running ``python -m greenhttps serve``: its process and the lines it printed."""

    def __init__(self, proc: gevent.subprocess.Popen[str], lines: list[str]) -> None:
        self.proc = proc
        self.lines = lines
        match = re.search(r"serving HTTPS on (https://([^/]+):(\d+)/)$", lines[0])
        assert match, lines
        self.url, self.host, self.port = match.group(1), match.group(2), int(match.group(3))

    def line_starting(self, prefix: str) -> str:
        found = [line.strip() for line in self.lines if line.strip().startswith(prefix)]
        assert len(found) == 1, self.lines
        return found[0]

    def stop(self, sig: int = signal.SIGINT) -> tuple[int, str]:
        """Send ``sig``; return the exit code and everything it wrote to stderr."""
        self.proc.send_signal(sig)
        code = self.proc.wait(timeout=TIMEOUT)
        return code, self.proc.stderr.read()


@contextlib.contextmanager
def demo(*args: str, cache: Path) -> Iterator[Demo]:
    """Start ``python -m greenhttps ARGS``; yield once it has printed "Ctrl-C to stop."."""
    proc = gevent.subprocess.Popen(
        [sys.executable, "-m", "greenhttps", *args],
        stdout=gevent.subprocess.PIPE,
        stderr=gevent.subprocess.PIPE,
        env=_env(cache),
        cwd=str(cache),
        universal_newlines=True,
    )
    try:
        lines: list[str] = []
        with gevent.Timeout(TIMEOUT, AssertionError(f"the demo did not start; so far: {lines}")):
            while not lines or lines[-1] != "Ctrl-C to stop.":
                line = proc.stdout.readline()
                assert line, f"the demo exited early: {lines}, {proc.stderr.read()}"
                lines.append(line.rstrip("\n"))
        yield Demo(proc, lines)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()


def closed_port() -> int:
    """A loopback port nobody listens on (bound, then closed)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --------------------------------------------------------------------- help


def test_help(tmp_path: Path) -> None:
    proc = cli("--help", cache=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "serve" in proc.stdout and "get" in proc.stdout
    proc = cli("get", "--help", cache=tmp_path)
    assert proc.returncode == 0, proc.stderr
    for option in ("--ca", "--insecure", "--output", "--header", "--method", "--data", "--timeout"):
        assert option in proc.stdout


def test_bad_arguments_exit_2(tmp_path: Path) -> None:
    proc = cli("get", cache=tmp_path)  # no URL
    assert proc.returncode == 2
    proc = cli("get", "https://localhost:1/", "-H", "no colon", cache=tmp_path)
    assert proc.returncode == 2
    assert "bad header" in one_line_error(proc)


# -------------------------------------------------------------------- serve


@pytest.mark.needs_curl
def test_serve_port_0_prints_commands_that_work(tmp_path: Path) -> None:
    with demo("serve", "--port", "0", cache=tmp_path) as server:
        assert server.port not in (0, 8443)
        ca_file = tmp_path / "greenhttps" / "dev-ca.pem"
        assert server.line_starting("development CA").endswith(str(ca_file))

        curl_line = server.line_starting("curl ")
        assert curl_line == f"curl --cacert {ca_file} {server.url}"
        curl = helpers.run_command(shlex.split(curl_line), timeout=TIMEOUT)
        assert curl.returncode == 0, curl.stderr
        assert json.loads(curl.stdout)["hello"] == "from greenhttps"

        get_line = server.line_starting(f"{sys.executable} -m greenhttps get ")
        got = helpers.run_command(shlex.split(get_line), timeout=TIMEOUT, env=_env(tmp_path))
        assert got.returncode == 0, got.stderr
        body = json.loads(got.stdout)
        assert body["method"] == "GET" and body["url"] == "/" and body["tls"].startswith("TLSv1.")
        assert got.stderr.decode().startswith("HTTP/1.1 200 OK\n")

        code, stderr = server.stop(signal.SIGINT)
    assert code == 0
    # One access-log line per request, then the stop notice; no traceback, and the
    # hub does not print the Ctrl-C as an error.
    log = [line for line in stderr.splitlines() if '"GET / HTTP/1.1" 200' in line]
    assert len(log) == 2, stderr
    # Combined Log Format and the duration, through the greenhttps.access logger:
    # curl and the CLI's own client name themselves in the User-Agent field.
    clf = r'(127\.0\.0\.1|::1) - - \[[^]]+\] "GET / HTTP/1\.1" 200 \d+ "-" "{}[^"]*" \d+\.\d{{6}}'
    assert re.fullmatch(clf.format("curl/"), log[0]), log
    assert re.fullmatch(clf.format(""), log[1]), log
    assert "stopping" in stderr
    assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr


def test_serve_is_the_default_command_and_stops_on_sigterm(tmp_path: Path, ca_pem: bytes) -> None:
    with demo("--port", "0", "--host", "127.0.0.1", cache=tmp_path) as server:
        assert server.host == "127.0.0.1"  # where it listens: localhost may be ::1 first
        ca = (tmp_path / "greenhttps" / "dev-ca.pem").read_bytes()
        res = greenhttps.get(server.url, ca=ca, agent=False, method="GET")
        assert res.status_code == 200 and res.json()["hello"] == "from greenhttps"
        # The negative control: a client trusting another CA refuses the demo.
        with pytest.raises(greenhttps.Error) as info:
            greenhttps.get(server.url, ca=ca_pem, agent=False)
        assert info.value.code == "UNABLE_TO_VERIFY_LEAF_SIGNATURE"
        code, stderr = server.stop(signal.SIGTERM)
    assert code == 0, stderr
    assert "Traceback" not in stderr


def test_serve_with_cert_and_key_files(
    tmp_path: Path, server_cert_files: dict[str, str], ca_pem: bytes
) -> None:
    with demo(
        "serve",
        "--port",
        "0",
        "--cert",
        server_cert_files["cert"],
        "--key",
        server_cert_files["key"],
        cache=tmp_path,
    ) as server:
        assert not any("curl" in line for line in server.lines)  # no dev CA to point at
        res = greenhttps.get(server.url, ca=ca_pem, agent=False)
        assert res.json()["hello"] == "from greenhttps"
        assert server.stop()[0] == 0
    assert not (tmp_path / "greenhttps").exists()  # no development certificate made


def test_serve_port_in_use_fails_in_one_line(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        proc = cli("serve", "--host", "127.0.0.1", "--port", str(port), cache=tmp_path)
    assert proc.returncode == 1
    assert "EADDRINUSE" in one_line_error(proc)


def test_serve_with_unusable_key_fails_in_one_line(
    tmp_path: Path, server_cert_files: dict[str, str]
) -> None:
    proc = cli(
        "serve",
        "--port",
        "0",
        "--cert",
        server_cert_files["cert"],
        "--key",
        str(tmp_path / "missing.pem"),
        cache=tmp_path,
    )
    assert proc.returncode == 1
    assert "cannot load the certificate" in one_line_error(proc)
    proc = cli("serve", "--port", "0", "--cert", server_cert_files["cert"], cache=tmp_path)
    assert proc.returncode == 2


def test_ctrl_c_lets_a_request_in_flight_finish(tmp_path: Path) -> None:
    """The first Ctrl-C is Node's ``server.close()``: no new connections, but a
    request already being received is answered before the process exits."""
    with demo("serve", "--port", "0", "--host", "127.0.0.1", cache=tmp_path) as server:
        sock = helpers.raw_connect(server.port, tls=True)
        try:
            sock.sendall(
                b"POST /upload HTTP/1.1\r\nHost: localhost\r\nContent-Length: 10\r\n\r\nhalf-"
            )
            gevent.sleep(0.2)  # the handler is now reading the body
            server.proc.send_signal(signal.SIGINT)
            gevent.sleep(0.3)
            assert server.proc.poll() is None  # still finishing our request
            with pytest.raises(OSError):  # but no longer accepting
                gevent.socket.create_connection(("127.0.0.1", server.port), timeout=2).close()
            sock.sendall(b"done!")
            response = helpers.read_response(sock)
        finally:
            sock.close()
        assert response.status == 200
        assert json.loads(response.body)["request_body_bytes"] == 10
        assert response.get("connection") == b"close"
        assert server.proc.wait(timeout=TIMEOUT) == 0


# ---------------------------------------------------------------------- get


@pytest.fixture
def echo_server(tls_options: dict[str, bytes]) -> Iterator[int]:
    """A greenhttps server in this process answering with what it received (JSON)."""

    def echo(req, res):  # type: ignore[no-untyped-def]
        body = req.read()
        status = 404 if req.url == "/missing" else 200
        reply = json.dumps(
            {"method": req.method, "url": req.url, "headers": req.headers, "body": body.decode()}
        )
        res.write_head(status, {"Content-Type": "application/json", "X-Echo": "yes"})
        res.end(reply)

    server = greenhttps.create_server(tls_options, echo).listen(0, "127.0.0.1")
    try:
        yield server.address()["port"]
    finally:
        server.close()
        server.close_all_connections()


def test_get_to_stdout(tmp_path: Path, echo_server: int, ca_file: str) -> None:
    proc = cli("get", f"https://localhost:{echo_server}/a?b=c", "--ca", ca_file, cache=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["url"] == "/a?b=c"
    head = proc.stderr.splitlines()
    assert head[0] == "HTTP/1.1 200 OK"
    assert "X-Echo: yes" in head and "Content-Type: application/json" in head


def test_get_post_with_headers_to_file(tmp_path: Path, echo_server: int, ca_file: str) -> None:
    out = tmp_path / "out.json"
    proc = cli(
        "get", f"https://localhost:{echo_server}/submit", "--ca", ca_file,
        "-X", "POST", "-d", "name=value", "-H", "X-One: 1", "-H", "Content-Type: text/plain", "-o", str(out),
        cache=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == ""  # the body went to the file
    seen = json.loads(out.read_text())
    assert seen["method"] == "POST" and seen["body"] == "name=value"
    assert seen["headers"]["x-one"] == "1" and seen["headers"]["content-type"] == "text/plain"
    assert seen["headers"]["content-length"] == "10"


def test_get_data_means_post_and_x_overrides(
    tmp_path: Path, echo_server: int, ca_file: str
) -> None:
    url = f"https://localhost:{echo_server}/"
    assert (
        json.loads(cli("get", url, "--ca", ca_file, "-d", "x", cache=tmp_path).stdout)["method"]
        == "POST"
    )
    assert (
        json.loads(cli("get", url, "--ca", ca_file, "-X", "PUT", "-d", "x", cache=tmp_path).stdout)[
            "method"
        ]
        == "PUT"
    )


def test_get_http_error_status_exits_22_with_body(
    tmp_path: Path, echo_server: int, ca_file: str
) -> None:
    proc = cli("get", f"https://localhost:{echo_server}/missing", "--ca", ca_file, cache=tmp_path)
    assert proc.returncode == 22
    assert proc.stderr.startswith("HTTP/1.1 404 Not Found\n")
    assert json.loads(proc.stdout)["url"] == "/missing"


def test_get_unknown_ca_fails_and_k_skips_the_check(tmp_path: Path, echo_server: int) -> None:
    url = f"https://localhost:{echo_server}/"
    proc = cli("get", url, cache=tmp_path)  # certifi's roots: the test CA is unknown
    assert proc.returncode == 1
    assert proc.stdout == ""
    assert "UNABLE_TO_VERIFY_LEAF_SIGNATURE" in one_line_error(proc)
    proc = cli("get", url, "-k", cache=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["method"] == "GET"


def test_get_wrong_name_fails(
    tmp_path: Path, script_server: ScriptServer, ca, ca_file: str
) -> None:  # type: ignore[no-untyped-def]
    other = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert("not-localhost.example").configure_cert(other)
    port = script_server(lambda sock: gevent.sleep(2), tls=True, ssl_context=other)
    proc = cli("get", f"https://localhost:{port}/", "--ca", ca_file, cache=tmp_path)
    assert proc.returncode == 1
    assert "ERR_TLS_CERT_ALTNAME_INVALID" in one_line_error(proc)


def test_get_refused(tmp_path: Path) -> None:
    proc = cli("get", f"https://127.0.0.1:{closed_port()}/", cache=tmp_path)
    assert proc.returncode == 1
    assert "ECONNREFUSED" in one_line_error(proc)


def test_get_timeout_on_a_server_that_never_answers(
    tmp_path: Path, script_server: ScriptServer, ca_file: str
) -> None:
    def silent(sock: gevent.socket.socket) -> None:
        helpers.read_request_head(sock)
        gevent.sleep(10)  # never answers

    port = script_server(silent, tls=True)
    started = time.monotonic()
    proc = cli(
        "get", f"https://localhost:{port}/", "--ca", ca_file, "--timeout", "0.5", cache=tmp_path
    )
    took = time.monotonic() - started
    assert proc.returncode == 1
    assert "ETIMEDOUT" in one_line_error(proc)
    assert took < 8, took  # 0.5 s idle timeout, plus interpreter start-up


def test_get_timeout_on_a_server_that_never_shakes_hands(
    tmp_path: Path, script_server: ScriptServer
) -> None:
    port = script_server(lambda sock: gevent.sleep(10))  # TCP only: the TLS handshake hangs
    proc = cli("get", f"https://localhost:{port}/", "-k", "--timeout", "0.5", cache=tmp_path)
    assert proc.returncode == 1
    assert "ETIMEDOUT" in one_line_error(proc)


def test_get_interrupted_exits_130_quietly(
    tmp_path: Path, script_server: ScriptServer, ca_file: str
) -> None:
    heard = gevent.event.Event()

    def silent(sock: gevent.socket.socket) -> None:
        helpers.read_request_head(sock)
        heard.set()
        gevent.sleep(10)

    port = script_server(silent, tls=True)
    proc = gevent.subprocess.Popen(
        [sys.executable, "-m", "greenhttps", "get", f"https://localhost:{port}/", "--ca", ca_file],
        stdout=gevent.subprocess.PIPE,
        stderr=gevent.subprocess.PIPE,
        env=_env(tmp_path),
        universal_newlines=True,
    )
    try:
        assert heard.wait(timeout=TIMEOUT)  # the request is out; it waits for an answer
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130
    assert (out, err) == ("", "")  # no traceback, no "KeyboardInterrupt" from the hub


def test_get_missing_ca_file_fails_in_one_line(tmp_path: Path) -> None:
    proc = cli("get", "https://localhost:1/", "--ca", str(tmp_path / "nope.pem"), cache=tmp_path)
    assert proc.returncode == 1
    assert "nope.pem" in one_line_error(proc)


# ------------------------------------------------------- development certificate


def test_dev_certificate_files(tmp_path: Path) -> None:
    dev = devcert.dev_certificate(tmp_path / "certs")
    assert dev.is_current()
    for path in (dev.key_file, dev.ca_key_file):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    # The key matches the certificate and the certificate chains to the CA, for
    # every name it is for (checked by Python's ssl, not by greenhttps).
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(dev.cert_file, dev.key_file)
    cert = x509.load_pem_x509_certificate(dev.cert_file.read_bytes())
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sorted(map(str, sans.get_values_for_type(x509.IPAddress))) == ["127.0.0.1", "::1"]
    assert sans.get_values_for_type(x509.DNSName) == ["localhost"]
    # Asked again: the same files, not new ones.
    before = dev.cert_file.read_bytes()
    assert devcert.dev_certificate(tmp_path / "certs").cert_file.read_bytes() == before


def test_dev_certificate_honours_xdg_cache_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert devcert.cache_dir() == tmp_path / "greenhttps"
    assert devcert.dev_certificate().ca_file == tmp_path / "greenhttps" / "dev-ca.pem"


@pytest.mark.needs_openssl
def test_dev_ca_signs_only_localhost_names(tmp_path: Path) -> None:
    """Name constraints: trusting the development CA trusts nothing outside
    localhost and loopback, whatever it signs (checked by ``openssl verify``)."""
    dev = devcert.dev_certificate(tmp_path)

    def verify(*names: str) -> gevent.subprocess.CompletedProcess[bytes]:
        path = tmp_path / "leaf.pem"
        path.write_bytes(dev.issue_cert(*names)["cert"])
        return helpers.run_command(["openssl", "verify", "-CAfile", str(dev.ca_file), str(path)])

    assert verify("api.localhost", "127.0.0.2").returncode == 0
    refused = verify("www.example.com")
    assert refused.returncode != 0
    assert b"subtree violation" in refused.stdout + refused.stderr


def test_dev_certificate_is_renewed_under_the_same_ca(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dev = devcert.dev_certificate(tmp_path)
    ca, cert = dev.ca_file.read_bytes(), dev.cert_file.read_bytes()
    # Within 500 days of expiry counts as expiring: the server certificate (397 days)
    # is, the CA (10 years) is not.
    monkeypatch.setattr(devcert, "_RENEW_BEFORE", datetime.timedelta(days=500))
    assert not dev.is_current()
    renewed = devcert.dev_certificate(tmp_path)
    assert renewed.cert_file.read_bytes() != cert  # a new server certificate ...
    assert renewed.ca_file.read_bytes() == ca  # ... under the CA the user already trusts
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(renewed.cert_file, renewed.key_file)  # and its own key


def test_dev_certificate_made_by_several_processes_at_once(tmp_path: Path) -> None:
    """Four processes ask for the certificate at the same moment (after their imports):
    one makes it, the others wait for it and use the same files; none sees a key that
    does not match its certificate."""
    start_at = time.time() + 1.5
    code = (
        "import hashlib, ssl, time; from greenhttps.devcert import dev_certificate\n"
        f"time.sleep(max(0, {start_at} - time.time()))\n"
        "d = dev_certificate()\n"
        "ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER); ctx.load_cert_chain(d.cert_file, d.key_file)\n"
        "print(hashlib.sha256(d.ca_file.read_bytes() + d.cert_file.read_bytes()).hexdigest())\n"
    )
    procs = [
        gevent.subprocess.Popen(
            [sys.executable, "-c", code],
            stdout=gevent.subprocess.PIPE,
            stderr=gevent.subprocess.PIPE,
            env=_env(tmp_path),
            universal_newlines=True,
        )  # fmt: skip
        for _ in range(4)
    ]
    results = [proc.communicate(timeout=TIMEOUT) for proc in procs]
    assert all(proc.returncode == 0 for proc in procs), results
    dev = devcert.DevCertificate(tmp_path / "greenhttps")
    final = hashlib.sha256(dev.ca_file.read_bytes() + dev.cert_file.read_bytes()).hexdigest()
    assert [out.strip() for out, _ in results] == [final] * 4, results


# ------------------------------------------------------------ serve DIR (static files)


@pytest.fixture
def site(tmp_path: Path) -> Path:
    root = tmp_path / "site"
    (root / "sub dir").mkdir(parents=True)
    (root / "hello.txt").write_bytes(b"hello from a file\n")
    (root / "sub dir" / "a&b.html").write_bytes(b"<p>a&amp;b</p>\n")
    (root / "big.bin").write_bytes(hashlib.sha256(b"big").digest() * (3 << 15))  # 3 MiB
    (tmp_path / "secret.txt").write_bytes(b"outside\n")
    return root


@pytest.mark.needs_curl
def test_serve_dir_with_curl_and_an_access_log_line_per_request(tmp_path: Path, site: Path) -> None:
    with demo("serve", str(site), "--port", "0", cache=tmp_path) as server:
        assert server.line_starting("files from ").startswith(f"files from {site.resolve()} ")
        ca_file = str(tmp_path / "greenhttps" / "dev-ca.pem")
        # The printed curl line still works: it now gets the listing.
        listing = helpers.run_command(shlex.split(server.line_starting("curl ")), timeout=TIMEOUT)
        assert listing.returncode == 0, listing.stderr
        assert b'<a href="hello.txt">hello.txt</a>' in listing.stdout
        assert b'<a href="sub%20dir/">sub dir/</a>' in listing.stdout

        def curl(*args: str) -> gevent.subprocess.CompletedProcess[bytes]:
            return helpers.run_command(["curl", "-sS", "--cacert", ca_file, *args], timeout=TIMEOUT)

        assert curl(f"{server.url}hello.txt", "-r", "6-9").stdout == b"from"
        head = curl("-I", f"{server.url}sub%20dir/a%26b.html").stdout.decode()
        assert head.startswith("HTTP/1.1 200 OK\r\n")
        assert "Content-Type: text/html; charset=utf-8\r\n" in head
        assert "Content-Length: 15\r\n" in head
        outside = curl("--path-as-is", "-o", "/dev/null", "-w", "%{http_code}",
                       f"{server.url}%2e%2e/secret.txt")  # fmt: skip
        assert outside.stdout == b"404"
        posted = curl("-d", "x", "-o", "/dev/null", "-w", "%{http_code}", f"{server.url}hello.txt")
        assert posted.stdout == b"405"
        code, stderr = server.stop()
    assert code == 0, stderr
    log = [line for line in stderr.splitlines() if '" ' in line]
    expected = [
        ("GET /", 200),
        ("GET /hello.txt", 206),
        ("HEAD /sub%20dir/a%26b.html", 200),
        ("GET /%2e%2e/secret.txt", 404),
        ("POST /hello.txt", 405),
    ]
    assert len(log) == len(expected), stderr
    for line, (request_line, status) in zip(log, expected):
        assert re.fullmatch(rf'\S+ - - \[[^]]+\] "{re.escape(request_line)} HTTP/1\.1" {status} (\d+|-) '
                            r'"-" "curl/[^"]+" \d+\.\d{6}', line), line


def test_serve_dir_is_the_default_command_and_get_downloads_a_big_file(
    tmp_path: Path, site: Path
) -> None:
    """``python -m greenhttps DIR`` serves DIR; ``get -o`` (CLI against CLI) saves a
    3 MiB file whole; with stderr a pipe there is no progress bar."""
    with demo(str(site), "--port", "0", cache=tmp_path) as server:
        ca_file = str(tmp_path / "greenhttps" / "dev-ca.pem")
        out = tmp_path / "big.copy"
        proc = cli("get", f"{server.url}big.bin", "--ca", ca_file, "-o", str(out), cache=tmp_path)
        assert proc.returncode == 0, proc.stderr
        assert out.read_bytes() == (site / "big.bin").read_bytes()
        assert proc.stderr.startswith("HTTP/1.1 200 OK\n")
        assert f"Content-Length: {3 << 20}" in proc.stderr.splitlines()
        assert "\r" not in proc.stderr and "%" not in proc.stderr
        missing = cli("get", f"{server.url}nope", "--ca", ca_file, cache=tmp_path)
        assert missing.returncode == 22 and missing.stdout == "404 Not Found\n"
        assert server.stop()[0] == 0


def test_serve_dir_that_is_not_a_directory_fails_in_one_line(tmp_path: Path, site: Path) -> None:
    for path in (site / "missing", site / "hello.txt"):
        proc = cli("serve", str(path), "--port", "0", cache=tmp_path)
        assert proc.returncode == 2
        assert str(path) in one_line_error(proc)


# ------------------------------------------------------------ get: progress bar

DRAW = re.compile(r"\r([^\r\n]*)")
SIZE = r"\d+(\.\d)? (B|KiB|MiB|GiB)"
KNOWN = re.compile(rf" *(\d+)% \[[# ]{{24}}\] {SIZE} of 3\.0 MiB  {SIZE}/s  ETA (?P<min>\d+):(?P<sec>\d\d) *")
UNKNOWN = re.compile(rf"{SIZE}  {SIZE}/s *")


@pytest.fixture
def download_server(serve) -> int:  # type: ignore[no-untyped-def]
    """Slow bodies in many small pieces (so an unthrottled bar would redraw ~200 times).

    /known: 3 MiB with Content-Length; /unknown: 1.5 MiB chunked; /small: 5 bytes;
    /cut: promises 3 MiB, sends 1.5 MiB and drops the connection.
    """
    piece = b"p" * (16 * 1024)

    def handler(req, res):  # type: ignore[no-untyped-def]
        if req.url == "/small":
            res.end("small")
            return
        count = 96 if req.url in ("/unknown", "/cut") else 192
        if req.url != "/unknown":
            res.set_header("Content-Length", 192 * len(piece))
        for _ in range(count):
            res.write(piece)
            gevent.sleep(0.003)
        if req.url == "/cut":
            res.destroy()
        else:
            res.end()

    return int(serve(handler))


def on_a_terminal(*args: str, cache: Path) -> tuple[int, bytes, str, float]:
    """Run the CLI with stderr on a pseudo-terminal (stdout a pipe): returns the exit
    code, stdout, what the terminal showed (its "\\r\\n" back to "\\n") and the time."""
    master, slave = pty.openpty()
    started = time.monotonic()
    try:
        proc = gevent.subprocess.Popen(
            [sys.executable, "-m", "greenhttps", *args],
            stdin=gevent.subprocess.DEVNULL,
            stdout=gevent.subprocess.PIPE,
            stderr=slave,
            env=_env(cache),
            cwd=str(cache),
        )
    finally:
        os.close(slave)  # the child holds the only copy: EIO on master once it exits
    reader = gevent.spawn(proc.stdout.read)
    shown = bytearray()
    os.set_blocking(master, False)
    try:
        with gevent.Timeout(TIMEOUT, AssertionError(f"still running; shown: {shown!r}")):
            while True:
                try:
                    data = os.read(master, 65536)
                except BlockingIOError:
                    gevent.socket.wait_read(master)
                    continue
                except OSError:  # EIO: the terminal has no writer left
                    break
                if not data:
                    break
                shown += data
            code = proc.wait()
            out = reader.get()
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
    return code, out, shown.decode().replace("\r\n", "\n"), time.monotonic() - started


def test_progress_bar_with_a_known_size(tmp_path: Path, download_server: int, ca_file: str) -> None:
    out = tmp_path / "known.bin"
    code, stdout, shown, took = on_a_terminal(
        "get", f"https://localhost:{download_server}/known", "--ca", ca_file, "-o", str(out),
        cache=tmp_path,
    )  # fmt: skip
    assert code == 0, shown
    assert out.stat().st_size == 3 << 20 and stdout == b""
    assert shown.startswith("HTTP/1.1 200 OK\n")
    draws = DRAW.findall(shown)
    assert len(draws) >= 2, shown  # at least one while it ran, and the final one
    assert all(KNOWN.fullmatch(draw) for draw in draws), draws
    percents = [int(KNOWN.fullmatch(draw).group(1)) for draw in draws]  # type: ignore[union-attr]
    assert percents == sorted(percents) and percents[-1] == 100
    assert draws[-1].startswith("100% [" + "#" * 24 + "] 3.0 MiB of 3.0 MiB  ")
    assert draws[-1].rstrip().endswith("ETA 0:00")  # nothing left
    etas = [int(m["min"]) * 60 + int(m["sec"]) for m in map(KNOWN.fullmatch, draws) if m]
    assert max(etas) <= took + 2, (etas, took)  # the time left, never more than it took
    # Redrawn at most ~10 times a second (192 pieces arrived), then a newline.
    assert len(draws) <= took * 10 + 2, (len(draws), took)
    assert shown.endswith(draws[-1] + "\n")


def test_progress_eta_is_the_time_left_at_the_mean_rate() -> None:
    """100 of 1000 bytes in 10 s: 10 B/s, so 900 bytes take 1:30 more."""
    import io

    from greenhttps._cli_get import Progress

    shown = io.StringIO()
    bar = Progress(1000, shown)
    bar.started -= 10
    bar.update(100)
    assert shown.getvalue().rstrip().endswith("10 B/s  ETA 1:30"), shown.getvalue()
    bar.started -= 3600  # now 3610 s for 200 bytes: 800 more take 4:00:40
    bar.update(100)
    bar._drawn_at = None
    bar.update(0)
    assert shown.getvalue().rstrip().endswith("ETA 4:00:40"), shown.getvalue()


def test_progress_bar_with_an_unknown_size_on_stdout_pipe(
    tmp_path: Path, download_server: int, ca_file: str
) -> None:
    code, stdout, shown, _ = on_a_terminal(
        "get", f"https://localhost:{download_server}/unknown", "--ca", ca_file, cache=tmp_path
    )
    assert code == 0, shown
    assert stdout == b"p" * (3 << 19)  # the body went to stdout (a pipe), the bar to stderr
    draws = DRAW.findall(shown)
    assert draws and all(UNKNOWN.fullmatch(draw) for draw in draws), draws
    assert "%" not in shown
    assert draws[-1].startswith("1.5 MiB  ")
    assert shown.endswith(draws[-1] + "\n")


def test_no_progress_bar_for_small_bodies_or_when_asked(
    tmp_path: Path, download_server: int, ca_file: str
) -> None:
    base = f"https://localhost:{download_server}"
    code, stdout, shown, _ = on_a_terminal("get", f"{base}/small", "--ca", ca_file, cache=tmp_path)
    assert (code, stdout) == (0, b"small")
    assert "\r" not in shown and shown.startswith("HTTP/1.1 200 OK\n")
    code, _, shown, _ = on_a_terminal(
        "get", f"{base}/known", "--ca", ca_file, "--no-progress", "-o", str(tmp_path / "x"),
        cache=tmp_path,
    )  # fmt: skip
    assert code == 0 and "\r" not in shown and "%" not in shown


def test_no_progress_bar_when_stderr_is_a_pipe(
    tmp_path: Path, download_server: int, ca_file: str
) -> None:
    proc = cli(
        "get", f"https://localhost:{download_server}/known", "--ca", ca_file,
        "-o", str(tmp_path / "known.bin"), cache=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "known.bin").stat().st_size == 3 << 20
    assert "\r" not in proc.stderr and "%" not in proc.stderr
    assert proc.stderr.splitlines()[0] == "HTTP/1.1 200 OK"


def test_download_cut_short_ends_the_bar_then_one_error_line(
    tmp_path: Path, download_server: int, ca_file: str
) -> None:
    code, _, shown, _ = on_a_terminal(
        "get", f"https://localhost:{download_server}/cut", "--ca", ca_file,
        "-o", str(tmp_path / "cut.bin"), cache=tmp_path,
    )  # fmt: skip
    assert code == 1, shown
    *before, error, end = shown.rsplit("\n", 2)
    assert end == "" and error.startswith("greenhttps: "), shown  # a line of its own
    assert "\r" not in error and "Traceback" not in shown
    assert DRAW.findall(before[0])[-1].startswith(" 50% [")  # how far it got


# ------------------------------------------------------------- get: more error paths


def test_get_output_into_a_missing_directory_fails_in_one_line(
    tmp_path: Path, echo_server: int, ca_file: str
) -> None:
    target = tmp_path / "no" / "such" / "dir" / "out"
    proc = cli(
        "get", f"https://localhost:{echo_server}/", "--ca", ca_file, "-o", str(target),
        cache=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 1
    assert proc.stderr.splitlines()[0] == "HTTP/1.1 200 OK"
    assert proc.stderr.splitlines()[-1].startswith("greenhttps: ")
    assert str(target) in proc.stderr.splitlines()[-1]
    assert "Traceback" not in proc.stderr


def test_get_into_a_closed_pipe_is_quiet(
    tmp_path: Path, download_server: int, ca_file: str
) -> None:
    """``get URL | head -c 5``: the reader leaves early; no traceback, no error line."""
    command = (
        f"{shlex.quote(sys.executable)} -m greenhttps get "
        f"https://localhost:{download_server}/known --ca {shlex.quote(ca_file)} | head -c 5; "
        'echo " ${PIPESTATUS[0]}"'
    )
    done = gevent.subprocess.run(
        ["bash", "-c", command],
        stdout=gevent.subprocess.PIPE,
        stderr=gevent.subprocess.PIPE,
        env=_env(tmp_path),
        timeout=TIMEOUT,
        universal_newlines=True,
        check=False,
    )
    assert done.stdout == "ppppp 1\n", done
    assert "Traceback" not in done.stderr and "greenhttps:" not in done.stderr, done.stderr
    assert "Broken pipe" not in done.stderr and "Exception ignored" not in done.stderr


# ------------------------------------------------------------------ console script

SCRIPT = Path(sys.executable).parent / "greenhttps"


@pytest.mark.skipif(
    not SCRIPT.exists(), reason=f"no console script at {SCRIPT} (not pip-installed)"
)
def test_console_script(tmp_path: Path, echo_server: int, ca_file: str) -> None:
    """The ``greenhttps`` entry point that ``pip install`` makes runs the same CLI, with
    the package found through the install (no PYTHONPATH)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["XDG_CACHE_HOME"] = str(tmp_path)

    def run(*args: str) -> gevent.subprocess.CompletedProcess[str]:
        return gevent.subprocess.run(
            [str(SCRIPT), *args],
            stdout=gevent.subprocess.PIPE,
            stderr=gevent.subprocess.PIPE,
            env=env,
            cwd=str(tmp_path),  # not the checkout: the import must come from the install
            timeout=TIMEOUT,
            universal_newlines=True,
            check=False,
        )

    helped = run("--help")
    assert helped.returncode == 0 and "serve" in helped.stdout and "get" in helped.stdout
    got = run("get", f"https://localhost:{echo_server}/via-script", "--ca", ca_file)
    assert got.returncode == 0, got.stderr
    assert json.loads(got.stdout)["url"] == "/via-script"
    refused = run("get", f"https://127.0.0.1:{closed_port()}/")
    assert refused.returncode == 1 and "ECONNREFUSED" in one_line_error(refused)


# ------------------------------------------------- issue 20: a CLI like curl's


def test_version_and_help_for_every_command(tmp_path: Path) -> None:
    proc = cli("--version", cache=tmp_path)
    assert proc.returncode == 0 and proc.stdout.startswith(f"greenhttps {greenhttps.__version__} "), proc
    for args in (["get", "--help"], ["help", "get"]):
        proc = cli(*args, cache=tmp_path)
        assert proc.returncode == 0, proc.stderr
        assert "usage: python -m greenhttps get [-h]" in proc.stdout
        assert "Fetch URL (http:// or https://)" in proc.stdout  # a description
        assert "the http:// or https:// URL to fetch" in proc.stdout  # the positional's help
        for option in ("-L", "-i", "-v", "-s", "-u", "--compressed", "--proxy", "@FILE", "exit status: 0"):
            assert option in proc.stdout, option
    for args in (["serve", "--help"], ["help", "serve"]):
        proc = cli(*args, cache=tmp_path)
        assert proc.returncode == 0 and "Serve the files in DIR" in proc.stdout, proc
    # `help` is a command, not a directory to serve (issue 20).
    proc = cli("help", cache=tmp_path)
    assert proc.returncode == 0 and "{serve,get,help}" in proc.stdout and proc.stderr == "", proc


def test_program_name_is_the_one_invoked(tmp_path: Path) -> None:
    """The installed command calls itself ``greenhttps`` (its argv[0]); the module,
    ``python -m greenhttps``."""
    script = "import sys; sys.argv[0] = '/some/bin/greenhttps'; from greenhttps.__main__ import main; main(['--help'])"
    proc = gevent.subprocess.run(
        [sys.executable, "-c", script], stdout=gevent.subprocess.PIPE, stderr=gevent.subprocess.PIPE,
        env=_env(tmp_path), timeout=TIMEOUT, universal_newlines=True, check=False,
    )
    assert proc.stdout.startswith("usage: greenhttps [-h]"), proc
    assert "'greenhttps COMMAND --help'" in proc.stdout
    assert cli("--help", cache=tmp_path).stdout.startswith("usage: python -m greenhttps [-h]")


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["serve", "--port", "80000"], "80000 is not a port (0 to 65535"),
        (["serve", "--port", "eighty"], "not a port number: 'eighty'"),
        (["--port", "-1"], "-1 is not a port"),
        (["get", "ftp://localhost/"], "bad URL 'ftp://localhost/': want http:// or https://"),
        (["get", "localhost:8443/"], "bad URL"),
        (["get", "https:///path"], "no host"),
        (["get", "https://localhost:99999/"], "bad URL 'https://localhost:99999/'"),
        (["get", "https://exa mple.com/"], "Invalid host: 'exa mple.com' [ERR_INVALID_CHAR]"),
        (["get", "https://localhost/", "-H", "X-Bad: a\x01b"], "[ERR_INVALID_CHAR]"),
        (["get", "https://localhost/", "-u", "nocolon"], "-u wants user:password"),
        (["get", "https://localhost/", "--timeout", "-1"], "must be a finite number >= 0"),
        (["get", "https://localhost/", "--max-redirs", "x"], "not a whole number"),
        (["get", "https://localhost/", "--no-such-option"], "unrecognized arguments: --no-such-option"),
    ],
)
def test_bad_arguments_and_urls_exit_2_without_a_traceback(tmp_path: Path, args: list[str], said: str) -> None:
    """Issue 20: ``serve --port 80000`` ended in a traceback, a bad URL exited 1."""
    proc = cli(*args, cache=tmp_path)
    assert proc.returncode == 2, proc
    assert said in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stdout == ""


@pytest.fixture
def curl_like_server(tls_options: dict[str, bytes]) -> Iterator[tuple[int, list[dict[str, object]]]]:
    """A TLS server for the curl options: /redirect -> /final, /gzip (gzip when asked),
    anything else echoes; every request's method, URL, headers and body are recorded."""
    import gzip

    seen: list[dict[str, object]] = []

    def handler(req, res):  # type: ignore[no-untyped-def]
        body = req.read()
        seen.append({"method": req.method, "url": req.url, "headers": dict(req.headers), "body": body})
        if req.url == "/redirect":
            res.write_head(302, {"Location": "/final", "Content-Length": "0"})
            res.end()
        elif req.url == "/gzip":
            text = b"squeezed " * 100
            if "gzip" in req.headers.get("accept-encoding", ""):
                res.write_head(200, {"Content-Encoding": "gzip"})
                res.end(gzip.compress(text))
            else:
                res.end(text)
        else:
            res.write_head(200, {"Content-Type": "text/plain", "X-Echo": "yes"})
            res.end(f"{req.method} {req.url} {len(body)}\n")

    server = greenhttps.create_server(tls_options, handler).listen(0, "127.0.0.1")
    try:
        yield server.address()["port"], seen  # type: ignore[index]
    finally:
        server.close()
        server.close_all_connections()


def test_get_follows_redirects_only_with_L(tmp_path: Path, curl_like_server, ca_file: str) -> None:  # type: ignore[no-untyped-def]
    port, seen = curl_like_server
    url = f"https://localhost:{port}/redirect"
    proc = cli("get", url, "--ca", ca_file, cache=tmp_path)
    assert proc.returncode == 0 and proc.stdout == "", proc  # a 3xx is not a failure, as curl
    assert proc.stderr.startswith("HTTP/1.1 302 Found\n") and "location: /final" in proc.stderr.lower()
    proc = cli("get", url, "--ca", ca_file, "-L", cache=tmp_path)
    assert proc.returncode == 0, proc
    assert proc.stdout == "GET /final 0\n"
    assert [r["url"] for r in seen] == ["/redirect", "/redirect", "/final"]


def test_get_include_silent_and_user(tmp_path: Path, curl_like_server, ca_file: str) -> None:  # type: ignore[no-untyped-def]
    port, seen = curl_like_server
    url = f"https://localhost:{port}/x"
    proc = cli("get", url, "--ca", ca_file, "-i", cache=tmp_path)
    assert proc.returncode == 0 and proc.stderr == "", proc
    head, _, body = proc.stdout.partition("\n\n")  # universal newlines: \r\n read as \n
    assert head.startswith("HTTP/1.1 200 OK\n") and "x-echo: yes" in head.lower() and body == "GET /x 0\n"
    proc = cli("get", url, "--ca", ca_file, "-s", "-u", "ann:s3cret:x", cache=tmp_path)
    assert proc.returncode == 0 and proc.stderr == "" and proc.stdout == "GET /x 0\n", proc
    assert seen[-1]["headers"]["authorization"] == "Basic YW5uOnMzY3JldDp4"  # type: ignore[index]
    # Without --compressed, no compression is asked for (curl's default).
    assert seen[-1]["headers"]["accept-encoding"] == "identity"  # type: ignore[index]


def test_get_verbose_tells_tls_certificate_and_both_heads(tmp_path: Path, curl_like_server, ca_file: str) -> None:  # type: ignore[no-untyped-def]
    port, _ = curl_like_server
    proc = cli("get", f"https://localhost:{port}/v", "--ca", ca_file, "-v", "-H", "X-Mine: 1", cache=tmp_path)
    assert proc.returncode == 0 and proc.stdout == "GET /v 0\n", proc
    err = proc.stderr
    assert f"* Connected to 127.0.0.1 port {port}\n" in err
    assert re.search(r"^\* TLS: TLSv1\.[23], cipher \S+$", err, re.M), err
    assert "* Server certificate:\n*   subject: " in err
    assert re.search(r"^\*   issuer: O=trustme .*, OU=Testing CA #", err, re.M), err  # the test CA
    assert "> GET /v HTTP/1.1\n" in err and f"> Host: localhost:{port}\n" in err and "> X-Mine: 1\n" in err
    assert "< HTTP/1.1 200 OK\n" in err and "< X-Echo: yes\n" in err.replace("x-echo", "X-Echo")


def test_get_compressed_decodes(tmp_path: Path, curl_like_server, ca_file: str) -> None:  # type: ignore[no-untyped-def]
    port, seen = curl_like_server
    proc = cli("get", f"https://localhost:{port}/gzip", "--ca", ca_file, "--compressed", cache=tmp_path)
    assert proc.returncode == 0, proc
    assert proc.stdout == "squeezed " * 100
    assert "gzip" in seen[-1]["headers"]["accept-encoding"]  # type: ignore[index]
    assert "content-encoding: gzip" in proc.stderr.lower()


def test_get_data_from_a_file(tmp_path: Path, curl_like_server, ca_file: str) -> None:  # type: ignore[no-untyped-def]
    """``-d @FILE`` sends the file's bytes (issue 20: it sent the text '@FILE')."""
    port, seen = curl_like_server
    data = bytes(range(256)) * 4
    (tmp_path / "body.bin").write_bytes(data)
    proc = cli("get", f"https://localhost:{port}/up", "--ca", ca_file, "-d", "@body.bin", cache=tmp_path)
    assert proc.returncode == 0 and proc.stdout == "POST /up 1024\n", proc
    assert seen[-1]["body"] == data
    proc = cli("get", f"https://localhost:{port}/up", "--ca", ca_file, "-d", "@missing.bin", cache=tmp_path)
    assert proc.returncode == 1 and "missing.bin" in one_line_error(proc)


def test_get_through_a_proxy(tmp_path: Path) -> None:
    """``--proxy``: a plain URL is asked of the proxy in absolute form (RFC 9112 §3.2.2)."""
    asked: list[str] = []

    def proxy(req, res):  # type: ignore[no-untyped-def]
        asked.append(req.url)
        res.end("from the proxy\n")

    server = greenhttps.http.create_server(proxy).listen(0, "127.0.0.1")
    try:
        port = server.address()["port"]  # type: ignore[index]
        proc = cli("get", "http://origin.invalid/path?q=1", "--proxy", f"http://127.0.0.1:{port}", cache=tmp_path)
    finally:
        server.close()
        server.close_all_connections()
    assert proc.returncode == 0 and proc.stdout == "from the proxy\n", proc
    assert asked == ["http://origin.invalid/path?q=1"]
    # The environment's proxy is used by default, and --proxy '' turns it off.
    env_proxy = {"HTTP_PROXY": f"http://127.0.0.1:{port}", "NO_PROXY": ""}
    server = greenhttps.http.create_server(proxy).listen(port, "127.0.0.1")
    try:
        for extra, expected in (([], 0), (["--proxy", ""], 1)):
            proc = gevent.subprocess.run(
                [sys.executable, "-m", "greenhttps", "get", "http://origin.invalid/env", *extra],
                stdout=gevent.subprocess.PIPE, stderr=gevent.subprocess.PIPE, env={**_env(tmp_path), **env_proxy},
                timeout=TIMEOUT, universal_newlines=True, check=False,
            )
            assert proc.returncode == expected, proc  # without the proxy: origin.invalid does not resolve
    finally:
        server.close()
        server.close_all_connections()
    assert asked == ["http://origin.invalid/path?q=1", "http://origin.invalid/env"]


def test_tls_failure_names_the_host_and_how_to_trust_a_ca(tmp_path: Path, echo_server: int) -> None:
    proc = cli("get", f"https://localhost:{echo_server}/", cache=tmp_path)
    line = one_line_error(proc)
    assert proc.returncode == 1
    assert f"localhost:{echo_server}: " in line and "UNABLE_TO_VERIFY_LEAF_SIGNATURE" in line
    assert "--ca FILE" in line and "-k" in line


def test_serve_on_every_interface_prints_a_url_reachable_there(tmp_path: Path) -> None:
    """Issue 20: ``serve --host 0.0.0.0`` printed a localhost URL.  Now the first line
    is this machine's address (which the server answers on), and the commands printed
    use localhost, the name the development certificate has."""
    with demo("serve", "--port", "0", "--host", "0.0.0.0", cache=tmp_path) as server:
        on_machine = server.line_starting("on this machine: ")
        assert on_machine == f"on this machine: https://localhost:{server.port}/"
        assert server.host not in ("0.0.0.0", "localhost")
        # Reachable at the address shown (the dev certificate does not name it: no check).
        res = greenhttps.get(server.url, reject_unauthorized=False, agent=False)
        assert res.status_code == 200 and res.json()["hello"] == "from greenhttps"
        ca = (tmp_path / "greenhttps" / "dev-ca.pem").read_bytes()
        res = greenhttps.get(f"https://localhost:{server.port}/", ca=ca, agent=False)
        assert res.status_code == 200
        assert server.line_starting("curl ").endswith(f" https://localhost:{server.port}/")
        assert server.stop(signal.SIGTERM)[0] == 0


@pytest.mark.parametrize("request_first", [False, True], ids=["idle", "after-a-request"])
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_serve_stops_when_its_output_is_a_closed_pipe(tmp_path: Path, sig: int, request_first: bool) -> None:
    """Issue 20: ``serve --port 0 2>&1 | head -1``, then SIGTERM and SIGINT were ignored
    (the stop notice raised into the closed pipe before close()).  Here stdout and
    stderr are one pipe whose reader has gone after the first line (and, in one
    variant, a request's access-log line went into it); the signal must end the
    process."""
    proc = gevent.subprocess.Popen(
        [sys.executable, "-m", "greenhttps", "serve", "--port", "0", "--host", "127.0.0.1"],
        stdout=gevent.subprocess.PIPE, stderr=gevent.subprocess.STDOUT, env=_env(tmp_path), cwd=str(tmp_path),
    )
    try:
        with gevent.Timeout(TIMEOUT):
            first = proc.stdout.readline().decode()
        match = re.search(r"https://127\.0\.0\.1:(\d+)/$", first.strip())
        assert match, first
        proc.stdout.close()  # `head -1` has exited
        if request_first:
            res = greenhttps.get(f"https://127.0.0.1:{match.group(1)}/", reject_unauthorized=False, agent=False)
            assert res.status_code == 200  # the access-log line for it goes into the closed pipe
            res.read()
        gevent.sleep(0.2)
        proc.send_signal(sig)
        assert proc.wait(timeout=TIMEOUT) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_other_tls_failures_name_the_host(tmp_path: Path, script_server: ScriptServer) -> None:
    """A server that answers the TLS hello in plain HTTP: the error names host:port."""

    def plain(sock: gevent.socket.socket) -> None:
        sock.recv(4096)
        sock.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
        gevent.sleep(1)

    port = script_server(plain)
    proc = cli("get", f"https://localhost:{port}/", cache=tmp_path)
    assert proc.returncode == 1
    line = one_line_error(proc)
    assert line.startswith(f"greenhttps: localhost:{port}: TLS: "), line
