"""A pool's idle connections do not keep a script alive (Node unrefs a free socket,
lib/_http_agent.js ``keepSocketAlive``): after its requests are done, a callback-style
script's ``gevent.wait()`` returns although the agent still holds a keep-alive
connection the server has not closed.
"""

from __future__ import annotations

import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import helpers

pytestmark = pytest.mark.timeout(30)

SCRIPT = textwrap.dedent("""
    import sys, time
    import gevent, greenhttps

    port, ca_file, use_agent = int(sys.argv[1]), sys.argv[2], sys.argv[3] == "agent"
    ca = open(ca_file, "rb").read()
    got = []

    def on_response(res):
        res.on("data", got.append)
        res.on("end", lambda: print("status", res.status_code, b"".join(got).decode(), flush=True))

    opts = {"hostname": "localhost", "port": port, "ca": ca}
    if not use_agent:
        opts["agent"] = False
    greenhttps.request(opts, on_response).end()
    started = time.monotonic()
    gevent.wait()
    agent = greenhttps.global_agent
    print("free", sum(map(len, agent.free_sockets.values())), "waited", round(time.monotonic() - started, 2))
""")


@pytest.mark.parametrize("pooled", ["agent", "no-agent"])
def test_gevent_wait_returns_with_idle_pooled_connection(
    make_server: Callable[..., Any], ca_file: str, tmp_path: Path, pooled: str
) -> None:
    srv = make_server(lambda req, res: res.end("hi"), keep_alive_timeout=20_000)
    script = tmp_path / "script.py"
    script.write_text(SCRIPT)
    start = time.monotonic()
    proc = helpers.run_command([sys.executable, str(script), str(srv.address()["port"]), ca_file, pooled],
                               timeout=15, cwd=Path(__file__).resolve().parents[1])
    elapsed = time.monotonic() - start
    out = proc.stdout.decode()
    assert proc.returncode == 0, proc.stderr.decode()
    assert "status 200 hi" in out
    # The server keeps the connection for 20 s; the agent keeps it too (the pooled
    # case ends with one free socket), and the script still ends at once.
    assert ("free 1" if pooled == "agent" else "free 0") in out, out
    assert elapsed < 8, out
