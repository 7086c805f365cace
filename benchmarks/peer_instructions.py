#!/usr/bin/env python3
"""Instructions per keep-alive request of each Python server (or client), counted in it alone.

    python3 benchmarks/peer_instructions.py [--side server|client] [--requests 1000] [--connections 1] [--only A,B]

The wall-clock comparison (``run.py``) moves by several percent from run to run on
these two noisy cores; this one does not.  Each Python server of run.py (the same
scripts in ``servers/``, the same ECDSA P-256 certificate, ``hello world\\n``) runs
under ``valgrind --tool=callgrind``; a client in another process (plain ``ssl``, not
under valgrind) makes sequential keep-alive requests on one connection (or on
``--connections`` at once, a thread each, closer to wrk's load), then the
server gets SIGINT and valgrind prints the instructions it executed.  The count per
request is the difference of a run with 200 + ``--requests`` requests and one with
200, so start-up, the handshake and shutdown cancel out.  Node is left out (a JIT
under valgrind says nothing useful).

``--side client`` does the same for the Python clients of run.py (``clients/``, mode
``keepalive``, ``--connections`` greenlets or tasks): each runs under valgrind against
Node's https server (not under valgrind), 200 and 200 + ``--requests`` requests.

It counts user-space instructions: what a server spends in the kernel (system calls,
TCP) is not in it, so it ranks the Python work per request, not the whole cost;
``run.py`` remains the measure of speed.  Runs itself in ``benchmarks/.venv``
(run.py's bootstrap) so the peers are importable; greenhttps comes from the work tree.
"""

from __future__ import annotations

import argparse
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import run as suite  # noqa: E402  (the venv bootstrap, certificates, environment)

SERVERS = {
    "greenhttps": "greenhttps_server.py",
    "greenhttps tls-bio": "greenhttps_server.py --tls-bio",
    "uvicorn+httptools": "uvicorn_server.py",
    "aiohttp": "aiohttp_server.py",
    "pywsgi+NODELAY": "pywsgi_server.py --nodelay",
    "gevent+h11 loop": "h11_gevent_server.py",
}
CLIENTS = {
    "greenhttps": "greenhttps_client.py",
    "greenhttps tls-bio": "greenhttps_client.py --tls-bio",
    "aiohttp": "aiohttp_client.py",
    "geventhttpclient": "geventhttpclient_client.py",
    "urllib3+monkey": "urllib3_client.py",
    "requests+monkey": "requests_client.py",
}
REQUEST = b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n"


def _clients(port: int, ca: str, n: int, connections: int) -> None:
    """``n`` requests over ``connections`` keep-alive connections at once."""
    threads = [threading.Thread(target=_client, args=(port, ca, n // connections + (i < n % connections)))
               for i in range(connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def _client(port: int, ca: str, n: int) -> None:
    ctx = ssl.create_default_context(cafile=ca)
    with socket.create_connection(("127.0.0.1", port), timeout=60) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost") as sock:
            for _ in range(n):
                sock.sendall(REQUEST)
                got = b""
                while not got.endswith(b"hello world\n"):
                    chunk = sock.recv(65536)
                    if not chunk:
                        raise RuntimeError(f"the server closed after {len(got)} bytes")
                    got += chunk


def client_instructions(script: str, certs: dict[str, str], n: int, connections: int, port: int) -> int:
    """A client under valgrind making ``n`` keep-alive requests to Node's server on ``port``."""
    cmd = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable,
           *(str(HERE / "clients" / part) if part.endswith(".py") else part for part in script.split()),
           "keepalive", str(port), certs["ca"], "--n", str(n),
           "--concurrency", str(connections), "--warmup", "0"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1200,
                          env={**suite.child_env(), "PYTHONHASHSEED": "0"})
    if proc.returncode != 0 or '"skip"' in proc.stdout:
        raise RuntimeError(f"{script}: exit {proc.returncode}: {proc.stdout[-300:]} {proc.stderr[-800:]}")
    for line in proc.stderr.splitlines():
        if "Collected :" in line:
            return int(line.rsplit(":", 1)[1])
    raise RuntimeError(f"no callgrind total for {script}: {proc.stderr[-800:]}")


def _wait_listening(port: int, proc: subprocess.Popen[str], timeout: float = 120) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited: {proc.stderr.read()[-1500:] if proc.stderr else ''}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError("server did not listen")


def instructions(script: str, certs: dict[str, str], n: int, connections: int) -> int:
    port = suite.free_port()
    cmd = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable,
           *(str(HERE / "servers" / part) if part.endswith(".py") else part for part in script.split()),
           str(port), certs["cert"], certs["key"]]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env={**suite.child_env(), "PYTHONHASHSEED": "0"}, start_new_session=True)
    try:
        _wait_listening(port, proc)
        # The probe above was a connection too: the same in both runs, so it cancels out.
        _clients(port, certs["ca"], n, connections)
        proc.send_signal(signal.SIGINT)
        try:
            _, err = proc.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGTERM)
            _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    for line in err.splitlines():
        if "Collected :" in line:
            return int(line.rsplit(":", 1)[1])
    raise RuntimeError(f"no callgrind total for {script}: {err[-800:]}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--side", choices=["server", "client"], default="server")
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--connections", type=int, default=1, help="keep-alive connections at once (default 1)")
    parser.add_argument("--only", metavar="A,B", help="only servers whose names contain one of these words")
    cfg = parser.parse_args()
    if shutil.which("valgrind") is None:
        print("peer_instructions.py needs valgrind (Debian: apt-get install valgrind)", file=sys.stderr)
        return 2
    table = SERVERS if cfg.side == "server" else CLIENTS
    names = [name for name in table
             if not cfg.only or any(word in name for word in cfg.only.split(","))]
    tmp = Path(tempfile.mkdtemp(prefix="greenhttps-peer-instructions-"))
    results: dict[str, float] = {}
    node = None
    try:
        certs = suite.make_certs(tmp)
        if cfg.side == "client":
            port = suite.free_port()
            node = subprocess.Popen(["node", str(HERE / "servers" / "node_server.js"), str(port), certs["cert"],
                                     certs["key"]], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                    start_new_session=True)
            _wait_listening(port, node)
        for name in names:
            try:
                if cfg.side == "server":
                    base = instructions(SERVERS[name], certs, 200, cfg.connections)
                    total = instructions(SERVERS[name], certs, 200 + cfg.requests, cfg.connections)
                else:
                    base = client_instructions(CLIENTS[name], certs, 200, cfg.connections, port)
                    total = client_instructions(CLIENTS[name], certs, 200 + cfg.requests, cfg.connections, port)
            except (RuntimeError, subprocess.TimeoutExpired) as exc:
                print(f"! {name}: {exc}", flush=True)
                continue
            results[name] = (total - base) / cfg.requests
            print(f"{name} ({cfg.side}): {results[name]:,.0f} instructions per keep-alive request", flush=True)
    finally:
        if node is not None:
            node.kill()
            node.wait()
        shutil.rmtree(tmp, ignore_errors=True)
    if "greenhttps" in results:
        print()
        print(f"| {cfg.side} | instructions / request (user space) | greenhttps / {cfg.side} |")
        print("|---|---|---|")
        for name, value in results.items():
            print(f"| {name} | {value:,.0f} | {results['greenhttps'] / value:.2f} |")
    return 0


if __name__ == "__main__":
    suite.bootstrap(sys.argv[1:], __file__)
    sys.exit(main())
