"""Every file in ``examples/`` runs, out of the box, and prints what it promises.

The examples are found with a glob and each must have an entry in :data:`CLIENTS`
(self-contained: run, check output) or :data:`SERVERS` (start, read the URL on the
first line, fetch from it, see it stop by itself after ``--exit-after``).  A new
example without an entry fails :func:`test_example`, and so does an entry whose
file is gone.  Each runs as ``sys.executable examples/NAME`` with the checkout on
``PYTHONPATH`` and ``XDG_CACHE_HOME`` in the test's tmp dir (a fresh development
certificate each time).  Subprocesses run through ``gevent.subprocess``, so a
greenhttps server in this process can answer an example pointed at it by URL.
"""

from __future__ import annotations

import ast
import os
import re
import signal
import sys
from dataclasses import dataclass
from pathlib import Path

import gevent
import gevent.event
import gevent.subprocess
import pytest

import greenhttps
import helpers

pytestmark = pytest.mark.timeout(30)

EXAMPLES_DIR = helpers.REPO_ROOT / "examples"
TIMEOUT = 20  # seconds for one example run (they take ~0.3 s)


@dataclass(frozen=True)
class Client:
    """A self-contained example: arguments, and lines (regexes) its stdout must have."""

    args: tuple[str, ...] = ()
    stdout: tuple[str, ...] = ()
    stderr: tuple[str, ...] = ()


@dataclass(frozen=True)
class Server:
    """A server example: ``--port 0 --exit-after N`` plus ``args``; every fetch must
    get ``body``; the first stdout line must match ``first_line``."""

    body: bytes
    args: tuple[str, ...] = ()
    first_line: str = r"https://localhost:(\d+)/"


CLIENTS: dict[str, Client] = {
    "request_options.py": Client(
        stdout=(r"^statusCode: 200$", r"^headers: \{.*'date'", r"^hello world$")
    ),
    "get.py": Client(stdout=(r"^statusCode: 200$", r"^headers: \{", r"^hello world$")),
    "agent_tls_options.py": Client(
        stdout=(
            r"^statusCode: 200$",
            r"^hello client\.localhost$",
            r"^authorized: True$",
            r"Connection: close$",
        )
    ),
    "agent_false.py": Client(
        stdout=(
            r"^statusCode: 200$",
            r"^hello client\.localhost$",
            r"^authorized: True$",
            r"Connection: close$",
        )
    ),
    "blocking_get.py": Client(
        stdout=(
            r"^ 19: statusCode: 200, hello world from /page/19$",
            r"^20 of 20 responses in (\d+\.\d+) s$",
        )
    ),
    "crawler.py": Client(
        args=("--count", "300", "--greenlets", "50", "--pace", "2"),
        stdout=(
            r"^300 URLs, 50 greenlets: statuses \{200: 300\}",
            r"^connections per site: (\d+), (\d+) \(max_sockets=10\)",
            r"^pace 2 ms: at most 500 requests/s per site; they saw (\d+), (\d+)$",
            r"^(\d+) retries \(503 \+ Retry-After\)",
            r"^median fetch [\d.]+ ms",
        ),
        stderr=(r"300/300 fetched",),
    ),
    "streaming.py": Client(
        stdout=(r"^sent 5 MiB in 64 KiB chunks, received 5242880 bytes back", r"^echo matches$")
    ),
    "mtls.py": Client(
        stdout=(
            r"^statusCode: 200$",
            r"^authorized: True$",
            r"^peer subject: .*commonName=client\.localhost$",
            r"^server refused a client: \S+$",
            r"^without a client certificate: [A-Z0-9_]+$",
        )
    ),
    "sni_server.py": Client(
        stdout=(
            r"^servername localhost: CN=localhost SAN=\[localhost, 127\.0\.0\.1, .*'hello localhost'$",
            r"^servername api\.localhost: CN=api\.localhost SAN=\[api\.localhost\]; says 'hello api\.localhost'$",
        )
    ),
}

SERVERS: dict[str, Server] = {
    "hello_server.py": Server(body=b"hello world\n"),
    "pfx_server.py": Server(
        body=b"hello world\n", first_line=r"https://localhost:(\d+)/ \(.*server\.pfx\)"
    ),
}

#: Client examples that take ``URL [--ca FILE]`` instead of starting their own server.
TAKES_URL = (
    "request_options.py",
    "get.py",
    "agent_tls_options.py",
    "agent_false.py",
    "blocking_get.py",
)


def _example_files() -> list[str]:
    return sorted(
        p.name for p in EXAMPLES_DIR.iterdir() if p.is_file() and not p.name.startswith(".")
    )


def _env(cache: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(helpers.REPO_ROOT), env.get("PYTHONPATH")])
    )
    env["XDG_CACHE_HOME"] = str(cache)
    env.pop("PYTHONWARNINGS", None)
    return env


def _run(name: str, args: tuple[str, ...], cache: Path) -> gevent.subprocess.CompletedProcess[str]:
    return gevent.subprocess.run(
        [sys.executable, str(EXAMPLES_DIR / name), *args],
        stdout=gevent.subprocess.PIPE,
        stderr=gevent.subprocess.PIPE,
        timeout=TIMEOUT,
        env=_env(cache),
        cwd=str(helpers.REPO_ROOT),
        universal_newlines=True,
        check=False,
    )


def _expect_lines(text: str, patterns: tuple[str, ...], what: str) -> list[re.Match[str]]:
    found = []
    for pattern in patterns:
        match = re.search(pattern, text, re.M)
        assert match, f"{what} lacks a line matching {pattern!r}:\n{text}"
        found.append(match)
    return found


# ------------------------------------------------------------------ the table


def test_examples_exist_and_table_is_current() -> None:
    files = _example_files()
    assert len(files) >= 11, files
    stale = sorted((set(CLIENTS) | set(SERVERS)) - set(files))
    assert not stale, f"entries for examples that no longer exist: {stale}"
    assert not set(CLIENTS) & set(SERVERS)


@pytest.mark.parametrize("name", _example_files())
def test_example_docstring(name: str) -> None:
    """Each example says what it mirrors (or shows) and how to run it."""
    source = (EXAMPLES_DIR / name).read_text()
    doc = ast.get_docstring(ast.parse(source))
    assert doc, f"examples/{name} has no module docstring"
    assert f"python examples/{name}" in doc, (
        f"examples/{name}: the docstring should say how to run it"
    )
    assert "patch_all" not in source  # greenhttps needs no monkey-patching


@pytest.mark.parametrize("name", _example_files())
def test_example(name: str, tmp_path: Path) -> None:
    if name in CLIENTS:
        _check_client(name, CLIENTS[name], tmp_path)
    elif name in SERVERS:
        _check_server(name, SERVERS[name], tmp_path)
    else:
        pytest.fail(
            f"examples/{name} is not in test_examples.py's CLIENTS/SERVERS table: add how to run and check it"
        )


def _check_client(name: str, case: Client, cache: Path) -> None:
    proc = _run(name, case.args, cache)
    assert proc.returncode == 0, (
        f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    )
    matches = _expect_lines(proc.stdout, case.stdout, "stdout")
    _expect_lines(proc.stderr, case.stderr, "stderr")
    assert "Traceback" not in proc.stderr, proc.stderr
    if name == "blocking_get.py":
        # 20 greenlets against a handler that sleeps 0.2 s: together, not one by one (4 s).
        assert float(matches[-1].group(1)) < 2.5, proc.stdout
    if name == "crawler.py":
        # The agent's max_sockets=10 is what each site sees, its pace of 2 ms at
        # most 500 requests/s (on average: first to last arrival), and every 7th
        # page's one 503 was retried (page numbers 0..149 on each site: 21 each).
        assert all(1 <= int(n) <= 10 for n in matches[1].groups()), proc.stdout
        assert all(int(rate) <= 500 for rate in matches[2].groups()), proc.stdout
        assert int(matches[3].group(1)) == 42, proc.stdout


def _check_server(name: str, case: Server, cache: Path) -> None:
    fetches = 2 if helpers.which("curl") else 1
    proc = gevent.subprocess.Popen(
        [
            sys.executable,
            str(EXAMPLES_DIR / name),
            "--port",
            "0",
            "--exit-after",
            str(fetches),
            *case.args,
        ],
        stdout=gevent.subprocess.PIPE,
        stderr=gevent.subprocess.PIPE,
        env=_env(cache),
        cwd=str(helpers.REPO_ROOT),
        universal_newlines=True,
    )
    try:
        with gevent.Timeout(TIMEOUT, AssertionError(f"{name} printed no first line")):
            first = proc.stdout.readline()
        match = re.search(case.first_line, first)
        assert match, (
            f"first line {first!r} does not match {case.first_line!r}; stderr: {proc.stderr.read()}"
        )
        port = int(match.group(1))
        assert port != 8000  # --port 0 took a free port
        ca_file = cache / "greenhttps" / "dev-ca.pem"
        url = f"https://localhost:{port}/"
        # greenhttps itself, with verification on, trusting the development CA only.
        res = greenhttps.get(url, ca=ca_file.read_bytes(), agent=False, timeout=10_000)
        assert (res.status_code, res.read()) == (200, case.body)
        if fetches == 2:  # and an independent client
            curl = helpers.run_command(
                ["curl", "-sS", "--cacert", str(ca_file), url], timeout=TIMEOUT
            )
            assert curl.returncode == 0, curl.stderr
            assert curl.stdout == case.body
        # --exit-after: the server closes after the last response and the script ends.
        assert proc.wait(timeout=TIMEOUT) == 0, proc.stderr.read()
        assert "Traceback" not in proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()


# ------------------------------------------------------- options of the examples


@pytest.fixture
def url_server(tls_options: dict[str, bytes]):
    """A greenhttps server in this process (the trustme certificate) that examples
    given a URL talk to; yields ``(url, seen)`` where ``seen`` lists request paths."""
    seen: list[str] = []

    def handler(req, res):  # type: ignore[no-untyped-def]
        seen.append(req.url)
        res.write_head(200, {"Content-Type": "text/plain"})
        res.end(f"from the test's server: {req.url}\n")

    server = greenhttps.create_server(tls_options, handler).listen(0, "127.0.0.1")
    try:
        yield f"https://localhost:{server.address()['port']}/some/path?q=1", seen
    finally:
        server.close()
        server.close_all_connections()


@pytest.mark.parametrize("name", TAKES_URL)
def test_client_example_with_url(name: str, url_server, ca_file: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    url, seen = url_server
    args = (url, "--ca", ca_file, *(("-n", "3") if name == "blocking_get.py" else ()))
    proc = _run(name, args, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "from the test's server: /some/path?q=1" in proc.stdout
    assert "statusCode: 200" in proc.stdout
    assert seen and all(path == "/some/path?q=1" for path in seen)


@pytest.mark.parametrize("name", ["request_options.py", "get.py"])
def test_client_example_with_unknown_ca_fails_cleanly(
    name: str, url_server, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    """The negative control: without ``--ca`` the default roots do not trust the test
    CA, so the example reports the verification error (one line) and exits 1."""
    url, seen = url_server
    proc = _run(name, (url,), tmp_path)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "statusCode" not in proc.stdout
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "UNABLE_TO_VERIFY_LEAF_SIGNATURE" in lines[0], proc.stderr
    assert seen == []


@pytest.mark.parametrize("name", sorted(SERVERS))
def test_server_example_stops_on_ctrl_c(name: str, tmp_path: Path) -> None:
    proc = gevent.subprocess.Popen(
        [sys.executable, str(EXAMPLES_DIR / name), "--port", "0"],
        stdout=gevent.subprocess.PIPE,
        stderr=gevent.subprocess.PIPE,
        env=_env(tmp_path),
        universal_newlines=True,
    )
    try:
        with gevent.Timeout(TIMEOUT):
            assert re.search(SERVERS[name].first_line, proc.stdout.readline())
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=TIMEOUT) == 0
        assert proc.stderr.read() == ""  # no traceback, no "KeyboardInterrupt" from the hub
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()


# --------------------------------------------------- found while writing examples


def test_response_arrives_while_request_body_is_still_being_sent(
    tls_options: dict[str, bytes], ca_pem: bytes
) -> None:
    """Node's client parses the response as soon as it arrives, ended request or not:
    an echo server can stream back while the client still writes (examples/streaming.py
    relies on it; it sends ``Expect: 100-continue`` to get this today)."""
    got_response = gevent.event.Event()

    def early(req, res):  # type: ignore[no-untyped-def]
        res.write_head(200, {"Content-Type": "text/plain"})
        res.write("answering before your body ends\n")
        req.read()  # then take the whole body
        res.end("bye\n")

    server = greenhttps.create_server(tls_options, early).listen(0, "127.0.0.1")
    try:
        req = greenhttps.request(
            {
                "hostname": "localhost",
                "port": server.address()["port"],
                "method": "POST",
                "ca": ca_pem,
                "agent": False,
            }
        )
        req.on("response", lambda res: got_response.set())
        req.write(b"first part of the body")
        heard_early = got_response.wait(timeout=1.0)
        req.end(b"last part")
        res = req.getresponse(timeout=5000)
        assert res.read() == b"answering before your body ends\nbye\n"
        assert heard_early, "no 'response' before end(), though the server had answered"
    finally:
        server.close()
        server.close_all_connections()
