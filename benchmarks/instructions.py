#!/usr/bin/env python3
"""Instructions per keep-alive request, for two revisions: a measure noise cannot move.

    python3 benchmarks/instructions.py REV_A REV_B [--requests 1000] [--what server|client|wsgi]

These machines are two noisy cores, where a 2% change hides in the run-to-run spread
of req/s.  This counts instructions instead (``valgrind --tool=callgrind``, which
must be installed: Debian's ``valgrind``): one process runs a greenhttps TLS server
and a client (a plain ``ssl`` socket loop, so only the server is greenhttps's code)
making sequential keep-alive requests on one connection.  The count for
``--requests`` is the difference of two runs (200 and 200 + N requests), so start-up
and the TLS handshake cancel out.  Repeatable to about ±0.3% for one tree; trees that
import different modules can differ by ~1k from memory layout alone.  It says what a
change costs, not how fast anything is: ``ab.py`` and ``run.py`` measure speed.

``--what`` picks the workload (default ``server``):

| what | server | client |
|---|---|---|
| server | ``create_server`` answering ``res.end(b"hello world\\n")`` | a plain ``ssl`` socket loop |
| client | the same greenhttps server | ``greenhttps.get(url, agent=keep-alive Agent)`` + ``read()`` |
| wsgi | ``create_server(..., WSGIHandler(flask_app))`` (benchmarks/wsgi/flask_app.py) | a plain ``ssl`` socket loop |

``client`` counts both ends of the round trip (subtract a ``server`` figure of the same
tree for the client's share); ``wsgi`` needs Flask.

Each revision's ``greenhttps`` package comes from ``git archive`` (``.`` is the
working tree); the interpreter is this one (it needs gevent and the runtime
dependencies, as the test virtualenv has).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

_PRELUDE = """
import ssl, sys
import gevent, gevent.socket, gevent.ssl
import greenhttps
key, cert, ca, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
tls = {"key": open(key, "rb").read(), "cert": open(cert, "rb").read()}
"""

_RAW_CLIENT = """
srv.listen(0, "127.0.0.1")
ctx = gevent.ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.load_verify_locations(ca)
sock = ctx.wrap_socket(gevent.socket.create_connection(("127.0.0.1", srv.address()["port"])),
                       server_hostname="localhost")
request = b"GET / HTTP/1.1\\r\\nHost: localhost\\r\\n\\r\\n"
for _ in range(n):
    sock.sendall(request)
    got = b""
    while not got.endswith(b"hello world\\n"):
        got += sock.recv(65536)
sock.close()
"""

_HELLO = """
srv = greenhttps.create_server(tls, lambda req, res: res.end(b"hello world\\n"))
"""

WORKLOADS = {
    "server": _PRELUDE + _HELLO + _RAW_CLIENT,
    "client": _PRELUDE + _HELLO + """
srv.listen(0, "127.0.0.1")
agent = greenhttps.Agent(keep_alive=True, ca=open(ca, "rb").read())
url = f"https://localhost:{srv.address()['port']}/"
for _ in range(n):
    res = greenhttps.get(url, agent=agent)
    assert res.read() == b"hello world\\n"
agent.destroy()
""",
    "wsgi": _PRELUDE + f"""
sys.path.insert(0, {str(Path(__file__).resolve().parent / "wsgi")!r})
from flask_app import app
from greenhttps.wsgi import WSGIHandler
srv = greenhttps.create_server(tls, WSGIHandler(app))
""" + _RAW_CLIENT,
}


def checkout(rev: str, into: Path) -> Path:
    if rev == ".":
        return REPO
    into.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(REPO), "archive", rev, "greenhttps"], capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive.stdout, check=True)
    return into


def certificates(into: Path) -> tuple[str, str, str]:
    import trustme

    ca = trustme.CA()
    leaf = ca.issue_cert("localhost")
    paths = into / "key.pem", into / "cert.pem", into / "ca.pem"
    leaf.private_key_pem.write_to_path(paths[0])
    paths[1].write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
    ca.cert_pem.write_to_path(paths[2])
    return str(paths[0]), str(paths[1]), str(paths[2])


def instructions(tree: Path, script: Path, certs: tuple[str, str, str], n: int) -> int:
    env = {**os.environ, "PYTHONPATH": str(tree), "PYTHONHASHSEED": "0"}
    out = subprocess.run(["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable,
                          str(script), *certs, str(n)], capture_output=True, text=True, env=env, cwd=tree, check=True)
    for line in out.stderr.splitlines():
        if "Collected :" in line:
            return int(line.rsplit(":", 1)[1])
    raise RuntimeError(f"no callgrind total in: {out.stderr[-500:]}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("rev_a")
    parser.add_argument("rev_b")
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--what", choices=sorted(WORKLOADS), default="server")
    cfg = parser.parse_args()
    if shutil.which("valgrind") is None:
        print("instructions.py needs valgrind (Debian: apt-get install valgrind)", file=sys.stderr)
        return 2
    tmp = Path(tempfile.mkdtemp(prefix="greenhttps-instructions-"))
    try:
        script = tmp / "workload.py"
        script.write_text(WORKLOADS[cfg.what])
        certs = certificates(tmp)
        per_request = {}
        for label, rev in (("A", cfg.rev_a), ("B", cfg.rev_b)):
            tree = checkout(rev, tmp / label)
            base = instructions(tree, script, certs, 200)
            total = instructions(tree, script, certs, 200 + cfg.requests)
            per_request[label] = (total - base) / cfg.requests
            print(f"{label} {rev}: {per_request[label]:,.0f} instructions per keep-alive request ({cfg.what})")
        print(f"B/A: {per_request['B'] / per_request['A']:.3f}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
