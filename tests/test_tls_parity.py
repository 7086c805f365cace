"""TLS behaviours of issue 17 (Node parity), each compared with Node 20 where it is
observable: the verify code follows the chain the peer sent (B-105), ``crl`` (B-103),
a server without a TLS identity and keys given as ``{pem, passphrase}`` (B-4, B-5),
TLS facts that outlive the socket, hostname checks against Node's own vectors.

Real TLS over 127.0.0.1 with trustme certificates.  The Node side is a small script
run with ``node`` (a client fetching from our peer, or a server our client fetches
from); each test names the Node test file it mirrors.
"""

from __future__ import annotations

import json
import ssl
from typing import Any

import pytest
import trustme
from client_support import (  # noqa: F401  (the *_fixture names register pytest fixtures)
    OK_CLOSE,
    clean_global_agents_fixture,
    read_request,
    serve_fixture,
)

import greenhttps
import helpers
from greenhttps import errors

pytestmark = pytest.mark.timeout(30)


# ------------------------------------------------------------------ helpers


def pem(leaf: trustme.LeafCert, *, chain: bool = True) -> dict[str, bytes]:
    """key/cert PEMs of ``leaf``; ``chain=False`` sends the leaf alone."""
    blobs = leaf.cert_chain_pems if chain else leaf.cert_chain_pems[:1]
    return {"key": leaf.private_key_pem.bytes(), "cert": b"".join(b.bytes() for b in blobs)}


def stdlib_server_context(material: dict[str, bytes]) -> ssl.SSLContext:
    """A stdlib server context presenting ``material`` (key/cert PEMs)."""
    from greenhttps import _tls

    ctx = _tls.create_server_context(**material)
    return _tls.stdlib_context(ctx)


def ok_server(script_server: Any, material: dict[str, bytes]) -> int:
    """A stdlib TLS server presenting ``material`` that answers each request "ok"."""

    def handler(sock: Any) -> None:
        if read_request(sock) is not None:
            sock.sendall(OK_CLOSE)

    port: int = script_server(handler, tls=True, ssl_context=stdlib_server_context(material))
    return port


_NODE_GET = r"""
const https = require('https');
const opts = JSON.parse(process.argv[process.argv.length - 1]);
const req = https.get({agent: false, ...opts}, (res) => {
  const s = res.socket;
  res.resume();
  res.on('end', () => console.log(JSON.stringify({
    status: res.statusCode, authorized: s.authorized,
    authorizationError: s.authorizationError === undefined ? null : s.authorizationError})));
});
req.on('error', (e) => console.log(JSON.stringify({error: e.code || String(e)})));
"""


def node_get(**opts: Any) -> dict[str, Any]:
    """Node 20's ``https.get(opts)``: ``{'error': code}`` or ``{'status', 'authorized',
    'authorizationError'}``.  Byte values (PEM) are passed as text."""
    args = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in opts.items()}
    out = helpers.run_command(["node", "-e", _NODE_GET, json.dumps(args)], timeout=20)
    assert out.returncode == 0, out.stderr.decode()
    result: dict[str, Any] = json.loads(out.stdout.decode().strip().splitlines()[-1])
    return result


def ours_get(port: int, **opts: Any) -> dict[str, Any]:
    """greenhttps's answer in ``node_get``'s shape."""
    try:
        res = greenhttps.get(f"https://localhost:{port}/", agent=False, **opts)
    except errors.Error as exc:
        return {"error": exc.code}
    res.read()
    return {"status": res.status_code, "authorized": res.socket.authorized,
            "authorizationError": res.socket.authorization_error}


# ============================================ B-105: the verify code follows the chain


@pytest.fixture(scope="module")
def unknown_root() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def intermediate(unknown_root: trustme.CA) -> trustme.CA:
    return unknown_root.create_child_ca()


@pytest.mark.needs_node
@pytest.mark.parametrize("reject", [True, False])
@pytest.mark.parametrize(
    ("sent", "code"),
    [
        ("root_leaf", "UNABLE_TO_VERIFY_LEAF_SIGNATURE"),  # a lone leaf from an unknown CA
        ("leaf_and_intermediate", "UNABLE_TO_GET_ISSUER_CERT_LOCALLY"),  # root unknown
        ("leaf_without_its_intermediate", "UNABLE_TO_VERIFY_LEAF_SIGNATURE"),
    ],
)
def test_verify_code_follows_the_chain_sent(
    script_server: Any, ca_pem: bytes, unknown_root: trustme.CA, intermediate: trustme.CA,
    sent: str, code: str, reject: bool,
) -> None:
    """B-105: the code names what the peer's chain lacks, with ``reject_unauthorized``
    true (the error) or false (``authorization_error``), as Node reports it.

    Mirrors test/parallel/test-https-strict.js and test-https-pfx.js (error naming)
    and test/parallel/test-tls-server-verify.js; Node is asked on the same server.
    """
    material = {
        "root_leaf": pem(unknown_root.issue_cert("localhost")),
        "leaf_and_intermediate": pem(intermediate.issue_cert("localhost")),
        "leaf_without_its_intermediate": pem(intermediate.issue_cert("localhost"), chain=False),
    }[sent]
    port = ok_server(script_server, material)
    ours = ours_get(port, ca=ca_pem, reject_unauthorized=reject)
    node = node_get(host="127.0.0.1", servername="localhost", port=port, ca=ca_pem, rejectUnauthorized=reject)
    expected = ({"error": code} if reject
                else {"status": 200, "authorized": False, "authorizationError": code})
    assert ours == expected
    assert node == expected


def test_verify_code_of_the_error_is_openssls_for_that_code(
    script_server: Any, ca_pem: bytes, unknown_root: trustme.CA, intermediate: trustme.CA,
) -> None:
    """The error's ``verify_code``/``verify_message`` agree with its ``code`` (B-105's
    numbers: 21 is "unable to verify the first certificate", 20 "unable to get local
    issuer certificate").  Mirrors test/parallel/test-https-strict.js."""
    lone = ok_server(script_server, pem(unknown_root.issue_cert("localhost")))
    chained = ok_server(script_server, pem(intermediate.issue_cert("localhost")))
    with pytest.raises(errors.CertificateError) as one:
        greenhttps.get(f"https://localhost:{lone}/", ca=ca_pem, agent=False)
    with pytest.raises(errors.CertificateError) as two:
        greenhttps.get(f"https://localhost:{chained}/", ca=ca_pem, agent=False)
    assert (one.value.verify_code, one.value.verify_message) == (21, "unable to verify the first certificate")
    assert (two.value.verify_code, two.value.verify_message) == (20, "unable to get local issuer certificate")
    # negative control: trusting the unknown root makes both verify
    roots = [ca_pem, unknown_root.cert_pem.bytes()]
    assert greenhttps.get(f"https://localhost:{lone}/", ca=roots, agent=False).read() == b"ok"
    assert greenhttps.get(f"https://localhost:{chained}/", ca=roots, agent=False).read() == b"ok"


@pytest.mark.parametrize("chain", [False, True])
def test_server_names_a_failed_client_certificate(
    make_server: Any, ca_pem: bytes, intermediate: trustme.CA, chain: bool,
) -> None:
    """A client certificate from an unknown CA fails the handshake ('tlsClientError')
    with UNABLE_TO_VERIFY_LEAF_SIGNATURE, whatever chain it came with: OpenSSL keeps
    no chain that failed on a server, so the lone leaf (the usual client certificate)
    is assumed.  Node gives that code as ``authorizationError`` with
    ``rejectUnauthorized`` false, and a bare ECONNRESET as 'tlsClientError' with true.
    Mirrors test/parallel/test-tls-server-verify.js."""
    failures: list[BaseException] = []
    server = make_server(request_cert=True, ca=ca_pem)
    server.on("tlsClientError", lambda err, sock: failures.append(err))
    client = pem(intermediate.issue_cert("client"), chain=chain)
    with pytest.raises(errors.Error):
        greenhttps.get(f"https://localhost:{server.address()['port']}/", ca=ca_pem, agent=False, **client)
    helpers.settle(0.2)
    assert [getattr(e, "code", None) for e in failures] == ["UNABLE_TO_VERIFY_LEAF_SIGNATURE"]


# ======================================== TLS facts stay readable after the close


def _facts(sock: Any) -> dict[str, Any]:
    cert = sock.get_peer_certificate()
    return {
        "alpn_protocol": sock.alpn_protocol, "authorized": sock.authorized,
        "authorization_error": sock.authorization_error, "protocol": sock.get_protocol(),
        "cipher": sock.get_cipher(), "session_reused": sock.session_reused,
        "peer_cn": [v for rdn in cert.get("subject", ()) for k, v in rdn if k == "commonName"],
        "peer_sans": cert.get("subjectAltName"),
    }


@pytest.mark.parametrize("bio", [False, True], ids=["gevent-ssl", "memory-bio"])
def test_tls_facts_outlive_the_socket(make_server: Any, ca: trustme.CA, ca_pem: bytes,
                                      monkeypatch: pytest.MonkeyPatch, bio: bool) -> None:
    """``alpn_protocol``, ``authorized``, ``authorization_error``,
    ``get_peer_certificate()``, ``get_protocol()``, ``get_cipher()`` and
    ``session_reused`` read the same after the socket closed as during the exchange,
    on the server's ``req.socket`` and on the client's ``res.socket`` (before this,
    the certificate raised AttributeError and the rest went None).

    The facts mirror test/parallel/test-tls-getprotocol.js, test-tls-getcipher.js,
    test-https-foafssl.js and test-https-client-resume.js.  Node 20 itself keeps
    ``alpnProtocol``/``authorized``/``authorizationError`` only: its methods give
    null once the handle is gone (README, "Differences from Node").
    """
    from greenhttps import _server

    monkeypatch.setattr(_server, "TLS_ON_MEMORY_BIOS", bio)
    server_side: dict[str, Any] = {}

    def handler(req: Any, res: Any) -> None:
        sock = req.socket
        server_side["during"] = _facts(sock)
        sock.on("close", lambda *_: server_side.__setitem__("after", _facts(sock)))
        res.end("ok")

    server = make_server(handler, request_cert=True, ca=ca_pem)
    client = pem(ca.issue_cert("client.example"))
    agent = greenhttps.Agent()  # a session cache, no keep-alive: the second dial resumes
    port = server.address()["port"]
    for attempt in range(2):
        server_side.clear()
        res = greenhttps.get(f"https://localhost:{port}/", ca=ca_pem, agent=agent, **client)
        during = _facts(res.socket)
        assert res.read() == b"ok"
        res.socket.destroy()
        helpers.settle(0.2)
        assert res.socket.destroyed
        assert _facts(res.socket) == during
        assert server_side["after"] == server_side["during"]
        expected = {"alpn_protocol": "http/1.1", "authorized": True, "authorization_error": None,
                    "protocol": "TLSv1.3", "session_reused": attempt == 1}
        assert {k: during[k] for k in expected} == expected
        assert {k: server_side["during"][k] for k in expected} == expected
        assert during["cipher"]["version"] == "TLSv1.3" == server_side["during"]["cipher"]["version"]
        assert during["peer_sans"] == (("DNS", "localhost"),) or ("DNS", "localhost") in during["peer_sans"]
        if attempt == 0:  # a resumed TLS 1.3 session sends no certificate again
            assert ("DNS", "client.example") in server_side["during"]["peer_sans"]
    agent.destroy()
