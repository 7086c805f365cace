"""Every Python block in the README runs as written.

Each block runs in its own interpreter, with one change: the README's port, 8443, is
replaced by a free one (tests may run beside a real demo server).  The development
certificate lives in a temporary ``XDG_CACHE_HOME``, shared by the blocks and the demo
server, as it would be on a user's machine.

- A block that calls ``serve_forever()`` is a server: it must answer an HTTPS
  ``GET /`` verified against the development CA, then it is stopped.
- Any other block is a client of the demo server (``python -m greenhttps serve``),
  started for it: it must exit 0, without a traceback, and print a 200 status.
"""

from __future__ import annotations

import os
import re
import ssl
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import gevent
import gevent.socket
import gevent.ssl
import gevent.subprocess
import pytest

import helpers

pytestmark = pytest.mark.timeout(60)

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
README_PORT = "8443"


def python_blocks() -> list[tuple[str, str]]:
    """(the heading above it + its index, code) for each ```python block."""
    blocks, heading, count = [], "top", 0
    lines = README.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("#"):
            heading, count = line.lstrip("# ").strip(), 0
        elif line.strip() == "```python":
            end = lines.index("```", i + 1)
            count += 1
            blocks.append((f"{heading} #{count}", "\n".join(lines[i + 1:end]) + "\n"))
            i = end
        i += 1
    return blocks


BLOCKS = python_blocks()


def test_the_readme_has_python_blocks() -> None:
    assert len(BLOCKS) >= 5
    assert all(README_PORT in code or "serve_forever" not in code for _, code in BLOCKS)


@pytest.fixture
def cache_home(tmp_path: Path) -> Path:
    return tmp_path / "cache"


def _env(cache_home: Path) -> dict[str, str]:
    return {"XDG_CACHE_HOME": str(cache_home), "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}


def _wait_for_port(port: int, proc: gevent.subprocess.Popen[bytes], err: Path) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"exited with {proc.returncode}: {err.read_text()[-2000:]}")
        try:
            gevent.socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            gevent.sleep(0.1)
    raise AssertionError(f"nothing listens on {port}: {err.read_text()[-2000:]}")


@pytest.fixture
def running(tmp_path: Path, cache_home: Path) -> Iterator[object]:
    """``start(argv, port) -> Popen`` for a process that listens on ``port``; all are
    stopped at teardown (and must not have died with a traceback)."""
    procs: list[tuple[gevent.subprocess.Popen[bytes], Path]] = []

    def start(argv: list[str], port: int) -> gevent.subprocess.Popen[bytes]:
        err = tmp_path / f"stderr-{len(procs)}"
        with open(err, "wb") as fe:
            proc = gevent.subprocess.Popen(argv, stdout=gevent.subprocess.DEVNULL, stderr=fe, cwd=tmp_path,
                                           env={**os.environ, **_env(cache_home)})
        procs.append((proc, err))
        _wait_for_port(port, proc, err)
        return proc

    yield start
    for proc, err in procs:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(timeout=5)
        assert "Traceback" not in err.read_text(errors="replace"), err.read_text()


def _get(port: int, cache_home: Path) -> bytes:
    ctx = gevent.ssl.create_default_context(cafile=str(cache_home / "greenhttps" / "dev-ca.pem"))
    sock = ctx.wrap_socket(gevent.socket.create_connection(("127.0.0.1", port), timeout=10),
                           server_hostname="localhost")
    try:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        return helpers.read_until_eof(sock, 10, reset_ok=True)
    finally:
        sock.close()


@pytest.mark.parametrize("code", [code for _, code in BLOCKS], ids=[name for name, _ in BLOCKS])
def test_readme_block_runs(code: str, tmp_path: Path, cache_home: Path, running: object) -> None:
    port = helpers.free_port()
    script = tmp_path / "block.py"
    script.write_text(code.replace(README_PORT, str(port)))
    start = running  # type: ignore[assignment]
    if "serve_forever()" in code:
        start([sys.executable, str(script)], port)  # type: ignore[operator]
        answer = _get(port, cache_home)
        assert re.match(rb"HTTP/1\.1 200 ", answer), answer[:200]
        return
    start([sys.executable, "-m", "greenhttps", "serve", "--port", str(port)], port)  # type: ignore[operator]
    proc = helpers.run_command([sys.executable, str(script)], timeout=30, env=_env(cache_home), cwd=tmp_path)
    out, err = proc.stdout.decode(), proc.stderr.decode()
    assert proc.returncode == 0 and "Traceback" not in err, err
    assert "200" in out, out


def test_dev_ca_verifies_the_demo_certificate(cache_home: Path) -> None:
    """The blocks' ``ca=dev_certificate().ca_pem()`` is the CA that signed the server
    certificate ``server_options()`` gives (what the README promises)."""
    sys.path.insert(0, str(ROOT))
    os.environ["XDG_CACHE_HOME"] = str(cache_home)
    try:
        from greenhttps.devcert import dev_certificate

        dev = dev_certificate()
        ctx = ssl.create_default_context(cadata=dev.ca_pem().decode())
        assert ctx.cert_store_stats()["x509_ca"] == 1
        assert dev.server_options()["cert"].startswith(b"-----BEGIN CERTIFICATE-----")
    finally:
        del os.environ["XDG_CACHE_HOME"]
        sys.path.remove(str(ROOT))
