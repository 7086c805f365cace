#!/usr/bin/env python3
"""System calls per keep-alive request of each Python server (or client), by name.

    python3 benchmarks/peer_syscalls.py [--side server|client] [--connections 1] [--only A,B]

The companion of ``peer_instructions.py``, which counts user-space instructions only:
this counts what crosses into the kernel.  The measured process runs under ``strace
-f -c`` (Debian's ``strace``); the other end is not traced (a plain ``ssl`` client for
``--side server``, Node's https server for ``--side client``).  The figure per request
is the difference of a run with 1,200 requests and one with 200, so start-up,
handshakes and shutdown cancel out; strace slows the traced process, so a wait that
would block at full speed may find data already there (``epoll_wait`` counts are the
least exact).  Runs itself in ``benchmarks/.venv`` (run.py's bootstrap).
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import run as suite  # noqa: E402
from peer_instructions import CLIENTS, SERVERS, _clients, _wait_listening  # noqa: E402


def _parse(path: Path) -> dict[str, int]:
    calls: dict[str, int] = {}
    for line in path.read_text().splitlines():
        fields = line.split()
        if len(fields) >= 5 and fields[0][0].isdigit() and fields[-1] != "total":
            calls[fields[-1]] = int(fields[3])
    return calls


def _args(folder: str, script: str) -> list[str]:
    return [str(HERE / folder / part) if part.endswith(".py") else part for part in script.split()]


def server_calls(script: str, certs: dict[str, str], n: int, connections: int, out: Path) -> dict[str, int]:
    port = suite.free_port()
    proc = subprocess.Popen(["strace", "-f", "-c", "-o", str(out), sys.executable, *_args("servers", script),
                             str(port), certs["cert"], certs["key"]],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=suite.child_env())
    try:
        _wait_listening(port, proc)
        _clients(port, certs["ca"], n, connections)
        # SIGINT to the traced server itself (strace would detach on its own SIGINT).
        children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
        os.kill(int(children[0]), signal.SIGINT)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.kill(int(children[0]), signal.SIGTERM)
            proc.wait(20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return _parse(out)


def client_calls(script: str, certs: dict[str, str], n: int, connections: int, port: int,
                 out: Path) -> dict[str, int]:
    subprocess.run(["strace", "-f", "-c", "-o", str(out), sys.executable, *_args("clients", script), "keepalive",
                    str(port), certs["ca"], "--n", str(n), "--concurrency", str(connections), "--warmup", "0"],
                   env=suite.child_env(), capture_output=True, check=True, timeout=600)
    return _parse(out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--side", choices=["server", "client"], default="server")
    parser.add_argument("--connections", type=int, default=1, help="keep-alive connections at once (default 1)")
    parser.add_argument("--only", metavar="A,B", help="only peers whose names contain one of these words")
    cfg = parser.parse_args()
    if shutil.which("strace") is None:
        print("peer_syscalls.py needs strace (Debian: apt-get install strace)", file=sys.stderr)
        return 2
    table = SERVERS if cfg.side == "server" else CLIENTS
    names = [name for name in table if not cfg.only or any(word in name for word in cfg.only.split(","))]
    tmp = Path(tempfile.mkdtemp(prefix="greenhttps-peer-syscalls-"))
    node = None
    print(f"| {cfg.side} ({cfg.connections} connection(s)) | system calls / request | by name |")
    print("|---|---|---|")
    try:
        certs = suite.make_certs(tmp)
        if cfg.side == "client":
            port = suite.free_port()
            node = subprocess.Popen(["node", str(HERE / "servers" / "node_server.js"), str(port), certs["cert"],
                                     certs["key"]], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            _wait_listening(port, node)
        for name in names:
            counts = []
            for n in (200, 1200):
                out = tmp / f"strace-{n}.txt"
                if cfg.side == "server":
                    counts.append(server_calls(table[name], certs, n, cfg.connections, out))
                else:
                    counts.append(client_calls(table[name], certs, n, cfg.connections, port, out))
            base, total = counts
            per = {call: (total.get(call, 0) - base.get(call, 0)) / 1000 for call in set(base) | set(total)}
            per = {call: value for call, value in per.items() if abs(value) >= 0.05}
            named = ", ".join(f"{call} {value:.2f}" for call, value in sorted(per.items(), key=lambda kv: -kv[1]))
            print(f"| {name} | {sum(per.values()):.2f} | {named} |", flush=True)
    finally:
        if node is not None:
            node.kill()
            node.wait()
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    suite.bootstrap(sys.argv[1:], __file__)
    sys.exit(main())
