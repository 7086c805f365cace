#!/usr/bin/env python3
"""Instructions per crawled page for two revisions: the crawl's client cost, noise-free.

    python3 benchmarks/crawl/instructions_per_page.py REV_A [REV_B] [--client fetch|get] [--pages 1000]
        [--origins 4] [--callgrind-out DIR]

The crawl of benchmarks/crawl_bench.py, small and steady: the Node origins (not under
valgrind) serve the gzip page; one client script (``greenhttps_fetch.py`` or
``greenhttps_get.py``) runs under ``valgrind --tool=callgrind`` with ``--origins``
origins and ``6 x origins`` workers (so every worker soon has its own pooled
connection and the connection count is the same in every run), round-robin.  The
count per page is the difference of two runs (200 and 200 + ``--pages`` pages) over
``--pages``: start-up, imports and the TLS handshakes cancel out.  Each revision's
``greenhttps`` comes from ``git archive`` (``.`` is the work tree; a directory that
holds a ``greenhttps`` package is used as it is).  Needs valgrind
and node; run it with benchmarks/.venv/bin/python (or any Python with gevent and
greenhttps's dependencies).  ``--callgrind-out DIR`` keeps the callgrind files
(``callgrind.out.A.200``, ``callgrind.out.A.1200``, ...) for ``callgrind_annotate``;
subtract the two runs' per-function counts for the cost of the pages alone.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

CRAWL = Path(__file__).resolve().parent
sys.path.insert(0, str(CRAWL.parent))

import crawl_bench as bench  # noqa: E402
import instructions as single  # noqa: E402  (checkout())

SCRIPTS = {"fetch": "greenhttps_fetch.py", "get": "greenhttps_get.py", "aiohttp": "aiohttp_session.py",
           "aiohttp-isal": "aiohttp_isal_session.py",
           "urllib3": "urllib3_monkey.py", "geventhttpclient": "geventhttpclient_pool.py"}
BASE_PAGES = 200


def count(tree: Path, script: str, plan: Path, out: str) -> tuple[int, dict[str, object]]:
    env = {**os.environ, "PYTHONPATH": str(tree), "PYTHONHASHSEED": "0"}
    proc = subprocess.run(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", sys.executable,
                           str(CRAWL / script), str(plan)], capture_output=True, text=True, env=env, timeout=1800)
    if proc.returncode != 0:
        raise RuntimeError(f"exit {proc.returncode}: {proc.stderr[-1500:]}")
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    if report["failures"]:
        raise RuntimeError(f"failed pages under valgrind: {report['errors']}")
    for line in proc.stderr.splitlines():
        if "Collected :" in line:
            return int(line.rsplit(":", 1)[1]), report
    raise RuntimeError(f"no callgrind total in: {proc.stderr[-500:]}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("rev_a")
    parser.add_argument("rev_b", nargs="?", help="omitted: count REV_A alone")
    parser.add_argument("--client", choices=sorted(SCRIPTS), default="fetch",
                        help="the client script (the peers' counts do not depend on the revision)")
    parser.add_argument("--script", metavar="FILE", help="another client script (same plan and output) instead")
    parser.add_argument("--pages", type=int, default=1000)
    parser.add_argument("--origins", type=int, default=4)
    parser.add_argument("--callgrind-out", metavar="DIR", help="keep the callgrind.out files here")
    cfg = parser.parse_args()
    for tool in ("valgrind", "node"):
        if shutil.which(tool) is None:
            print(f"needs {tool}", file=sys.stderr)
            return 2
    tmp = Path(tempfile.mkdtemp(prefix="greenhttps-crawl-instructions-"))
    origins = None
    try:
        certs = bench.suite.make_certs(tmp)
        page = tmp / "page.html"
        page.write_bytes(bench.make_page(20 * 1024, 1))
        origins = bench.Origins(page, certs, cfg.origins, tmp)
        per_page = {}
        revs = [("A", cfg.rev_a)] + ([("B", cfg.rev_b)] if cfg.rev_b else [])
        for label, rev in revs:
            # A directory holding a greenhttps package (an experiment) is used as it is.
            given = Path(rev)
            if rev != "." and (given / "greenhttps").is_dir():
                tree = given.resolve()
            else:
                tree = single.checkout(rev, tmp / label)
            totals = []
            for pages in (BASE_PAGES, BASE_PAGES + cfg.pages):
                plan = tmp / f"plan-{pages}.json"
                plan.write_text(json.dumps({
                    "ports": origins.ports, "ca": certs["ca"], "pages": pages, "concurrency": 6 * cfg.origins,
                    "per_origin": 6, "page_bytes": 20 * 1024, "marker": bench.MARKER, "order": "rr", "seed": 1,
                }))
                out = "/dev/null"
                if cfg.callgrind_out:
                    out = str(Path(cfg.callgrind_out) / f"callgrind.out.{label}.{pages}")
                origins.stats()
                total, _report = count(tree, cfg.script or SCRIPTS[cfg.client], plan, out)
                conns = origins.stats()["opened"] - 1
                print(f"  {label} {rev}: {pages} pages: {total:,} instructions, {conns} TLS connections", flush=True)
                totals.append(total)
            per_page[label] = (totals[1] - totals[0]) / cfg.pages
            what = cfg.script or cfg.client
            print(f"{label} {rev}: {per_page[label]:,.0f} instructions per page ({what})", flush=True)
        if "B" in per_page:
            print(f"B/A: {per_page['B'] / per_page['A']:.3f}")
    finally:
        if origins is not None:
            origins.close()
        bench.suite.stop_all()
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
