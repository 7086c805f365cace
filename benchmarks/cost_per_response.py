#!/usr/bin/env python3
"""Where a server's time goes per response: user and system CPU, TCP segments, and
(with ``--strace``) the system calls that put the bytes on the wire.

    python3 benchmarks/cost_per_response.py [--servers greenhttps,greenhttps-bio,node] \\
        [--body-size 1048576] [--seconds 3] [--rounds 3] [--strace]

Each server runs on core 0 as in run.py (``greenhttps-bio`` is greenhttps with
``GREENHTTPS_TLS_BIO=1``); ``wrk -t1 -c4`` on core 1 asks for the body over keep-alive
connections.  The rounds alternate between the servers, and the table gives medians:
MiB/s, CPU µs of user and system time and minor page faults per response
(``/proc/PID/stat``), TCP
segments sent per response (``/proc/net/snmp`` OutSegs, both directions of loopback
traffic, so compare servers, not absolute values), and with ``--strace`` the count of
``write``/``writev``/``sendmsg``/``sendto`` calls per response (a separate, slower run
under ``strace -c``).  This is how the 1 MiB gap to Node was traced to OpenSSL writing
one 16 KiB record per ``write()`` (see the README's Benchmarks section).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import run  # the runner's helpers (processes, certificates, pinning)

_WRITES = ("write", "writev", "sendmsg", "sendto")


def cpu_ticks(pid: int) -> tuple[int, int, int]:
    """utime and stime of the whole process in clock ticks, and its minor page faults."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]), int(fields[12]), int(fields[7])


def out_segments() -> int:
    with open("/proc/net/snmp") as f:
        rows = [line.split() for line in f if line.startswith("Tcp:")]
    return int(rows[1][rows[0].index("OutSegs")])


def start(name: str, certs: dict[str, str], body_size: int, logdir: Path) -> run.ServerProc:
    if name == "greenhttps-bio":
        return run.ServerProc("greenhttps", certs, body_size, logdir, extra_env={"GREENHTTPS_TLS_BIO": "1"})
    return run.ServerProc(name, certs, body_size, logdir, extra_env={"GREENHTTPS_TLS_BIO": ""})


def measure(srv: run.ServerProc, seconds: float, lua: str) -> dict[str, float]:
    run.wrk(srv.port, 4, 1, lua)  # warm-up
    user0, sys0, faults0 = cpu_ticks(srv.pid)
    seg0 = out_segments()
    w = run.wrk(srv.port, 4, seconds, lua)
    user1, sys1, faults1 = cpu_ticks(srv.pid)
    seg1 = out_segments()
    n = max(w["requests"], 1)
    tick_us = 1e6 / os.sysconf("SC_CLK_TCK")
    return {
        "mibs": w["bytes"] / (w["duration_us"] / 1e6) / 2**20,
        "user_us": (user1 - user0) * tick_us / n,
        "sys_us": (sys1 - sys0) * tick_us / n,
        "segments": (seg1 - seg0) / n,
        "faults": (faults1 - faults0) / n,
    }


def count_writes(srv: run.ServerProc, seconds: float, lua: str, logdir: Path) -> float:
    """write-like system calls per response, counted by ``strace -c -f``."""
    report = logdir / f"strace-{srv.pid}.txt"
    tracer = subprocess.Popen(["strace", "-c", "-f", "-o", str(report), "-p", str(srv.pid)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.5)
    w = run.wrk(srv.port, 4, seconds, lua)
    tracer.terminate()
    tracer.wait(10)
    calls = 0
    for line in report.read_text().splitlines():
        fields = line.split()
        if fields and fields[-1] in _WRITES and re.fullmatch(r"\d+", fields[3]):
            calls += int(fields[3])
    return calls / max(w["requests"], 1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--servers", default="greenhttps,greenhttps-bio,node https",
                        help="comma-separated names from run.py's servers, plus greenhttps-bio")
    parser.add_argument("--body-size", type=int, default=run.BIG)
    parser.add_argument("--seconds", type=float, default=3)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--strace", action="store_true", help="also count write calls per response (needs strace)")
    cfg = parser.parse_args()
    names = [n.strip() for n in cfg.servers.split(",") if n.strip()]
    for name in names:
        if name != "greenhttps-bio" and name not in run.SERVERS:
            parser.error(f"unknown server {name!r}; known: {', '.join([*run.SERVERS, 'greenhttps-bio'])}")
    if "node https" in names and not shutil.which("node"):
        names.remove("node https")
    if cfg.strace and not shutil.which("strace"):
        parser.error("--strace: strace is not installed")
    tmp = Path(tempfile.mkdtemp(prefix="greenhttps-cost-"))
    lua = tmp / "report.lua"
    lua.write_text(run.WRK_LUA)
    certs = run.make_certs(tmp)
    results: dict[str, list[dict[str, float]]] = {name: [] for name in names}
    try:
        for i in range(cfg.rounds):
            for name in names:
                srv = start(name, certs, cfg.body_size, tmp)
                try:
                    r = measure(srv, cfg.seconds, str(lua))
                    if cfg.strace and i == 0:
                        r["writes"] = count_writes(srv, min(cfg.seconds, 2), str(lua), tmp)
                finally:
                    srv.close()
                results[name].append(r)
                print(f"[round {i + 1}/{cfg.rounds}] {name}: " + "  ".join(f"{k}={v:,.1f}" for k, v in r.items()),
                      flush=True)
    finally:
        run.stop_all()
        shutil.rmtree(tmp, ignore_errors=True)
    cols = ["mibs", "user_us", "sys_us", "segments", "faults"] + (["writes"] if cfg.strace else [])
    print(f"\nMedians of {cfg.rounds} round(s), {cfg.body_size:,}-byte bodies, wrk -t1 -c4 -d{cfg.seconds:g}s:\n")
    print("| server | MiB/s | user µs/response | system µs/response | TCP segments/response | page faults/response |"
          + (" write calls/response |" if cfg.strace else ""))
    print("|---" * (len(cols) + 1) + "|")
    for name, runs in results.items():
        cells = [f"{statistics.median(r[c] for r in runs if c in r):,.1f}" for c in cols]
        print(f"| {name} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    if os.environ.get("GREENHTTPS_BENCH_VENV") != "1":
        run.bootstrap(sys.argv[1:], __file__)
    sys.exit(main())
