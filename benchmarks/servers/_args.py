"""The command line every Python server script takes: PORT CERT KEY [--body-size N]."""

from __future__ import annotations

import argparse
import resource


def parse(description: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("port", type=int)
    parser.add_argument("cert", help="PEM certificate chain file")
    parser.add_argument("key", help="PEM private key file")
    parser.add_argument("--body-size", type=int, default=12, help="response body size in bytes (default 12)")
    args = parser.parse_args()
    # 12 bytes is exactly b"hello world\n"; other sizes are filler.
    args.body = b"hello world\n" if args.body_size == 12 else b"x" * args.body_size
    # Room for the 2,000-idle-connection test (the runner also raises it with prlimit).
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 65536 if hard == resource.RLIM_INFINITY else hard
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    return args
