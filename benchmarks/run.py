#!/usr/bin/env python3
"""greenhttps against its peers, side by side, in one run.

    python3 benchmarks/run.py [--quick] [--runs 3] [--only server|client] [--json FILE]

Creates (or reuses) ``benchmarks/.venv`` with the peers, makes an ECDSA P-256
certificate in a temporary directory, then runs every available server and client
through the same load generators with the server pinned to core 0 and the load
generator to core 1 (``taskset``), on 127.0.0.1 only, and prints the medians of
``--runs`` runs plus the ratios greenhttps/peer.  See benchmarks/README.md for what
each number means.  Every child process is killed on exit, error or Ctrl-C.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
VENV = HERE / ".venv"
VENV_PY = VENV / "bin" / "python"
INSTALL_LOG = VENV / "bench-install.json"
#: Installed one by one so that one failure only skips the peers that need it.
PACKAGES = ["gevent", "h11", "certifi", "cryptography", "uvicorn", "httptools", "aiohttp",
            "geventhttpclient", "requests", "urllib3",
            # ISA-L's inflate: greenhttps's decode extra, and aiohttp's zlib backend in
            # the crawl's "aiohttp (isal)" row (crawl_bench.py).
            "isal"]
SERVER_CORE, LOAD_CORE = "0", "1"
BIG = 1024 * 1024
NOFILE = 65536


# ---------------------------------------------------------------- the virtualenv


def bootstrap(argv: list[str], script: str = __file__) -> None:
    """Make sure we run inside benchmarks/.venv with the peers installed; re-exec ``script``."""
    if os.environ.get("GREENHTTPS_BENCH_VENV") == "1":
        return
    reinstall = "--reinstall" in argv
    if not VENV_PY.exists():
        print(f"creating {VENV} ...", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    done: dict[str, str] = json.loads(INSTALL_LOG.read_text()) if INSTALL_LOG.exists() else {}
    for pkg in PACKAGES:
        if done.get(pkg) == "ok" or (pkg in done and not reinstall):
            continue
        print(f"pip install {pkg} ...", flush=True)
        proc = subprocess.run([str(VENV_PY), "-m", "pip", "install", "-q", pkg],
                              capture_output=True, text=True)
        done[pkg] = "ok" if proc.returncode == 0 else (proc.stderr.strip().splitlines() or ["failed"])[-1]
        INSTALL_LOG.write_text(json.dumps(done, indent=1))
    env = dict(os.environ, GREENHTTPS_BENCH_VENV="1")
    os.execve(str(VENV_PY), [str(VENV_PY), str(Path(script).resolve()), *argv], env)


# ---------------------------------------------------------------- child processes

CHILDREN: list[subprocess.Popen[Any]] = []


def _raise_nofile() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = NOFILE if hard == resource.RLIM_INFINITY else max(soft, min(NOFILE, hard))
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    except (ValueError, OSError):
        pass


def child_env(repo: Path = REPO, extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {**os.environ, **(extra or {})}
    # greenhttps straight from the work tree (or another checkout), without installing it.
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(repo), env.get("PYTHONPATH", "")) if p)
    env.pop("GREENHTTPS_BENCH_VENV", None)
    return env


def spawn(cmd: list[str], core: str, repo: Path = REPO, extra_env: dict[str, str] | None = None,
          **kw: Any) -> subprocess.Popen[Any]:
    """Start ``cmd`` pinned to ``core`` in its own process group, with a high fd limit,
    importing greenhttps from ``repo``, with ``extra_env`` added to the environment.

    ``taskset`` execs the command, so the Popen pid is the measured process itself.
    """
    proc = subprocess.Popen(["taskset", "-c", core, *cmd], start_new_session=True, preexec_fn=_raise_nofile,
                            env=child_env(repo, extra_env), **kw)
    CHILDREN.append(proc)
    return proc


def stop(proc: subprocess.Popen[Any]) -> None:
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            proc.wait(3)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()
    for stream in (proc.stdin, proc.stdout, proc.stderr):
        if stream:
            stream.close()
    if proc in CHILDREN:
        CHILDREN.remove(proc)


def stop_all() -> None:
    for proc in list(CHILDREN):
        stop(proc)


def run_pinned(cmd: list[str], timeout: float, repo: Path = REPO) -> str:
    """Run a load generator on the load core; return its stdout (raise on failure)."""
    proc = spawn(cmd, LOAD_CORE, repo, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"timed out after {timeout:.0f} s: {' '.join(cmd)}") from None
    finally:
        stop(proc)
    if proc.returncode != 0:
        raise RuntimeError(f"exit {proc.returncode}: {' '.join(cmd)}\n{err.strip()[-1500:]}")
    return out


def last_json(out: str) -> dict[str, Any]:
    for line in reversed(out.strip().splitlines()):
        if line.startswith("{"):
            return json.loads(line)  # type: ignore[no-any-return]
    raise RuntimeError(f"no JSON result in output: {out[-500:]!r}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    """utime + stime of the whole process (all threads), from /proc/PID/stat."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def established(port: int) -> int:
    """TCP connections in ESTABLISHED state whose local port is ``port`` (server side)."""
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                next(f)
                for line in f:
                    parts = line.split()
                    if int(parts[1].rsplit(":", 1)[1], 16) == port and parts[3] == "01":
                        count += 1
        except FileNotFoundError:
            pass
    return count


# ---------------------------------------------------------------- certificates


def make_certs(directory: Path) -> dict[str, str]:
    """A throwaway CA and an ECDSA P-256 leaf for 127.0.0.1/localhost."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "greenhttps bench CA")])
    ca_cert = (
        x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
                                     key_encipherment=False, data_encipherment=False, key_agreement=False,
                                     encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                    x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    paths = {"ca": directory / "ca.pem", "cert": directory / "cert.pem", "key": directory / "key.pem"}
    paths["ca"].write_bytes(ca_cert.public_bytes(pem))
    paths["cert"].write_bytes(cert.public_bytes(pem))  # the leaf alone: clients trust the CA
    paths["key"].write_bytes(key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return {k: str(v) for k, v in paths.items()}


# ---------------------------------------------------------------- peers

PY = str(VENV_PY)
S = HERE / "servers"
C = HERE / "clients"

#: name -> (command prefix, python import check or None for node)
SERVERS: dict[str, tuple[list[str], str | None]] = {
    "greenhttps": ([PY, str(S / "greenhttps_server.py")], "import greenhttps"),
    "greenhttps tls-bio": ([PY, str(S / "greenhttps_server.py"), "--tls-bio"], "import greenhttps"),
    "gevent+h11 loop": ([PY, str(S / "h11_gevent_server.py")], "import gevent, h11"),
    "pywsgi": ([PY, str(S / "pywsgi_server.py")], "import gevent.pywsgi"),
    "pywsgi+NODELAY": ([PY, str(S / "pywsgi_server.py"), "--nodelay"], "import gevent.pywsgi"),
    "uvicorn+httptools": ([PY, str(S / "uvicorn_server.py")], "import uvicorn, httptools"),
    "aiohttp": ([PY, str(S / "aiohttp_server.py")], "import aiohttp"),
    "node https": (["node", str(S / "node_server.js")], None),
}
CLIENTS: dict[str, tuple[list[str], str | None]] = {
    "greenhttps": ([PY, str(C / "greenhttps_client.py")], "import greenhttps"),
    "greenhttps tls-bio": ([PY, str(C / "greenhttps_client.py"), "--tls-bio"], "import greenhttps"),
    "geventhttpclient": ([PY, str(C / "geventhttpclient_client.py")], "import geventhttpclient"),
    "aiohttp": ([PY, str(C / "aiohttp_client.py")], "import aiohttp"),
    "urllib3+monkey": ([PY, str(C / "urllib3_client.py")], "import gevent, urllib3"),
    "requests+monkey": ([PY, str(C / "requests_client.py")], "import gevent, requests"),
    "node https": (["node", str(C / "node_client.js")], None),
}


def available(table: dict[str, tuple[list[str], str | None]]) -> tuple[list[str], dict[str, str]]:
    ok, skipped = [], {}
    for name, (_cmd, check) in table.items():
        if check is None:
            if shutil.which("node"):
                ok.append(name)
            else:
                skipped[name] = "node not found"
            continue
        proc = subprocess.run([PY, "-c", check], capture_output=True, text=True, env=child_env())
        if proc.returncode == 0:
            ok.append(name)
        else:
            skipped[name] = (proc.stderr.strip().splitlines() or ["import failed"])[-1]
    return ok, skipped


# ---------------------------------------------------------------- servers


class ServerProc:
    """One server process pinned to the server core, ready when it accepts TLS."""

    def __init__(self, name: str, certs: dict[str, str], body_size: int, logdir: Path, repo: Path = REPO,
                 extra_env: dict[str, str] | None = None) -> None:
        self.name = name
        self.port = free_port()
        cmd = [*SERVERS[name][0], str(self.port), certs["cert"], certs["key"], "--body-size", str(body_size)]
        self.log = logdir / f"server-{re.sub(r'[^a-z0-9]+', '_', name.lower())}-{self.port}.log"
        self._logf = open(self.log, "w")
        self.proc = spawn(cmd, SERVER_CORE, repo, extra_env, stdout=self._logf, stderr=subprocess.STDOUT)
        self.pid = self.proc.pid
        self._wait_ready()

    def _wait_ready(self, timeout: float = 20.0) -> None:
        import ssl

        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} server exited {self.proc.returncode}:\n{self.tail()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=2) as raw:
                    with ctx.wrap_socket(raw) as tls:
                        tls.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
                        head = tls.recv(100)
                        if head.startswith(b"HTTP/1.1 200"):
                            return
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"{self.name} server not ready after {timeout} s:\n{self.tail()}")

    def tail(self) -> str:
        self._logf.flush()
        return self.log.read_text()[-2000:]

    def close(self) -> None:
        stop(self.proc)
        self._logf.close()


WRK_LUA = """
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('{"requests": %d, "bytes": %d, "duration_us": %d, "errors": %d, "p50_us": %d, "p99_us": %d}\\n',
    summary.requests, summary.bytes, summary.duration, e.connect + e.read + e.write + e.status + e.timeout,
    latency:percentile(50), latency:percentile(99)))
end
"""


def wrk(port: int, connections: int, seconds: float, lua: str) -> dict[str, Any]:
    out = run_pinned(["wrk", "-t1", f"-c{connections}", f"-d{seconds:g}s", "--latency", "-s", lua,
                      f"https://127.0.0.1:{port}/"], timeout=seconds + 30)
    return last_json(out)


def measure_server(name: str, certs: dict[str, str], cfg: argparse.Namespace, logdir: Path) -> dict[str, float]:
    result: dict[str, float] = {}
    srv = ServerProc(name, certs, 12, logdir)
    try:
        # 1. Idle TLS connections on a fresh process (memory not yet reused from earlier work).
        gen = spawn([PY, str(HERE / "loadgen" / "idle.py"), str(srv.port), "--n", str(cfg.idle)], LOAD_CORE,
                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            _expect(gen, "ready", 30)
            time.sleep(0.3)
            before = rss_kib(srv.pid)
            gen.stdin.write("go\n")  # type: ignore[union-attr]
            gen.stdin.flush()  # type: ignore[union-attr]
            opened = json.loads(_expect(gen, "{", 120))
            time.sleep(1.0)  # let the server finish its side of the last handshakes
            after = rss_kib(srv.pid)
            held = established(srv.port)
            gen.stdin.write("close\n")  # type: ignore[union-attr]
            gen.stdin.flush()  # type: ignore[union-attr]
        finally:
            stop(gen)
        if held < cfg.idle * 0.95:
            print(f"    ! {name}: only {held} of {cfg.idle} idle connections open when measured "
                  f"(client opened {opened['open']}, failed {opened['failed']})", flush=True)
        result["idle_kib"] = (after - before) / max(held, 1)
        time.sleep(0.5)

        # 2. Full handshakes, one request each: server CPU per connection.
        gen = spawn([PY, str(HERE / "loadgen" / "handshakes.py"), str(srv.port), "--n", str(cfg.handshakes),
                     "--concurrency", "8", "--warmup", "50"], LOAD_CORE,
                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            _expect(gen, "ready", 60)
            time.sleep(0.2)
            cpu0 = cpu_seconds(srv.pid)
            gen.stdin.write("go\n")  # type: ignore[union-attr]
            gen.stdin.flush()  # type: ignore[union-attr]
            hs = json.loads(_expect(gen, "{", 300))
            time.sleep(0.2)
            cpu1 = cpu_seconds(srv.pid)
        finally:
            stop(gen)
        if hs["reused"] or hs["errors"]:
            print(f"    ! {name}: handshakes reused={hs['reused']} errors={hs['errors']}", flush=True)
        result["hs_cpu_us"] = (cpu1 - cpu0) / hs["connections"] * 1e6
        result["hs_rate"] = hs["connections"] / hs["seconds"]

        # 3. Keep-alive, 12-byte body.
        if cfg.warmup_s:
            wrk(srv.port, 50, cfg.warmup_s, cfg.lua)
        w = wrk(srv.port, 50, cfg.duration, cfg.lua)
        _check_wrk(name, "keep-alive", w)
        result["ka_rps"] = w["requests"] / (w["duration_us"] / 1e6)
        result["ka_p99_ms"] = w["p99_us"] / 1000
        result["ka_p50_ms"] = w["p50_us"] / 1000
    finally:
        srv.close()

    # 4. 1 MiB bodies, 4 connections.
    srv = ServerProc(name, certs, BIG, logdir)
    try:
        if cfg.warmup_s:
            wrk(srv.port, 4, cfg.warmup_s, cfg.lua)
        w = wrk(srv.port, 4, cfg.duration, cfg.lua)
        _check_wrk(name, "1 MiB", w)
        result["big_mibs"] = w["bytes"] / (w["duration_us"] / 1e6) / 2**20
    finally:
        srv.close()
    return result


def _check_wrk(name: str, what: str, w: dict[str, Any]) -> None:
    if w["errors"]:
        print(f"    ! {name} {what}: wrk counted {w['errors']} errors in {w['requests']} requests", flush=True)


def _expect(proc: subprocess.Popen[Any], prefix: str, timeout: float) -> str:
    """Read stdout lines of ``proc`` until one starts with ``prefix``."""
    import select

    deadline = time.monotonic() + timeout
    assert proc.stdout is not None
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise RuntimeError(f"no {prefix!r} from {proc.args} within {timeout} s")
        ready, _, _ = select.select([proc.stdout], [], [], left)
        if ready:
            line = proc.stdout.readline()
            if not line:
                err = proc.stderr.read() if proc.stderr else ""
                raise RuntimeError(f"{proc.args} ended early: {err[-1500:]}")
            if line.startswith(prefix):
                return line


# ---------------------------------------------------------------- clients


def node_stats(port: int) -> dict[str, int] | None:
    import ssl

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, ctx.wrap_socket(raw) as tls:
        tls.sendall(b"GET /__stats HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := tls.recv(65536):
            data += chunk
    body = data.split(b"\r\n\r\n", 1)[1]
    return json.loads(body)  # type: ignore[no-any-return]


def measure_client(name: str, small: ServerProc, big: ServerProc, certs: dict[str, str],
                   cfg: argparse.Namespace) -> dict[str, float]:
    result: dict[str, float] = {}
    cmd = CLIENTS[name][0]
    plan = [
        ("ka_rps", "keepalive", small, cfg.client_n, 50, 200),
        ("big_mibs", "big", big, cfg.client_big_n, 8, 16),
        ("new_rps", "newconn", small, cfg.client_new_n, 8, 20),
        ("resume_rps", "newconn-resume", small, cfg.client_new_n, 8, 20),
    ]
    for key, mode, srv, n, conc, warm in plan:
        before = node_stats(srv.port) if srv.name == "node https" and mode.startswith("newconn") else None
        try:
            out = run_pinned([*cmd, mode, str(srv.port), certs["ca"], "--n", str(n), "--concurrency", str(conc),
                              "--warmup", str(warm)], timeout=180)
        except RuntimeError as exc:
            print(f"    ! {name} {mode}: {exc}", flush=True)
            continue
        r = last_json(out)
        if "skip" in r:
            continue
        if key == "big_mibs":
            result[key] = r["bytes"] / r["seconds"] / 2**20
        else:
            result[key] = r["requests"] / r["seconds"]
        if before is not None:
            after = node_stats(srv.port)
            assert after is not None
            conns = after["connections"] - before["connections"] - 1  # minus the stats request itself
            resumed = after["resumed"] - before["resumed"]
            result[f"{key}_resumed_pct"] = 100.0 * resumed / max(conns, 1)
    return result


# ---------------------------------------------------------------- report


def median(values: list[float]) -> float:
    return statistics.median(values)


def fmt(value: float | None) -> str:
    if value is None:
        return "—"
    if value >= 1000:
        return f"{value:,.0f}"
    if value >= 100:
        return f"{value:.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def table(title: str, rows: list[str], cols: list[tuple[str, str]], data: dict[str, dict[str, list[float]]],
          extra: Callable[[str, str], str] | None = None) -> str:
    lines = [f"### {title}", "", "| " + " | ".join(["", *(c[1] for c in cols)]) + " |",
             "|" + "---|" * (len(cols) + 1)]
    for row in rows:
        cells = [row]
        for key, _label in cols:
            vals = data.get(row, {}).get(key)
            cell = fmt(median(vals)) if vals else "—"
            if vals and extra:
                cell += extra(row, key)
            cells.append(cell)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def ratio_table(title: str, rows: list[str], cols: list[tuple[str, str]], data: dict[str, dict[str, list[float]]]) -> str:
    mine = data.get("greenhttps", {})
    lines = [f"### {title}", "", "| " + " | ".join(["greenhttps / peer", *(c[1] for c in cols)]) + " |",
             "|" + "---|" * (len(cols) + 1)]
    for row in rows:
        if row == "greenhttps":
            continue
        cells = [row]
        for key, _label in cols:
            a, b = mine.get(key), data.get(row, {}).get(key)
            cells.append(f"{median(a) / median(b):.2f}×" if a and b and median(b) else "—")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def package_version(name: str) -> str:
    """An installed distribution's version, or 'not installed'."""
    from importlib.metadata import version

    try:
        return version(name)
    except Exception:
        return "not installed"


def header() -> str:
    import ssl

    version = package_version
    model = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass

    def cmd_version(cmd: list[str]) -> str:
        try:
            return subprocess.run(cmd, capture_output=True, text=True, timeout=10).stdout.strip().splitlines()[0]
        except Exception:
            return "not found"

    rev = cmd_version(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"])
    dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "greenhttps"],
                           capture_output=True, text=True).stdout.strip()
    lines = [
        f"hardware: {os.cpu_count()} CPUs (nproc {cmd_version(['nproc'])}), {model}; kernel {platform.release()}",
        f"python {platform.python_version()}  gevent {version('gevent')}  h11 {version('h11')}  {ssl.OPENSSL_VERSION}",
        f"greenhttps {rev}{' + uncommitted changes' if dirty else ''} (from {REPO})",
        f"peers: uvicorn {version('uvicorn')}, httptools {version('httptools')}, aiohttp {version('aiohttp')}, "
        f"geventhttpclient {version('geventhttpclient')}, requests {version('requests')}, urllib3 {version('urllib3')}, "
        f"node {cmd_version(['node', '--version'])}",
        f"load generators: {cmd_version(['wrk', '-v']).split(' Copyright')[0]}; benchmarks/loadgen/*.py (gevent + ssl)",
        f"load average at start: {open('/proc/loadavg').read().split(' ', 3)[:3]} (other work on these 2 cores adds noise)",
        f"pinning: servers on core {SERVER_CORE}, load generators and clients on core {LOAD_CORE} (taskset); loopback only",
    ]
    return "\n".join(lines)


SERVER_COLS = [
    ("ka_rps", "keep-alive req/s ↑"),
    ("ka_p50_ms", "p50 ms ↓"),
    ("ka_p99_ms", "p99 ms ↓"),
    ("big_mibs", "1 MiB MiB/s ↑"),
    ("hs_cpu_us", "CPU µs/handshake ↓"),
    ("hs_rate", "handshakes/s (client-bound) ↑"),
    ("idle_kib", "KiB/idle TLS conn ↓"),
]
CLIENT_COLS = [
    ("ka_rps", "keep-alive req/s ↑"),
    ("big_mibs", "1 MiB MiB/s ↑"),
    ("new_rps", "new conn req/s, full handshake ↑"),
    ("resume_rps", "new conn req/s, resumed ↑"),
]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="1 run, short durations (~2 minutes)")
    parser.add_argument("--runs", type=int, help="runs per measurement; medians are reported (default 3, --quick 1)")
    parser.add_argument("--only", choices=["server", "client"], help="only the server or only the client part")
    parser.add_argument("--json", metavar="FILE", help="also write every run's raw numbers to FILE")
    parser.add_argument("--peers", metavar="A,B", help="only the servers/clients whose names contain one of these "
                        "(greenhttps is always included), e.g. --peers node,h11")
    parser.add_argument("--reinstall", action="store_true", help="retry peers that failed to install")
    cfg = parser.parse_args()
    quick = cfg.quick
    cfg.runs = cfg.runs or (1 if quick else 3)
    cfg.duration = 2 if quick else 5
    cfg.warmup_s = 0 if quick else 1
    cfg.handshakes = 400 if quick else 1500
    cfg.idle = 2000
    cfg.client_n = 2000 if quick else 5000
    cfg.client_big_n = 96 if quick else 320
    cfg.client_new_n = 300 if quick else 1000

    for tool in ("taskset", "wrk"):
        if not shutil.which(tool):
            print(f"{tool} is required (apt-get install {'util-linux' if tool == 'taskset' else tool})")
            return 2
    if (os.cpu_count() or 1) < 2:
        print("needs at least 2 CPUs (server on core 0, load generator on core 1)")
        return 2

    print(header(), flush=True)
    installs = json.loads(INSTALL_LOG.read_text()) if INSTALL_LOG.exists() else {}
    for pkg, status in installs.items():
        if status != "ok":
            print(f"skipped: pip install {pkg} failed: {status}")
    servers, s_skip = available(SERVERS)
    clients, c_skip = available(CLIENTS)
    for name, why in {**{f"server {k}": v for k, v in s_skip.items()},
                      **{f"client {k}": v for k, v in c_skip.items()}}.items():
        print(f"skipped: {name}: {why}")
    client_server = "node https" if "node https" in servers else "greenhttps"  # before --peers filters
    if cfg.peers:
        wanted = [w.strip().lower() for w in cfg.peers.split(",") if w.strip()]
        keep = lambda name: name == "greenhttps" or any(w in name.lower() for w in wanted)  # noqa: E731
        servers = [s for s in servers if keep(s)]
        clients = [c for c in clients if keep(c)]
    if "greenhttps" not in servers:
        print("greenhttps does not import; nothing to compare")
        return 1
    print(f"runs: {cfg.runs}{' (quick)' if quick else ''}; wrk {cfg.duration}s"
          f"{f' after a {cfg.warmup_s}s warm-up' if cfg.warmup_s else ''}; {cfg.handshakes} full handshakes; "
          f"{cfg.idle} idle connections; client N={cfg.client_n} (C=50), 1 MiB N={cfg.client_big_n} (C=8), "
          f"new connections N={cfg.client_new_n} (C=8) against the {client_server} server", flush=True)

    tmp = Path(tempfile.mkdtemp(prefix="greenhttps-bench-"))
    certs = make_certs(tmp)
    cfg.lua = str(tmp / "report.lua")
    Path(cfg.lua).write_text(WRK_LUA)
    sdata: dict[str, dict[str, list[float]]] = {}
    cdata: dict[str, dict[str, list[float]]] = {}
    raw: dict[str, Any] = {"server": [], "client": []}
    started = time.monotonic()
    failed = False
    try:
        for run in range(1, cfg.runs + 1):
            if cfg.only != "client":
                for name in servers:
                    print(f"[run {run}/{cfg.runs} {time.monotonic() - started:5.0f}s] server {name} ...", flush=True)
                    try:
                        r = measure_server(name, certs, cfg, tmp)
                    except RuntimeError as exc:
                        print(f"    ! {name}: {exc}", flush=True)
                        failed = True
                        continue
                    print("    " + "  ".join(f"{k}={fmt(v)}" for k, v in r.items()), flush=True)
                    raw["server"].append({"run": run, "server": name, **r})
                    for k, v in r.items():
                        sdata.setdefault(name, {}).setdefault(k, []).append(v)
            if cfg.only != "server":
                small = ServerProc(client_server, certs, 12, tmp)
                big = ServerProc(client_server, certs, BIG, tmp)
                try:
                    for name in clients:
                        print(f"[run {run}/{cfg.runs} {time.monotonic() - started:5.0f}s] client {name} ...", flush=True)
                        r = measure_client(name, small, big, certs, cfg)
                        print("    " + "  ".join(f"{k}={fmt(v)}" for k, v in r.items()), flush=True)
                        raw["client"].append({"run": run, "client": name, **r})
                        for k, v in r.items():
                            cdata.setdefault(name, {}).setdefault(k, []).append(v)
                finally:
                    small.close()
                    big.close()
    finally:
        stop_all()
        shutil.rmtree(tmp, ignore_errors=True)

    print()
    print(f"Medians of {cfg.runs} run(s); elapsed {time.monotonic() - started:.0f} s; load average at end "
          f"{open('/proc/loadavg').read().split(' ', 3)[:3]}. ↑ higher is better, ↓ lower is better.")
    print()
    if sdata:
        print(table(f"Servers (one core each; wrk -t1 -c50 -d{cfg.duration}s for keep-alive, -c4 for 1 MiB)",
                    [s for s in servers if s in sdata], SERVER_COLS, sdata))
        print()
        print(ratio_table("Server ratios, greenhttps / peer (> 1 is better for ↑ columns, < 1 for ↓)",
                          [s for s in servers if s in sdata], SERVER_COLS, sdata))
        print()
    if cdata:

        def resumed(row: str, key: str) -> str:
            pct = cdata.get(row, {}).get(f"{key}_resumed_pct")
            return f" ({median(pct):.0f}% resumed)" if pct and key.startswith(("new", "resume")) else ""

        print(table(f"Clients (against the {client_server} server; 50 concurrent for keep-alive, 8 for 1 MiB "
                    "and new connections)", [c for c in clients if c in cdata], CLIENT_COLS, cdata,
                    resumed if client_server == "node https" else None))
        print()
        print(ratio_table("Client ratios, greenhttps / peer (> 1 is better)", [c for c in clients if c in cdata],
                          CLIENT_COLS, cdata))
        print()
    if cfg.json:
        Path(cfg.json).write_text(json.dumps({"header": header(), "runs": cfg.runs, "quick": quick, **raw}, indent=1))
        print(f"raw numbers written to {cfg.json}")
    return 1 if failed else 0


def _on_signal(signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


if __name__ == "__main__":
    bootstrap(sys.argv[1:])
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even if started with SIGINT ignored
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGHUP, _on_signal)
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        stop_all()
        print("\ninterrupted; all child processes stopped", file=sys.stderr)
        sys.exit(130)
    finally:
        stop_all()
