"""greenhttps client: one Agent(keep_alive=True) for the pooled modes; agent=False
(full handshake each time) and Agent(keep_alive=False) (cached TLS sessions) for the
new-connection modes.  ``--tls-bio``: TLS on memory BIOs (``GREENHTTPS_TLS_BIO=1``)."""

from __future__ import annotations

import os
import sys

if "--tls-bio" in sys.argv:
    sys.argv.remove("--tls-bio")
    os.environ["GREENHTTPS_TLS_BIO"] = "1"

import _common  # noqa: E402

import greenhttps  # noqa: E402

args = _common.parse()
with open(args.ca, "rb") as f:
    ca = f.read()
if args.mode in ("keepalive", "big"):
    agent = greenhttps.Agent(keep_alive=True)
elif args.mode == "newconn":
    agent = False
else:
    agent = greenhttps.Agent(keep_alive=False)
OPTIONS = {"hostname": "127.0.0.1", "port": args.port, "path": "/", "agent": agent, "ca": ca}


def one() -> int:
    res = greenhttps.get(OPTIONS)
    body = res.read()
    if res.status_code != 200:
        raise RuntimeError(f"status {res.status_code}")
    return len(body)


_common.run_greenlets(args, one)
