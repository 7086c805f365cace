"""``server.listen(port, host, reuse_port=True)``: several servers (or processes) share
one port through SO_REUSEPORT and the kernel spreads connections over them."""

from __future__ import annotations

import os
import socket
import sys
import time
from typing import Any, Callable

import gevent
import gevent.subprocess
import pytest

import greenhttps
from helpers import REPO_ROOT, raw_connect, read_response

pytestmark = [
    pytest.mark.timeout(20),
    pytest.mark.skipif(not hasattr(socket, "SO_REUSEPORT"), reason="no SO_REUSEPORT here"),
]


def _tagged(name: str) -> Callable[[Any, Any], None]:
    return lambda req, res: res.end(name)


def _spread(port: int, n: int = 40) -> dict[bytes, int]:
    seen: dict[bytes, int] = {}
    for _ in range(n):
        sock = raw_connect(port, tls=True)
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        body = read_response(sock).body
        sock.close()
        seen[body] = seen.get(body, 0) + 1
    return seen


def test_two_servers_share_a_port(make_server: Callable[..., Any]) -> None:
    a = make_server(_tagged("a"), listen=False).listen(0, "127.0.0.1", reuse_port=True)
    port = a.address()["port"]
    b = make_server(_tagged("b"), listen=False).listen(port, "127.0.0.1", reuse_port=True)
    assert b.address()["port"] == port
    seen = _spread(port)
    assert set(seen) == {b"a", b"b"}, seen  # 40 connections all on one: chance 2**-39
    # Closing one leaves the other serving the port alone.
    a.close()
    gevent.sleep(0.05)
    assert set(_spread(port, 5)) == {b"b"}


def test_options_mapping_spelling(make_server: Callable[..., Any]) -> None:
    a = make_server(listen=False).listen({"port": 0, "host": "127.0.0.1", "reusePort": True})
    port = a.address()["port"]
    b = make_server(listen=False).listen({"port": port, "host": "127.0.0.1", "reuse_port": True})
    assert b.listening


def test_without_reuse_port_the_port_is_in_use(make_server: Callable[..., Any]) -> None:
    a = make_server(listen=False).listen(0, "127.0.0.1", reuse_port=True)
    port = a.address()["port"]
    with pytest.raises(greenhttps.errors.AddressInUseError):
        make_server(listen=False).listen(port, "127.0.0.1")  # every sharer must ask for it
    plain = make_server()  # and a server that did not ask keeps its port to itself
    with pytest.raises(greenhttps.errors.AddressInUseError):
        make_server(listen=False).listen(plain.address()["port"], "127.0.0.1", reuse_port=True)


CHILD = """
import os, sys, greenhttps
opts = {"key": open(sys.argv[1], "rb").read(), "cert": open(sys.argv[2], "rb").read()}
server = greenhttps.create_server(opts, lambda req, res: res.end(str(os.getpid())))
server.listen(int(sys.argv[3]), "127.0.0.1", reuse_port=True)
print("ready", flush=True)
server.serve_forever()
"""


def test_two_processes_share_a_port(server_cert_files: dict[str, str]) -> None:
    """The recipe: one process per core, each listening with reuse_port, no master."""
    # Hold the port (bound with SO_REUSEPORT, never listening, so it gets no
    # connections) while the children bind it: no other program can take it meanwhile.
    holder = socket.socket()
    holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    holder.bind(("127.0.0.1", 0))
    port = holder.getsockname()[1]
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    procs = [
        gevent.subprocess.Popen(
            [sys.executable, "-c", CHILD, server_cert_files["key"], server_cert_files["cert"], str(port)],
            stdout=gevent.subprocess.PIPE, env=env, start_new_session=True,
        )
        for _ in range(2)
    ]
    try:
        for proc in procs:
            assert proc.stdout is not None
            assert proc.stdout.readline().strip() == b"ready"
        deadline = time.monotonic() + 5
        seen: dict[bytes, int] = {}
        while len(seen) < 2 and time.monotonic() < deadline:
            for body, count in _spread(port, 20).items():
                seen[body] = seen.get(body, 0) + count
        assert set(seen) == {str(p.pid).encode() for p in procs}, seen
    finally:
        holder.close()
        for proc in procs:
            proc.kill()
            proc.wait(5)
            if proc.stdout is not None:
                proc.stdout.close()
