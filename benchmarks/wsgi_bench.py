#!/usr/bin/env python3
"""WSGI apps over TLS: greenhttps's WSGI adapter and gunicorn worker against
gevent.pywsgi and gunicorn's own gevent worker, with 1 and then 2 workers.

    python benchmarks/wsgi_bench.py [--runs 3] [--duration 5] [--workers 1,2] [--only A,B]
                                    [--app flask|django|both]

Run it with a Python that has flask, django, gunicorn and gevent (``pip install -e
.[test]`` gives them); greenhttps comes from the work tree.  Every server runs the same
apps (``--app``, default both), with the same throwaway ECDSA P-256 certificate as
benchmarks/run.py, access logs off:

* ``flask``: benchmarks/wsgi/flask_app.py, a hello-world
  (``Response(b"hello world\\n", mimetype="text/plain")``);
* ``django``: benchmarks/wsgi/django_app.py, a one-file Django whose view reads 20 of
  300 rows of a sqlite table through the ORM and answers ~1 kB of JSON (middleware,
  URL resolution, a database connection per request, as Django runs by default).

| name | what |
|---|---|
| greenhttps wsgi | ``create_server({key, cert}, WSGIHandler(app))``; N processes with ``reuse_port`` |
| pywsgi+NODELAY | ``gevent.pywsgi.WSGIServer(keyfile=, certfile=)``, TCP_NODELAY on accepted sockets; N processes sharing the port with SO_REUSEPORT |
| gunicorn gevent | ``gunicorn -k gevent -w N --certfile --keyfile`` |
| gunicorn greenhttps | ``gunicorn -k greenhttps.gunicorn.Worker -w N --certfile --keyfile`` |

Load: ``wrk -tN -c<connections> -d<duration>s --latency`` (keep-alive, after a 1 s
warm-up; ``--connections`` 50 by default, issue 18's error check is ``--connections 100
--duration 30``).  The table counts wrk's socket errors (connect, read, write, timeout).
With 1 worker the servers are pinned to core 0 and wrk to core 1 (``taskset``), as in
run.py.  With 2 workers the servers get cores 0-1 and wrk shares them (a 2-core
machine has no third core): the 2-worker numbers and the scaling ratio are therefore
bounded by wrk's own share of the CPU; compare servers within a run.

Prints the medians of ``--runs`` runs (interleaved) and the ratios: greenhttps wsgi /
pywsgi+NODELAY and gunicorn greenhttps / gunicorn gevent at each worker count, and the
2-worker / 1-worker scaling of each server.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import run as suite  # noqa: E402  (certificates, pinned child processes, wrk's Lua hook)

APPS = HERE / "wsgi"
PY = sys.executable


def _gunicorn_extra() -> list[str]:
    try:
        from gunicorn.config import KNOWN_SETTINGS
    except ImportError:
        return []
    # gunicorn >= 25 opens a control socket in ~/.gunicorn by default: not wanted here.
    return ["--no-control-socket"] if any(s.name == "control_socket_disable" for s in KNOWN_SETTINGS) else []


#: ``--app`` name -> the module in benchmarks/wsgi/ whose ``app`` every server runs.
APPS_BY_NAME = {"flask": "flask_app", "django": "django_app"}


def commands(name: str, port: int, certs: dict[str, str], workers: int, app: str = "flask") -> list[list[str]]:
    """The processes that make up server ``name`` with ``workers`` workers running ``app``."""
    cert, key = certs["cert"], certs["key"]
    module = APPS_BY_NAME[app]
    if name == "greenhttps wsgi":
        return [[PY, str(APPS / "greenhttps_wsgi.py"), str(port), cert, key, module]] * workers
    if name == "pywsgi+NODELAY":
        return [[PY, str(APPS / "pywsgi_wsgi.py"), str(port), cert, key, module]] * workers
    worker = {"gunicorn gevent": "gevent", "gunicorn greenhttps": "greenhttps.gunicorn.Worker"}[name]
    return [[PY, "-m", "gunicorn", "-k", worker, "-w", str(workers), "-b", f"127.0.0.1:{port}",
             "--certfile", cert, "--keyfile", key, "--log-level", "warning", "--chdir", str(APPS),
             *_gunicorn_extra(), f"{module}:app"]]


SERVERS = ["greenhttps wsgi", "pywsgi+NODELAY", "gunicorn gevent", "gunicorn greenhttps"]
CHECKS = {
    "greenhttps wsgi": "import greenhttps.wsgi",
    "pywsgi+NODELAY": "import gevent.pywsgi",
    "gunicorn gevent": "import gunicorn.workers.ggevent",
    "gunicorn greenhttps": "import greenhttps.gunicorn",
}


def _ready(port: int, timeout: float = 20.0, procs: list[subprocess.Popen[Any]] | None = None) -> None:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for proc in procs or []:
            if proc.poll() is not None:
                raise RuntimeError(f"server exited {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2) as raw, ctx.wrap_socket(raw) as tls:
                tls.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
                if tls.recv(100).startswith(b"HTTP/1.1 200"):
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"not ready after {timeout} s")


def measure(name: str, certs: dict[str, str], workers: int, cfg: argparse.Namespace, logdir: Path,
            app: str = "flask") -> dict[str, float]:
    port = suite.free_port()
    cores = "0" if workers == 1 else ",".join(str(i) for i in range(workers))
    load_core = suite.LOAD_CORE if workers == 1 else cores
    log = open(logdir / f"{re.sub(r'[^a-z0-9]+', '_', name)}-{app}-{workers}-{port}.log", "w")
    procs = [suite.spawn(cmd, cores, stdout=log, stderr=subprocess.STDOUT, cwd=str(APPS))
             for cmd in commands(name, port, certs, workers, app)]
    try:
        try:
            _ready(port, procs=procs)
        except RuntimeError as exc:
            log.flush()
            raise RuntimeError(f"{exc}:\n{Path(log.name).read_text()[-1500:]}") from None
        time.sleep(1.0 if workers > 1 else 0.2)  # let every worker finish booting
        threads = str(workers)

        def wrk(seconds: float) -> dict[str, Any]:
            out = run_pinned_on(load_core, ["wrk", f"-t{threads}", f"-c{cfg.connections}", f"-d{seconds:g}s", "--latency",
                                                  "-s", cfg.lua, f"https://127.0.0.1:{port}/"], seconds + 30)
            return suite.last_json(out)

        if cfg.warmup:
            wrk(cfg.warmup)
        w = wrk(cfg.duration)
        if w["errors"]:
            print(f"    ! {name} x{workers}: wrk reported {w['errors']} socket errors", flush=True)
        return {"rps": w["requests"] / (w["duration_us"] / 1e6), "p50_ms": w["p50_us"] / 1000,
                "p99_ms": w["p99_us"] / 1000, "errors": float(w["errors"])}
    finally:
        for proc in procs:
            suite.stop(proc)
        log.close()


def run_pinned_on(core: str, cmd: list[str], timeout: float) -> str:
    proc = suite.spawn(cmd, core, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"timed out after {timeout:.0f} s: {' '.join(cmd)}") from None
    finally:
        suite.stop(proc)
    if proc.returncode != 0:
        raise RuntimeError(f"exit {proc.returncode}: {' '.join(cmd)}\n{err.strip()[-1500:]}")
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3, help="runs per measurement; medians are shown (default 3)")
    parser.add_argument("--duration", type=float, default=5, help="seconds of wrk load per run (default 5)")
    parser.add_argument("--connections", type=int, default=50, help="wrk's open connections (default 50)")
    parser.add_argument("--warmup", type=float, default=1, help="seconds of unmeasured load first (default 1)")
    parser.add_argument("--workers", default="1,2", help="worker counts to measure (default 1,2)")
    parser.add_argument("--only", metavar="A,B", help="only servers whose names contain one of these words")
    parser.add_argument("--json", metavar="FILE", help="also write every run's numbers to FILE")
    parser.add_argument("--app", choices=["flask", "django", "both"], default="both",
                        help="the application every server runs (default both, one after the other)")
    cfg = parser.parse_args()
    apps = ["flask", "django"] if cfg.app == "both" else [cfg.app]
    counts = [int(n) for n in cfg.workers.split(",") if n.strip()]
    for tool in ("taskset", "wrk"):
        if not shutil.which(tool):
            print(f"{tool} is required")
            return 2
    servers = SERVERS
    if cfg.only:
        words = [w.strip().lower() for w in cfg.only.split(",") if w.strip()]
        servers = [s for s in servers if any(w in s for w in words)]
    for app in list(apps):
        proc = subprocess.run([PY, "-c", f"import {app}"], capture_output=True, text=True, env=suite.child_env())
        if proc.returncode:
            print(f"skipped: the {app} app: {(proc.stderr.strip().splitlines() or ['import failed'])[-1]}")
            apps.remove(app)
    ok = []
    for name in servers:
        proc = subprocess.run([PY, "-c", CHECKS[name]], capture_output=True, text=True, env=suite.child_env())
        if proc.returncode == 0:
            ok.append(name)
        else:
            print(f"skipped: {name}: {(proc.stderr.strip().splitlines() or ['import failed'])[-1]}")
    print(suite.header().split("\npeers:")[0])
    v = suite.package_version
    print(f"flask {v('flask')}, werkzeug {v('werkzeug')}, django {v('django')}, gunicorn {v('gunicorn')}, "
          f"gevent {v('gevent')}; python {sys.executable}")
    print(f"runs: {cfg.runs}; wrk -t<workers> -c{cfg.connections} -d{cfg.duration:g}s after {cfg.warmup:g}s warm-up; "
          f"workers: {counts}; apps: {apps}", flush=True)

    tmp = Path(tempfile.mkdtemp(prefix="greenhttps-wsgi-bench-"))
    certs = suite.make_certs(tmp)
    cfg.lua = str(tmp / "report.lua")
    Path(cfg.lua).write_text(suite.WRK_LUA)
    data: dict[tuple[str, str, int], dict[str, list[float]]] = {}
    raw: list[dict[str, Any]] = []
    started = time.monotonic()
    try:
        for run in range(1, cfg.runs + 1):
            for app in apps:
                for workers in counts:
                    for name in ok:
                        print(f"[run {run}/{cfg.runs} {time.monotonic() - started:4.0f}s] {app}: {name} x{workers} ...",
                              flush=True)
                        try:
                            r = measure(name, certs, workers, cfg, tmp, app)
                        except RuntimeError as exc:
                            print(f"    ! {app}: {name} x{workers}: {exc}", flush=True)
                            continue
                        print("    " + "  ".join(f"{k}={suite.fmt(val)}" for k, val in r.items()), flush=True)
                        raw.append({"run": run, "app": app, "server": name, "workers": workers, **r})
                        for k, val in r.items():
                            data.setdefault((app, name, workers), {}).setdefault(k, []).append(val)
    finally:
        suite.stop_all()
        shutil.rmtree(tmp, ignore_errors=True)

    for app in apps:
        report(app, {key[1:]: cols for key, cols in data.items() if key[0] == app}, ok, counts, cfg.runs,
               cfg.connections)
    if cfg.json:
        Path(cfg.json).write_text(json.dumps({"runs": cfg.runs, "results": raw}, indent=1))
        print(f"\nraw numbers written to {cfg.json}")
    return 0


_TITLES = {"flask": "Flask hello-world", "django": "Django ORM view (sqlite, 20 rows as JSON)"}


def report(app: str, data: dict[tuple[str, int], dict[str, list[float]]], ok: list[str], counts: list[int],
           runs: int, connections: int) -> None:
    """The medians table and the ratios for one application."""
    med = {key: {k: statistics.median(vals) for k, vals in cols.items()} for key, cols in data.items()}
    print()
    print(f"Medians of {runs} run(s); {_TITLES[app]} over TLS, keep-alive, {connections} connections.")
    print()
    print("| server | workers | req/s ↑ | p50 ms ↓ | p99 ms ↓ | socket errors (all runs) |")
    print("|---|---|---|---|---|---|")
    for workers in counts:
        for name in ok:
            m = med.get((name, workers))
            if m:
                errors = sum(data[(name, workers)]["errors"])
                print(f"| {name} | {workers} | {suite.fmt(m['rps'])} | {suite.fmt(m['p50_ms'])} | "
                      f"{suite.fmt(m['p99_ms'])} | {errors:.0f} |")
    print()
    print("| ratio (req/s) | " + " | ".join(f"{w} worker{'s' if w > 1 else ''}" for w in counts) + " |")
    print("|---|" + "---|" * len(counts))

    def ratio(a: tuple[str, int], b: tuple[str, int]) -> str:
        if a in med and b in med and med[b]["rps"]:
            return f"{med[a]['rps'] / med[b]['rps']:.2f}×"
        return "—"

    for mine, peer in (("greenhttps wsgi", "pywsgi+NODELAY"), ("gunicorn greenhttps", "gunicorn gevent"),
                       ("gunicorn greenhttps", "pywsgi+NODELAY")):
        print(f"| {mine} / {peer} | " + " | ".join(ratio((mine, w), (peer, w)) for w in counts) + " |")

    def p99_ratio(a: tuple[str, int], b: tuple[str, int]) -> str:
        if a in med and b in med and med[b]["p99_ms"]:
            return f"{med[a]['p99_ms'] / med[b]['p99_ms']:.2f}×"
        return "—"

    print("| p99: gunicorn greenhttps / gunicorn gevent | "
          + " | ".join(p99_ratio(("gunicorn greenhttps", w), ("gunicorn gevent", w)) for w in counts) + " |")
    if len(counts) > 1:
        lo, hi = counts[0], counts[-1]
        print()
        print(f"| scaling {hi} / {lo} workers | req/s ratio |")
        print("|---|---|")
        for name in ok:
            print(f"| {name} | {ratio((name, hi), (name, lo))} |")


def _on_signal(signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _on_signal)
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("\ninterrupted; all child processes stopped", file=sys.stderr)
        sys.exit(130)
    finally:
        suite.stop_all()
