#!/usr/bin/env python3
"""Two revisions of greenhttps against each other, in alternating rounds.

    python3 benchmarks/ab.py REV_A REV_B [--rounds 3] [--seconds 5] [--what server,client,big]

For a change too small to show through run.py's noise: the same harness (this
checkout's servers, clients and load generators) runs the ``greenhttps`` package of
each revision (``git archive REV greenhttps``; ``.`` is the working tree, uncommitted
edits included), A then B in every round, pinned as in run.py.  Measurements:

* ``server``: the greenhttps benchmark server, keep-alive, ``wrk -t1 -c50``, 12 bytes;
* ``big``: the same server with 1 MiB bodies, ``wrk -t1 -c4`` (MiB/s);
* ``client``: the greenhttps benchmark client, keep-alive, 50 greenlets, N=5000,
  against Node's server (greenhttps's from this checkout when there is no ``node``).

Prints every value, the medians and the ratio B/A.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Callable

import run  # the runner's helpers (processes, certificates, pinning)

KINDS = ("server", "big", "client")


def checkout(rev: str, into: Path) -> Path:
    """The directory to import greenhttps from for ``rev``."""
    if rev == ".":
        return run.REPO
    into.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(run.REPO), "archive", rev, "greenhttps"], capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive.stdout, check=True)
    return into


def server_rate(tree: Path, certs: dict[str, str], body: int, seconds: float, lua: str, tmp: Path) -> float:
    srv = run.ServerProc("greenhttps", certs, body, tmp, repo=tree)
    try:
        conns = 50 if body <= 4096 else 4
        run.wrk(srv.port, conns, 1, lua)  # warm-up
        w = run.wrk(srv.port, conns, seconds, lua)
    finally:
        srv.close()
    if body > 4096:
        return float(w["bytes"] / (w["duration_us"] / 1e6) / 2**20)
    return float(w["requests"] / (w["duration_us"] / 1e6))


def client_rate(tree: Path, port: int, ca: str) -> float:
    out = run.run_pinned([run.PY, str(run.C / "greenhttps_client.py"), "keepalive", str(port), ca,
                          "--n", "5000", "--concurrency", "50", "--warmup", "200"], timeout=180, repo=tree)
    r = run.last_json(out)
    return float(r["requests"] / r["seconds"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("rev_a")
    parser.add_argument("rev_b")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=5, help="wrk duration per server measurement")
    parser.add_argument("--what", default="server,client", help=f"comma-separated, from {', '.join(KINDS)}")
    cfg = parser.parse_args()
    kinds = [k.strip() for k in cfg.what.split(",") if k.strip()]
    unknown = set(kinds) - set(KINDS)
    if unknown:
        parser.error(f"unknown measurement(s): {', '.join(sorted(unknown))}")
    tmp = Path(tempfile.mkdtemp(prefix="greenhttps-ab-"))
    revs = {"A": cfg.rev_a, "B": cfg.rev_b}
    trees = {key: checkout(rev, tmp / key) for key, rev in revs.items()}
    certs = run.make_certs(tmp)
    lua = tmp / "report.lua"
    lua.write_text(run.WRK_LUA)
    results: dict[str, dict[str, list[float]]] = {k: {"A": [], "B": []} for k in kinds}
    reference = None
    try:
        if "client" in kinds:
            name = "node https" if shutil.which("node") else "greenhttps"
            reference = run.ServerProc(name, certs, 12, tmp)
        measures: dict[str, Callable[[Path], float]] = {
            "server": lambda tree: server_rate(tree, certs, 12, cfg.seconds, str(lua), tmp),
            "big": lambda tree: server_rate(tree, certs, run.BIG, cfg.seconds, str(lua), tmp),
            "client": lambda tree: client_rate(tree, reference.port, certs["ca"]),  # type: ignore[union-attr]
        }
        for i in range(cfg.rounds):
            for kind in kinds:
                for key in ("A", "B"):
                    value = measures[kind](trees[key])
                    results[kind][key].append(value)
                    print(f"[round {i + 1}/{cfg.rounds}] {kind} {key} ({revs[key]}): {value:,.0f}", flush=True)
    finally:
        if reference is not None:
            reference.close()
        run.stop_all()
        shutil.rmtree(tmp, ignore_errors=True)
    units = {"server": "req/s", "big": "MiB/s", "client": "req/s"}
    print(f"\nMedians of {cfg.rounds} alternating round(s); A = {cfg.rev_a}, B = {cfg.rev_b}\n")
    print("| measurement | A | B | B/A |")
    print("|---|---|---|---|")
    for kind in kinds:
        a, b = (statistics.median(results[kind][key]) for key in ("A", "B"))
        print(f"| {kind} ({units[kind]}) | {a:,.0f} | {b:,.0f} | {b / a:.2f}x |")
    return 0


if __name__ == "__main__":
    if os.environ.get("GREENHTTPS_BENCH_VENV") != "1":
        run.bootstrap(sys.argv[1:], __file__)
    sys.exit(main())
