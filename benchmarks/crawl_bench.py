#!/usr/bin/env python3
"""A crawl (issue 22's benchmark): greenhttps.fetch() against aiohttp, urllib3 and
geventhttpclient fetching the same gzip-encoded pages from many HTTPS origins.

    python3 benchmarks/crawl_bench.py [--runs 3] [--pages 20000] [--origins 200]
        [--concurrency 1000] [--per-origin 6] [--order shuffle|rr] [--only A,B] [--json FILE]

Origins: ``--origins`` HTTPS servers on 127.0.0.1 (one listening port each) in ONE
Node process pinned to core 0 (benchmarks/crawl/origins.js), every one answering every
GET with the same ``--page-kib`` KiB HTML page, gzipped once at start and sent with
``Content-Encoding: gzip``, ``Content-Length``, keep-alive; certificates as run.py
makes them (a throwaway CA and an ECDSA P-256 leaf).

Clients: one subprocess each, pinned to core 1 (benchmarks/crawl/*.py), every one the
same crawl: ``--pages`` GETs spread over the origins (shuffled with ``--seed``, or
round-robin with ``--order rr``), ``--concurrency`` workers pulling from one shared
list, at most ``--per-origin`` connections per origin, every body decoded and checked
(status, length, the marker it ends with); failures are counted and shown.

| name | what |
|---|---|
| greenhttps fetch | ``greenhttps.fetch(url, agent=Agent(keep_alive=True, max_sockets=6))``, ``res.content`` (decoded by fetch) |
| greenhttps get+gunzip | ``greenhttps.get()`` on the same Agent, ``gzip.decompress`` by hand |
| aiohttp | ``ClientSession(connector=TCPConnector(limit=0, limit_per_host=6, ssl=ctx))``, worker coroutines |
| aiohttp (isal) | the same, after ``aiohttp.set_zlib_backend(isal.isal_zlib)``: ISA-L's inflate, as greenhttps's decode extra |
| urllib3+monkey | ``gevent.monkey.patch_all()``, ``PoolManager(num_pools=200, maxsize=6, block=True)`` |
| geventhttpclient | ``HTTPClientPool(concurrency=6)`` (an HTTPClient per origin), ``gzip.decompress`` by hand |

The gevent clients run ``--concurrency`` greenlets in a ``gevent.pool.Pool``.  Each
client reports wall seconds and CPU seconds (``getrusage``: user + sys) of the crawl,
and its peak RSS (``ru_maxrss``); the runner adds the Node process's CPU seconds during
that client's crawl (``/proc/PID/stat``), so a saturated origin core shows (busy ≈
100 %: then pages/s says more about Node than about the client, and CPU per page is
the honest figure).  Rounds alternate (round 1 of every client, then round 2, ...);
medians are printed, with ratios against aiohttp.  Every child is killed on exit,
error or Ctrl-C.  greenhttps comes from the work tree (``PYTHONPATH``).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import run as suite  # noqa: E402  (the venv, certificates, pinned child processes)

CRAWL = HERE / "crawl"
PY = sys.executable
MARKER = "<!-- greenhttps crawl bench: end of page -->\n"

#: name -> (script, import check); the order is the order of every round.
CLIENTS: dict[str, tuple[str, str]] = {
    "greenhttps fetch": ("greenhttps_fetch.py", "import greenhttps; greenhttps.fetch"),
    "greenhttps get+gunzip": ("greenhttps_get.py", "import greenhttps"),
    "aiohttp": ("aiohttp_session.py", "import aiohttp"),
    "aiohttp (isal)": ("aiohttp_isal_session.py", "import aiohttp, isal; aiohttp.set_zlib_backend"),
    "urllib3+monkey": ("urllib3_monkey.py", "import gevent, urllib3"),
    "geventhttpclient": ("geventhttpclient_pool.py", "from geventhttpclient.client import HTTPClientPool"),
}
BASELINE = "aiohttp"
#: Issue 22's targets for fetch, as ratios to aiohttp: (column, op, bound).
TARGETS = [("pages_s", ">=", 1.2), ("rss_mib", "<=", 0.25), ("cpu_ms_page", "<=", 0.8)]

_WORDS = ("crawl origin page anchor index archive search result product review article section "
          "category price stock shipping author comment update release notes library python gevent "
          "greenlet socket pool agent proxy redirect header encoding deflate certificate handshake "
          "session ticket cache queue worker latency throughput memory budget politeness robots "
          "sitemap canonical feed story image gallery video summary details contact about help").split()


def make_page(size: int, seed: int) -> bytes:
    """An HTML page of exactly ``size`` bytes ending with MARKER: paragraphs of
    seeded-random words and links, so that it gzips like text (about 3-4x), not like
    filler."""
    rng = random.Random(seed)
    head = b"<!doctype html>\n<html><head><meta charset=utf-8><title>crawl bench</title></head><body>\n"
    tail = ("</body></html>\n" + MARKER).encode()
    parts = [head]
    length = len(head) + len(tail)
    n = 0
    while length < size:
        words = " ".join(rng.choice(_WORDS) for _ in range(rng.randint(20, 60)))
        link = f'<a href="/page/{rng.randint(0, 10**6)}">{rng.choice(_WORDS)} {n}</a>'
        para = f"<p>{words} {link}.</p>\n".encode()
        parts.append(para)
        length += len(para)
        n += 1
    body = b"".join(parts)[: size - len(tail)]
    page = body + tail
    assert len(page) == size
    return page


class Origins:
    """The Node process serving every origin, pinned to the server core."""

    def __init__(self, page: Path, certs: dict[str, str], count: int, logdir: Path) -> None:
        self._log = open(logdir / "origins.log", "w")
        self.proc = suite.spawn(["node", str(CRAWL / "origins.js"), str(page), certs["cert"], certs["key"], str(count)],
                                suite.SERVER_CORE, stdout=subprocess.PIPE, stderr=self._log, text=True)
        self.pid = self.proc.pid
        try:
            line = suite._expect(self.proc, "{", 30)
        except RuntimeError:
            self._log.flush()
            raise RuntimeError(f"node origins did not start: {Path(self._log.name).read_text()[-1500:]}") from None
        info = json.loads(line)
        self.ports: list[int] = info["ports"]
        self.gzip_bytes: int = info["gzip_bytes"]

    def cpu(self) -> float:
        return suite.cpu_seconds(self.pid)

    def stats(self) -> dict[str, int]:
        """Connections opened since the last call, and the most any origin had open at
        once (the stats connection itself counts one, on the first origin)."""
        got = suite.node_stats(self.ports[0])
        assert got is not None
        return got

    def close(self) -> None:
        suite.stop(self.proc)
        self._log.close()


def crawl(name: str, plan: Path, origins: Origins, timeout: float) -> dict[str, Any]:
    """One crawl by client ``name``; its report plus the origin's CPU seconds."""
    origins.stats()  # resets the counts
    before = origins.cpu()
    out = suite.run_pinned([PY, str(CRAWL / CLIENTS[name][0]), str(plan)], timeout=timeout)
    origin_cpu = origins.cpu() - before
    if origins.proc.poll() is not None:
        raise RuntimeError(f"the node origins exited ({origins.proc.returncode})")
    conns = origins.stats()
    r = suite.last_json(out)
    ok, secs = r["ok"], r["seconds"]
    cpu = r["cpu_user"] + r["cpu_sys"]
    return {
        **r,
        "pages_s": ok / secs if ok else 0.0,
        "cpu_s": cpu,
        "cpu_ms_page": 1000.0 * cpu / ok if ok else None,
        "rss_mib": r["maxrss_kib"] / 1024.0,
        "origin_cpu_s": origin_cpu,
        "origin_busy_pct": 100.0 * origin_cpu / secs if secs else None,
        "connections": conns["opened"] - 1,  # minus the stats request's own
        "peak_per_origin": conns["peak_per_origin"],
    }


#: Counts: shown as integers.
INT_COLS = {"connections", "peak_per_origin"}


def fmt(key: str, value: float | None) -> str:
    if value is not None and key in INT_COLS:
        return f"{value:,.0f}"
    return suite.fmt(value)


COLS = [
    ("pages_s", "pages/s ↑"),
    ("seconds", "wall s"),
    ("cpu_s", "CPU s"),
    ("cpu_ms_page", "CPU ms/page ↓"),
    ("rss_mib", "peak RSS MiB ↓"),
    ("origin_cpu_s", "origin CPU s"),
    ("origin_busy_pct", "origin core busy %"),
    ("connections", "TLS conns opened"),
    ("peak_per_origin", "max conns/origin"),
]


def versions() -> str:
    v = suite.package_version
    node = subprocess.run(["node", "--version"], capture_output=True, text=True).stdout.strip()
    return (f"clients: aiohttp {v('aiohttp')}, urllib3 {v('urllib3')}, geventhttpclient {v('geventhttpclient')}, "
            f"gevent {v('gevent')}; origins: node {node}; python {sys.executable}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3, help="rounds; medians are shown (default 3)")
    parser.add_argument("--pages", type=int, default=20000, help="GETs per crawl (default 20,000)")
    parser.add_argument("--origins", type=int, default=200, help="origins = listening ports (default 200)")
    parser.add_argument("--concurrency", type=int, default=1000, help="concurrent workers (default 1,000)")
    parser.add_argument("--per-origin", type=int, default=6, help="connections per origin at most (default 6)")
    parser.add_argument("--page-kib", type=int, default=20, help="decoded page size in KiB (default 20)")
    parser.add_argument("--order", choices=["shuffle", "rr"], default="shuffle",
                        help="URL order: shuffled with --seed (default) or round-robin over the origins")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--only", metavar="A,B", help="only clients whose names contain one of these words")
    parser.add_argument("--json", metavar="FILE", help="also write every run's numbers to FILE")
    parser.add_argument("--reinstall", action="store_true", help="retry peers that failed to install (run.py's venv)")
    cfg = parser.parse_args()
    for tool in ("taskset", "node"):
        if not shutil.which(tool):
            print(f"{tool} is required")
            return 2
    if (os.cpu_count() or 1) < 2:
        print("needs at least 2 CPUs (origins on core 0, the client on core 1)")
        return 2
    names = list(CLIENTS)
    if cfg.only:
        words = [w.strip().lower() for w in cfg.only.split(",") if w.strip()]
        names = [n for n in names if any(w in n.lower() for w in words)]
    clients = []
    for name in names:
        proc = subprocess.run([PY, "-c", CLIENTS[name][1]], capture_output=True, text=True, env=suite.child_env())
        if proc.returncode == 0:
            clients.append(name)
        else:
            print(f"skipped: {name}: {(proc.stderr.strip().splitlines() or ['import failed'])[-1]}")
    if not clients:
        print("no client to run")
        return 1
    print("\n".join(line for line in suite.header().splitlines()
                    if not line.startswith(("peers:", "load generators:", "pinning:"))))
    print(versions())
    print(f"crawl: {cfg.pages:,} GETs over {cfg.origins} origins ({cfg.order}"
          f"{f', seed {cfg.seed}' if cfg.order == 'shuffle' else ''}), {cfg.concurrency:,} concurrent, "
          f"<= {cfg.per_origin} connections per origin, {cfg.page_kib} KiB HTML page sent gzip; runs: {cfg.runs}",
          flush=True)

    tmp = Path(tempfile.mkdtemp(prefix="greenhttps-crawl-bench-"))
    data: dict[str, dict[str, list[float]]] = {}
    failures: dict[str, int] = {}
    raw: list[dict[str, Any]] = []
    broken = False
    started = time.monotonic()
    origins = None
    try:
        certs = suite.make_certs(tmp)
        page = tmp / "page.html"
        page.write_bytes(make_page(cfg.page_kib * 1024, cfg.seed))
        origins = Origins(page, certs, cfg.origins, tmp)
        print(f"origins: node pid {origins.pid} on core {suite.SERVER_CORE}, {len(origins.ports)} ports, "
              f"page {cfg.page_kib * 1024:,} bytes, {origins.gzip_bytes:,} gzipped", flush=True)
        plan = tmp / "plan.json"
        plan.write_text(json.dumps({
            "ports": origins.ports, "ca": certs["ca"], "pages": cfg.pages, "concurrency": cfg.concurrency,
            "per_origin": cfg.per_origin, "page_bytes": cfg.page_kib * 1024, "marker": MARKER,
            "order": cfg.order, "seed": cfg.seed,
        }))
        timeout = 120 + cfg.pages * 0.025  # a slow client at 400 pages/s still finishes
        for run in range(1, cfg.runs + 1):
            for name in clients:
                print(f"[run {run}/{cfg.runs} {time.monotonic() - started:5.0f}s] {name} ...", flush=True)
                try:
                    r = crawl(name, plan, origins, timeout)
                except RuntimeError as exc:
                    print(f"    ! {name}: {exc}", flush=True)
                    broken = True
                    if origins.proc.poll() is not None:
                        raise
                    continue
                print("    " + "  ".join(f"{k}={fmt(k, r[k])}" for k, _ in COLS if r[k] is not None)
                      + f"  failures={r['failures']}", flush=True)
                if r["peak_per_origin"] > cfg.per_origin:
                    print(f"    ! {name}: {r['peak_per_origin']} connections to one origin at once "
                          f"(limit {cfg.per_origin})", flush=True)
                if r["failures"]:
                    print(f"    ! {name}: {r['failures']} failed pages: {r['errors']}", flush=True)
                failures[name] = failures.get(name, 0) + r["failures"]
                raw.append({"run": run, "client": name, **r})
                for k, _ in COLS:
                    if r[k] is not None:
                        data.setdefault(name, {}).setdefault(k, []).append(r[k])
                time.sleep(0.5)  # let the last connections close on both sides
    finally:
        if origins is not None:
            origins.close()
        suite.stop_all()
        shutil.rmtree(tmp, ignore_errors=True)

    rows = [n for n in clients if n in data]
    med = {n: {k: statistics.median(v) for k, v in data[n].items()} for n in rows}
    print()
    print(f"Medians of {cfg.runs} run(s); elapsed {time.monotonic() - started:.0f} s; load average at end "
          f"{open('/proc/loadavg').read().split(' ', 3)[:3]}. ↑ higher is better, ↓ lower is better.")
    print()
    print(f"### Crawl: {cfg.pages:,} pages, {cfg.origins} origins (node, core 0), {cfg.concurrency:,} concurrent, "
          f"<= {cfg.per_origin} conns/origin, {cfg.page_kib} KiB gzip HTML (client on core 1)")
    print()
    print("| client | " + " | ".join(label for _, label in COLS) + " | failed pages (all runs) |")
    print("|---|" + "---|" * (len(COLS) + 1))
    for n in rows:
        cells = [fmt(k, med[n].get(k)) for k, _ in COLS]
        print(f"| {n} | " + " | ".join(cells) + f" | {failures.get(n, 0)} |")
    if BASELINE in med:
        base = med[BASELINE]
        print()
        print(f"### Ratios to {BASELINE} (pages/s: > 1 is better; RSS and CPU/page: < 1 is better)")
        print()
        print("| client / aiohttp | pages/s | peak RSS | CPU ms/page |")
        print("|---|---|---|---|")

        def ratio(n: str, k: str) -> str:
            a, b = med[n].get(k), base.get(k)
            return f"{a / b:.2f}×" if a is not None and b else "—"

        for n in rows:
            if n != BASELINE:
                print(f"| {n} | {ratio(n, 'pages_s')} | {ratio(n, 'rss_mib')} | {ratio(n, 'cpu_ms_page')} |")
        if "greenhttps fetch" in med:
            verdicts = []
            for k, op, bound in TARGETS:
                a, b = med["greenhttps fetch"].get(k), base.get(k)
                if a is None or not b:
                    continue
                value = a / b
                met = value >= bound if op == ">=" else value <= bound
                verdicts.append(f"{k} {value:.2f}× (target {op} {bound}: {'met' if met else 'NOT met'})")
            print()
            print("issue 22 targets for fetch vs aiohttp: " + "; ".join(verdicts))
    if any(failures.values()):
        print()
        print("FAILED PAGES: " + ", ".join(f"{n}: {c}" for n, c in failures.items() if c))
    if cfg.json:
        Path(cfg.json).write_text(json.dumps({"config": vars(cfg), "runs": raw}, indent=1))
        print(f"\nraw numbers written to {cfg.json}")
    return 1 if broken or any(failures.values()) else 0


def _on_signal(signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


if __name__ == "__main__":
    suite.bootstrap(sys.argv[1:], __file__)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even if started with SIGINT ignored
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGHUP, _on_signal)
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        suite.stop_all()
        print("\ninterrupted; all child processes stopped", file=sys.stderr)
        sys.exit(130)
    finally:
        suite.stop_all()
