"""There are two parsers: llhttp (through httptools, when installed) and h11.  The
main run uses the default one; this module runs the server and client tests again
with the other, so both stay correct against the same cases."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from greenhttps import _server_conn
from greenhttps._parse_h11 import H11Parser

ROOT = Path(__file__).resolve().parent.parent
PARSER_TESTS = [
    "tests/test_server_framing.py",
    "tests/test_server_messages.py",
    "tests/test_server_lifecycle.py",
    "tests/test_server_tls.py",
    "tests/test_hardening.py",
    "tests/test_fuzz.py",
    "tests/test_wsgi.py",
    "tests/test_client.py",
    "tests/test_agent.py",
    "tests/test_client_tls.py",
    "tests/test_hardening_client.py",
    "tests/test_client_error.py",
]


def _has_httptools() -> bool:
    try:
        import httptools  # noqa: F401
    except ImportError:
        return False
    return True


def _chosen(parser: str) -> str:
    code = ("from greenhttps import _dial, _server_conn; "
            "print(_server_conn.SERVER_PARSER.__name__, _dial.CLIENT_PARSER.__name__)")
    env = {**os.environ, "GREENHTTPS_PARSER": parser}
    return subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True,
                          check=True).stdout.strip()


def test_the_parser_is_chosen_as_documented() -> None:
    assert _chosen("h11") == "H11Parser H11Parser"
    assert _chosen("auto") == ("LlhttpParser LlhttpParser" if _has_httptools() else "H11Parser H11Parser")
    if _has_httptools():
        assert _chosen("llhttp") == "LlhttpParser LlhttpParser"


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_server_and_client_tests_pass_with_the_other_parser() -> None:
    other = "h11" if _server_conn.SERVER_PARSER is not H11Parser else "llhttp"
    if other == "llhttp" and not _has_httptools():
        pytest.skip("httptools is not installed: only h11 is available")
    # The same run covers the servers' other TLS transport, OpenSSL on memory BIOs
    # (the I/O layer is independent of the parser).
    env = {**os.environ, "GREENHTTPS_PARSER": other, "GREENHTTPS_TLS_BIO": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *PARSER_TESTS],
        env=env, cwd=ROOT, capture_output=True, text=True, timeout=580,
    )
    assert proc.returncode == 0, (f"GREENHTTPS_PARSER={other} GREENHTTPS_TLS_BIO=1:\n"
                                  f"{proc.stdout[-4000:]}\n{proc.stderr[-2000:]}")


@pytest.mark.parametrize("value, transport", [("", "SSLSocket"), ("1", "BioSSLSocket")])
def test_the_tls_transport_is_chosen_by_environment(value: str, transport: str) -> None:
    """``GREENHTTPS_TLS_BIO=1`` puts servers and clients on memory BIOs."""
    code = (
        "import greenhttps, trustme, ssl\n"
        "ca = trustme.CA(); leaf = ca.issue_cert('localhost')\n"
        "seen = []\n"
        "def handler(req, res):\n"
        "    seen.append(type(req.socket._sock).__name__); res.end(b'ok')\n"
        "server = greenhttps.create_server({'key': leaf.private_key_pem.bytes(),"
        " 'cert': leaf.cert_chain_pems[0].bytes()}, handler)\n"
        "server.listen(0, '127.0.0.1')\n"
        "res = greenhttps.get(f'https://localhost:{server.address()[\"port\"]}/', ca=ca.cert_pem.bytes())\n"
        "client = type(res.socket._sock).__name__\n"
        "assert res.read() == b'ok'\n"
        "print(seen[0], client)\n"
    )
    env = {**os.environ, "GREENHTTPS_TLS_BIO": value}
    proc = subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split() == [transport, transport]
