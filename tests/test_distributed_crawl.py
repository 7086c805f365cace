"""examples/distributed_crawl against a real broker and real workers.

A real ``redis-server`` (started here on a free 127.0.0.1 port, no persistence),
Celery workers started as ``python -m celery -A distributed_crawl worker -P gevent
-c 500`` (separate processes, killed with SIGKILL where the test says so), and a
site of several greenhttps origins served by this process (the example's
:class:`Site`, with the session's trustme certificate), which counts, per origin and
per worker process (the ``X-Crawl-Worker`` header), the connections open at once
and the fetches of every path.

No Node counterpart: this is the example's end-to-end test, not a wire behaviour.
"""

from __future__ import annotations

import importlib
import os
import signal
import socket
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import gevent
import gevent.subprocess
import pytest

import helpers

EXAMPLES = helpers.REPO_ROOT / "examples"
sys.path.insert(0, str(EXAMPLES))


def _need(module: str) -> Any:
    """Import ``module``; in CI its absence fails the run instead of skipping it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        if os.environ.get("CI"):
            raise RuntimeError(
                f"{module} is not installed ({exc}): CI must install the test extra"
            ) from exc
        pytest.skip(f"{module} is not installed (pip install '.[test]')", allow_module_level=True)


redis = _need("redis")
_need("celery")

from distributed_crawl.frontier import Frontier  # noqa: E402
from distributed_crawl.site import Site  # noqa: E402

pytestmark = [pytest.mark.needs_redis, pytest.mark.slow, pytest.mark.timeout(240)]

ORIGINS = 4
PAGES = 300  # per origin: 4 x (300 + "/" + 12 redirects/404s) = 1252 URLs a crawl
MAX_SOCKETS = 4  # per origin, per worker
CONCURRENCY = 500  # greenlets per gevent worker


# ------------------------------------------------------------------- the broker


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A fresh redis-server on a free port: no RDB snapshots, no AOF."""
    folder = tmp_path_factory.mktemp("redis")
    port = helpers.free_port()
    log = folder / "redis.log"
    with open(log, "wb") as out:
        proc = gevent.subprocess.Popen(
            ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(folder)],
            stdout=out, stderr=gevent.subprocess.STDOUT,
        )
    url = f"redis://127.0.0.1:{port}/0"
    client = redis.Redis.from_url(url, socket_timeout=2)
    deadline = time.monotonic() + 10
    while True:
        try:
            client.ping()
            break
        except redis.ConnectionError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"redis-server did not start on port {port}:\n{log.read_text()}")
            gevent.sleep(0.05)
    try:
        yield url
    finally:
        client.close()
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except gevent.subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
def store(redis_url: str) -> Iterator[Any]:
    """A client of the test's Redis, emptied after the test (queues, unacked tasks)."""
    client = redis.Redis.from_url(redis_url)
    try:
        yield client
    finally:
        client.flushall()
        client.close()


# --------------------------------------------------------------------- the site


@pytest.fixture(scope="module")
def site(server_cert: Any) -> Iterator[Site]:
    tls = {
        "key": server_cert.private_key_pem.bytes(),
        "cert": b"".join(blob.bytes() for blob in server_cert.cert_chain_pems),
    }
    # 3 ms a page: fetches overlap enough that each worker reaches its limit.
    demo = Site(ORIGINS, PAGES, tls, delay_ms=3)
    demo.listen()
    try:
        yield demo
    finally:
        demo.close()


# ------------------------------------------------------------------ the workers


class Worker:
    def __init__(self, proc: gevent.subprocess.Popen[bytes], log: Path, name: str) -> None:
        self.proc, self.log, self.name = proc, log, name
        self.id = f"{socket.gethostname()}/{proc.pid}"  # what its tasks send as X-Crawl-Worker

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while " ready." not in self.log.read_text(errors="replace"):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"worker {self.name} did not start:\n{self.log.read_text()[-4000:]}")
            gevent.sleep(0.1)

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        """SIGKILL: the test is over and its Redis is emptied after it; a warm or even
        a cold shutdown takes a gevent worker 4 s or more."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)

    def reap(self) -> None:
        try:
            self.proc.wait(timeout=15)
        except gevent.subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def start_worker(
    redis_url: str, ca_file: str, tmp_path: Path
) -> Iterator[Callable[..., Worker]]:
    """Factory: ``start_worker(name, pool="gevent", concurrency=500, **env)`` -> a
    started worker process (not yet ready: call ``wait_ready()``)."""
    workers: list[Worker] = []

    def start(name: str, pool: str = "gevent", concurrency: int = CONCURRENCY, **env: str) -> Worker:
        environ = dict(os.environ)
        environ.update(
            PYTHONPATH=os.pathsep.join([str(helpers.REPO_ROOT), str(EXAMPLES)]),
            CELERY_BROKER_URL=redis_url,
            CRAWL_CA_FILE=ca_file,
            CRAWL_MAX_SOCKETS=str(MAX_SOCKETS),
            CRAWL_TIMEOUT_MS="20000",
            **env,
        )
        log = tmp_path / f"{name}.log"
        with open(log, "wb") as out:
            proc = gevent.subprocess.Popen(
                [sys.executable, "-m", "celery", "-A", "distributed_crawl", "worker",
                 "-P", pool, "-c", str(concurrency), "-n", f"{name}@%h", "-l", "info",
                 "--without-gossip", "--without-mingle", "--without-heartbeat"],
                stdout=out, stderr=gevent.subprocess.STDOUT, cwd=str(EXAMPLES), env=environ,
            )
        worker = Worker(proc, log, name)
        workers.append(worker)
        return worker

    yield start
    for worker in workers:
        worker.stop()
    for worker in workers:
        worker.reap()


# --------------------------------------------------------------------- a crawl


def seed(redis_url: str, crawl_id: str, site: Site) -> None:
    """``python -m distributed_crawl seed`` with every origin's ``/``, as a user would."""
    env = dict(os.environ, CELERY_BROKER_URL=redis_url,
               PYTHONPATH=os.pathsep.join([str(helpers.REPO_ROOT), str(EXAMPLES)]))
    proc = gevent.subprocess.run(
        [sys.executable, "-m", "distributed_crawl", "seed", "--crawl", crawl_id,
         *(base + "/" for base in site.bases)],
        cwd=str(EXAMPLES), env=env, stdout=gevent.subprocess.PIPE,
        stderr=gevent.subprocess.PIPE, timeout=60, check=False,
    )
    assert proc.returncode == 0, proc.stderr.decode()
    assert proc.stdout.decode().strip() == crawl_id


def wait_done(front: Frontier, workers: list[Worker], timeout: float = 150,
              on_progress: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        progress = front.progress()
        if on_progress is not None:
            on_progress(progress)
        if progress["discovered"] and progress["pending"] == 0:
            return progress
        if time.monotonic() > deadline:
            logs = "\n".join(f"--- {w.name}\n{w.log.read_text()[-3000:]}" for w in workers)
            pytest.fail(f"crawl not done after {timeout} s: {progress}\n{logs}")
        gevent.sleep(0.2)


def summary(records: dict[str, dict[str, Any]]) -> dict[str, tuple[Any, ...]]:
    """What must not depend on who crawled: per URL, status, final URL, body hash..."""
    return {
        url: (r["status"], r["final_url"], r["sha256"], r["error"], r["bytes"], r["links"])
        for url, r in records.items()
    }


def check_complete(front: Frontier, site: Site, store: Any) -> dict[str, dict[str, Any]]:
    """Every URL of the site recorded, once, with the right status; no claims left over."""
    records = front.records()
    assert set(records) == site.expected()
    progress = front.progress()
    assert progress["recorded"] == progress["discovered"] == len(site.expected())
    statuses = {r["status"] for u, r in records.items() if "/missing/" in u}
    assert statuses == {404}
    moved = [(u, r) for u, r in records.items() if "/old/" in u]
    assert moved and all(r["final_url"] == u.replace("/old/", "/new/") and r["status"] == 200
                         for u, r in moved)
    assert all(r["error"] is None for r in records.values())
    assert not list(store.scan_iter(f"crawl:{front.crawl_id}:children:*"))
    return records


def check_connection_limit(site: Site, worker_ids: set[str]) -> int:
    """The per-origin limit held within each worker; returns the highest peak seen."""
    peaks = {(origin, w): n for (origin, w), n in site.peak.items()}
    assert {w for _, w in peaks} <= worker_ids, peaks
    over = {key: n for key, n in peaks.items() if n > MAX_SOCKETS}
    history = "\n".join(map(str, (h for h in site.history if h[1] in over)))
    assert not over, (
        f"more than {MAX_SOCKETS} connections at once from one worker: {over}\n"
        f"(time, (origin, worker), client port, open after, first request):\n{history}"
    )
    return max(peaks.values())


# ------------------------------------------------------------------------ tests


def test_one_worker_and_two_workers_record_the_same_pages_once(
    redis_url: str, store: Any, site: Site, start_worker: Callable[..., Worker],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Two gevent workers (500 greenlets each) crawl what one crawls: every page
    fetched once and recorded once, the same results, at most MAX_SOCKETS connections
    per origin from each worker.  Prints the pages/s of each (not asserted: the
    origins, the broker and the workers share this machine's cores)."""
    first = start_worker("w1", CRAWL_VISIBILITY_TIMEOUT="120")
    first.wait_ready()
    rates = {}
    results = {}
    peaks: list[int] = []
    workers = [first]
    for crawl_id in ("one", "two"):
        site.reset()
        seed(redis_url, crawl_id, site)
        front = Frontier(store, crawl_id)
        progress = wait_done(front, workers)
        records = check_complete(front, site, store)
        fetched = {url: sum(by.values()) for url, by in site.fetches.items()}
        assert set(fetched) == site.paths()
        assert set(fetched.values()) == {1}, {u: n for u, n in fetched.items() if n != 1}
        assert progress["fetches"] == len(site.expected())
        ids = {w.id for w in workers}
        assert {r["worker"] for r in records.values()} == ids  # each worker took part
        peaks.append(check_connection_limit(site, ids))  # the limit held within each worker
        rates[crawl_id] = progress["recorded"] / progress["seconds"]
        results[crawl_id] = summary(records)
        if crawl_id == "one":  # the second worker joins for the second crawl
            second = start_worker("w2", CRAWL_VISIBILITY_TIMEOUT="120")
            second.wait_ready()
            workers.append(second)

    assert results["one"] == results["two"]
    # ...and was reached, so the check above means something.  In either crawl, not in
    # each: whether one worker's fetches overlap that much depends on this machine's
    # load (a run of CI saw a peak of 3 of 4 in one crawl).
    assert max(peaks) == MAX_SOCKETS, peaks
    with capsys.disabled():
        print(
            f"\ndistributed crawl, {len(results['one'])} pages over {ORIGINS} origins: "
            f"1 worker {rates['one']:.0f} pages/s, 2 workers {rates['two']:.0f} pages/s "
            f"(x{rates['two'] / rates['one']:.2f})"
        )


def test_a_worker_killed_mid_crawl_loses_no_page(
    redis_url: str, store: Any, site: Site, start_worker: Callable[..., Worker]
) -> None:
    """SIGKILL one of two workers while it holds hundreds of tasks, some mid-fetch:
    late acknowledgement leaves them with the broker, which gives them to the other
    worker once the visibility timeout (8 s here) has passed.  Every page is then
    recorded exactly once; a page fetched twice was fetched first by the killed
    worker; and the results are those of a crawl nobody killed."""
    visibility = "8"
    doomed = start_worker("doomed", CRAWL_VISIBILITY_TIMEOUT=visibility)
    survivor = start_worker("survivor", CRAWL_VISIBILITY_TIMEOUT=visibility)
    doomed.wait_ready()
    survivor.wait_ready()
    site.reset()
    seed(redis_url, "killed", site)
    front = Frontier(store, "killed")
    killed_at: list[dict[str, Any]] = []

    def kill_a_third_of_the_way(progress: dict[str, Any]) -> None:
        if not killed_at and progress["recorded"] >= len(site.expected()) // 3:
            doomed.kill()
            killed_at.append(progress)

    progress = wait_done(front, [doomed, survivor], on_progress=kill_a_third_of_the_way)
    assert killed_at, "the crawl ended before the worker was killed"
    records = check_complete(front, site, store)
    assert set(site.fetches) == site.paths()

    by_doomed = {u for u, by in site.fetches.items() if by.get(doomed.id)}
    again = {u for u, by in site.fetches.items() if sum(by.values()) > 1}
    # Re-delivered: the killed worker had fetched these (or was fetching them), never
    # recorded them, and the survivor fetched them again and recorded them.
    redone = {u for u in by_doomed if records.get(u, {}).get("worker") == survivor.id}
    assert redone, "no task of the killed worker was fetched again by the survivor"
    assert again <= by_doomed, f"fetched twice without a kill: {sorted(again - by_doomed)[:5]}"
    assert all(by.get(survivor.id, 0) <= 1 and by.get(doomed.id, 0) <= 1
               for by in site.fetches.values())
    assert progress["fetches"] >= len(site.expected()) + len(again & site.expected())
    assert {r["worker"] for r in records.values()} == {doomed.id, survivor.id}
    check_connection_limit(site, {doomed.id, survivor.id})
    print(f"killed at {killed_at[0]['recorded']} recorded; {len(redone)} pages re-delivered, "
          f"{len(again)} fetched twice")


def test_threads_and_solo_pools_crawl_too(
    redis_url: str, store: Any, server_cert: Any, start_worker: Callable[..., Worker]
) -> None:
    """The same app under ``-P threads -c 3`` and ``-P solo``, one worker of each on
    one crawl: the pages are recorded once each.  What changes is the pool: a thread
    runs one task at a time with its own Agent (greenhttps's sockets belong to the
    gevent hub of the thread that made them), so a threads worker opens at most one
    connection per origin per thread, and a solo worker one per origin."""
    tls = {
        "key": server_cert.private_key_pem.bytes(),
        "cert": b"".join(blob.bytes() for blob in server_cert.cert_chain_pems),
    }
    small = Site(2, 60, tls, delay_ms=5)
    small.listen()
    try:
        threads = start_worker("threads", pool="threads", concurrency=3)
        solo = start_worker("solo", pool="solo", concurrency=1)
        threads.wait_ready()
        solo.wait_ready()
        seed(redis_url, "pools", small)
        front = Frontier(store, "pools")
        wait_done(front, [threads, solo], timeout=90)
        records = check_complete(front, small, store)
        assert {u: sum(by.values()) for u, by in small.fetches.items()} == dict.fromkeys(small.paths(), 1)
        assert {r["worker"] for r in records.values()} == {threads.id, solo.id}
        peaks = dict(small.peak)
        assert max(n for (_, w), n in peaks.items() if w == solo.id) == 1
        assert max(n for (_, w), n in peaks.items() if w == threads.id) <= 3
    finally:
        small.close()


_PATCHED_AGENT = r"""
from gevent import monkey; monkey.patch_all()   # as Celery's gevent pool does
import random, sys, gevent, gevent.pool, greenhttps
tls = {"key": open(sys.argv[1], "rb").read(), "cert": open(sys.argv[2], "rb").read()}
ca = open(sys.argv[3], "rb").read()
state = {"open": 0, "peak": 0}
def counted(sock):
    state["open"] += 1
    state["peak"] = max(state["peak"], state["open"])
    sock.on("close", lambda *_: state.__setitem__("open", state["open"] - 1))
def handler(req, res):
    gevent.sleep(0.005)
    res.end("x")
server = greenhttps.create_server(tls, handler).listen(0, "127.0.0.1")
server.on("secureConnection", counted)
url = f"https://localhost:{server.address()['port']}/"
agent = greenhttps.Agent(keep_alive=True, max_sockets=2, ca=ca)
def one(i):
    gevent.sleep(random.random() * 2)   # requests arriving as a crawl's do
    greenhttps.fetch(url, agent=agent).content
list(gevent.pool.Pool(500).imap_unordered(one, range(1000)))
print(state["peak"], agent.total_socket_count)
"""


def test_agent_limit_holds_in_a_monkey_patched_process(server_cert_files: dict[str, str], ca_file: str) -> None:
    """Celery's gevent pool monkey-patches the worker.  A pooled connection's liveness
    check used ``select.select``, which, patched, yields to the hub even with a zero
    timeout: between taking a free connection and counting it in use, other
    requests dialed, and the agent held 3 to 5 connections with ``max_sockets=2``
    (found by the crawl tests above; without the fix this went over the limit in 4
    runs of 4, the arrivals spread as here).  The server counts what it sees."""
    proc = gevent.subprocess.run(
        [sys.executable, "-c", _PATCHED_AGENT, server_cert_files["key"], server_cert_files["cert"], ca_file],
        stdout=gevent.subprocess.PIPE, stderr=gevent.subprocess.PIPE, timeout=60,
        env=dict(os.environ, PYTHONPATH=str(helpers.REPO_ROOT)), universal_newlines=True, check=False,
    )
    assert proc.returncode == 0, proc.stderr
    peak, held = map(int, proc.stdout.split())
    assert peak == 2 and held == 2, proc.stdout
