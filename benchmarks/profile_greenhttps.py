#!/usr/bin/env python3
"""Profile greenhttps under the benchmark load with py-spy (needs root or ptrace rights).

    python3 benchmarks/profile_greenhttps.py server [--seconds 10] [--body-size 12] [--out FILE]
    python3 benchmarks/profile_greenhttps.py client [--seconds 10] [--mode keepalive|big|newconn|newconn-resume]

``server``: the greenhttps benchmark server on core 0 under ``wrk -t1 -c50`` on core 1.
``client``: the greenhttps benchmark client on core 1 against the Node server (or
greenhttps's) on core 0.  py-spy samples the greenhttps process without pausing it
(``--nonblocking``) and the script prints the functions with the most samples, self
and inclusive (a function counted once per sample however deep it recurses).  The raw
collapsed stacks go to ``--out`` (flamegraph.pl / speedscope can read them).  Needs
the venv that run.py creates (it installs py-spy into it on first use).
"""

from __future__ import annotations

import argparse
import collections
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import run  # the runner's helpers (processes, certificates, pinning)


def top(collapsed: Path, n: int = 25) -> str:
    self_count: collections.Counter[str] = collections.Counter()
    incl_count: collections.Counter[str] = collections.Counter()
    total = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count_s = line.rpartition(" ")
        if not stack:
            continue
        count = int(count_s)
        total += count
        frames = [f.split(" (", 1)[0] + " (" + f.split(" (", 1)[1].split(":")[0].rsplit("/", 1)[-1] + ")"
                  if " (" in f else f for f in stack.split(";")]
        self_count[frames[-1]] += count
        for frame in set(frames):
            incl_count[frame] += count
    out = [f"{total} samples", "", "self %  function"]
    out += [f"{100 * c / total:5.1f}  {f}" for f, c in self_count.most_common(n)]
    out += ["", "incl % function"]
    out += [f"{100 * c / total:5.1f}  {f}" for f, c in incl_count.most_common(n)]
    return "\n".join(out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("side", choices=["server", "client"])
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--body-size", type=int, default=12, help="server side: response body size")
    parser.add_argument("--mode", default="keepalive", help="client side: keepalive|big|newconn|newconn-resume")
    parser.add_argument("--rate", type=int, default=250, help="py-spy samples per second")
    parser.add_argument("--out", help="keep the collapsed stacks here")
    cfg = parser.parse_args()
    spy = Path(run.VENV) / "bin" / "py-spy"
    if not spy.exists():
        subprocess.run([run.PY, "-m", "pip", "install", "-q", "py-spy"], check=True)
    tmp = Path(tempfile.mkdtemp(prefix="greenhttps-profile-"))
    out = Path(cfg.out) if cfg.out else tmp / "stacks.txt"
    certs = run.make_certs(tmp)
    spy_cmd = [str(spy), "record", "--nonblocking", "-r", str(cfg.rate), "-d", f"{cfg.seconds:g}", "-f", "raw",
               "-o", str(out), "-p"]
    try:
        if cfg.side == "server":
            srv = run.ServerProc("greenhttps", certs, cfg.body_size, tmp)
            conns = 50 if cfg.body_size <= 4096 else 4
            load = run.spawn(["wrk", "-t1", f"-c{conns}", f"-d{cfg.seconds + 3:g}s", f"https://127.0.0.1:{srv.port}/"],
                             run.LOAD_CORE, stdout=subprocess.PIPE, text=True)
            time.sleep(1)
            subprocess.run([*spy_cmd, str(srv.pid)], check=True, capture_output=True)
            print(load.communicate(timeout=cfg.seconds + 30)[0])
        else:
            name = "node https" if shutil.which("node") else "greenhttps"
            srv = run.ServerProc(name, certs, 1024 * 1024 if cfg.mode == "big" else 12, tmp)
            n = 10**7 if cfg.mode == "keepalive" else 10**6  # stopped after --seconds anyway
            client = run.spawn([run.PY, str(run.C / "greenhttps_client.py"), cfg.mode, str(srv.port), certs["ca"],
                                "--n", str(n), "--concurrency", "50" if cfg.mode == "keepalive" else "8"],
                               run.LOAD_CORE, stdout=subprocess.PIPE, text=True)
            time.sleep(1.5)
            subprocess.run([*spy_cmd, str(client.pid)], check=True, capture_output=True)
        print(top(out))
        if cfg.out:
            print(f"\ncollapsed stacks in {out}")
    finally:
        run.stop_all()
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    if os.environ.get("GREENHTTPS_BENCH_VENV") != "1":
        run.bootstrap(sys.argv[1:], __file__)
    sys.exit(main())
