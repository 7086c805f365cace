"""``python -m greenhttps``: the demo server, the ``get`` client, and the development
certificate behind them (``greenhttps._devcert``).

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
from greenhttps import _devcert

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
        match = re.search(r"serving HTTPS on (https://localhost:(\d+)/)$", lines[0])
        assert match, lines
        self.url, self.port = match.group(1), int(match.group(2))

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
    assert all(re.fullmatch(r'\S+ "GET / HTTP/1\.1" 200 \d+\.\dms', line) for line in log), log
    assert "stopping" in stderr
    assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr


def test_serve_is_the_default_command_and_stops_on_sigterm(tmp_path: Path, ca_pem: bytes) -> None:
    with demo("--port", "0", "--host", "127.0.0.1", cache=tmp_path) as server:
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
    dev = _devcert.dev_certificate(tmp_path / "certs")
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
    assert _devcert.dev_certificate(tmp_path / "certs").cert_file.read_bytes() == before


def test_dev_certificate_honours_xdg_cache_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert _devcert.cache_dir() == tmp_path / "greenhttps"
    assert _devcert.dev_certificate().ca_file == tmp_path / "greenhttps" / "dev-ca.pem"


@pytest.mark.needs_openssl
def test_dev_ca_signs_only_localhost_names(tmp_path: Path) -> None:
    """Name constraints: trusting the development CA trusts nothing outside
    localhost and loopback, whatever it signs (checked by ``openssl verify``)."""
    dev = _devcert.dev_certificate(tmp_path)

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
    dev = _devcert.dev_certificate(tmp_path)
    ca, cert = dev.ca_file.read_bytes(), dev.cert_file.read_bytes()
    # Within 500 days of expiry counts as expiring: the server certificate (397 days)
    # is, the CA (10 years) is not.
    monkeypatch.setattr(_devcert, "_RENEW_BEFORE", datetime.timedelta(days=500))
    assert not dev.is_current()
    renewed = _devcert.dev_certificate(tmp_path)
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
        "import hashlib, ssl, time; from greenhttps._devcert import dev_certificate\n"
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
    dev = _devcert.DevCertificate(tmp_path / "greenhttps")
    final = hashlib.sha256(dev.ca_file.read_bytes() + dev.cert_file.read_bytes()).hexdigest()
    assert [out.strip() for out, _ in results] == [final] * 4, results
