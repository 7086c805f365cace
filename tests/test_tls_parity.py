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
        assert ("DNS", "localhost") in during["peer_sans"]
        if attempt == 0:  # a resumed TLS 1.3 session sends no certificate again
            assert ("DNS", "client.example") in server_side["during"]["peer_sans"]
    agent.destroy()


# ============================== B-5: create_server() with no TLS identity at all


_NODE_NO_IDENTITY = r"""
const https = require('https');
const opts = JSON.parse(process.argv[process.argv.length - 1]);
const listener = () => {};
const forms = [https.createServer(), https.createServer(listener), https.createServer({...opts})];
const server = forms[2];
server.on('tlsClientError', (e) => {
  console.log(JSON.stringify({
    listeners: forms.map((s) => s.listeners('request').length),
    alpn: forms.map((s) => s.ALPNProtocols.toString('latin1')),
    server: e.code,
  }));
  server.close();
});
server.listen(0, '127.0.0.1', () => {
  https.get({port: server.address().port, host: '127.0.0.1', rejectUnauthorized: false, agent: false})
    .on('error', () => {});
});
"""


@pytest.mark.needs_node
@pytest.mark.parametrize(("max_version", "code"), [(None, "ERR_SSL_NO_SUITABLE_SIGNATURE_ALGORITHM"),
                                                   ("TLSv1.2", "ERR_SSL_NO_SHARED_CIPHER")])
def test_create_server_without_identity(max_version: str | None, code: str) -> None:
    """B-5: ``create_server()``, ``create_server(listener)`` and options without key,
    cert or pfx all make a server (no 'request' listener but the given one); each
    handshake then fails on the server with Node's code ('tlsClientError', then
    'clientError'), and the client gets a TLS error.  Node is asked the same.

    Mirrors test/parallel/test-https-argument-of-creating.js.
    """
    opts = {} if max_version is None else {"max_version": max_version}
    out = helpers.run_command(["node", "-e", _NODE_NO_IDENTITY,
                               json.dumps({} if max_version is None else {"maxVersion": max_version})], timeout=20)
    assert out.returncode == 0, out.stderr.decode()
    node = json.loads(out.stdout.decode().strip().splitlines()[-1])
    assert node == {"listeners": [0, 1, 0], "alpn": ["\x08http/1.1"] * 3, "server": code}

    def listener(req: Any, res: Any) -> None:
        res.end("never")

    bare, with_listener = greenhttps.create_server(), greenhttps.create_server(listener)
    given = dict(opts)
    server = greenhttps.create_server(given)
    assert given == opts  # not mutated
    assert [len(s.listeners("request")) for s in (bare, with_listener, server)] == [0, 1, 0]
    assert with_listener.listeners("request")[0] is listener
    failures: list[tuple[str, Any]] = []
    server.on("tlsClientError", lambda err, sock: failures.append(("tlsClientError", err.code)))
    server.on("clientError", lambda err, sock: failures.append(("clientError", err.code)))
    server.listen(0, "127.0.0.1")
    try:
        with pytest.raises(errors.TLSError):
            greenhttps.get(f"https://127.0.0.1:{server.address()['port']}/", reject_unauthorized=False, agent=False)
        helpers.settle(0.2)
        assert failures == [("tlsClientError", code), ("clientError", code)]
    finally:
        server.close()


def test_server_without_identity_serves_what_sni_callback_gives(ca: trustme.CA, ca_pem: bytes) -> None:
    """The reason Node allows a server without key/cert: ``sni_callback`` supplies the
    identity per name.  Mirrors test/parallel/test-tls-sni-server-client.js."""
    leaf = pem(ca.issue_cert("a.example"))
    server = greenhttps.create_server({"sni_callback": lambda name: leaf if name == "a.example" else None},
                                      lambda req, res: res.end("sni"))
    server.listen(0, "127.0.0.1")
    try:
        port = server.address()["port"]
        res = greenhttps.get(f"https://127.0.0.1:{port}/", servername="a.example", ca=ca_pem, agent=False)
        assert res.read() == b"sni"
        with pytest.raises(errors.TLSError):  # negative control: no identity for that name
            greenhttps.get(f"https://127.0.0.1:{port}/", servername="b.example", ca=ca_pem, agent=False)
    finally:
        server.close()


# ========================================= B-4: keys as lists of {pem, passphrase}


@pytest.fixture(scope="module")
def keyed(ca: trustme.CA) -> dict[str, Any]:
    """A leaf's key plain and encrypted (passphrase "password"), and its chain."""
    from cryptography.hazmat.primitives import serialization

    leaf = ca.issue_cert("localhost", "client.example")
    raw = leaf.private_key_pem.bytes()
    key = serialization.load_pem_private_key(raw, None)
    enc = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.BestAvailableEncryption(b"password"))
    return {"raw": raw, "enc": enc, "cert": b"".join(b.bytes() for b in leaf.cert_chain_pems)}


# (name, key, top-level passphrase): test-tls-passphrase.js's accepted forms, in order.
_KEY_FORMS = [
    ("buffer", "enc", "password"), ("buffer-raw", "raw", None), ("buffer-raw-ignored", "raw", "ignored"),
    ("buffer[]", ["enc"], "password"), ("buffer[]-raw", ["raw"], None), ("buffer[]-raw-ignored", ["raw"], "ignored"),
    ("string", "enc:str", "password"), ("string-raw", "raw:str", None), ("string[]", ["enc:str"], "password"),
    ("object[]", [{"pem": "enc", "passphrase": "password"}], None),
    ("object[]-own-wins", [{"pem": "enc", "passphrase": "password"}], "ignored"),
    ("object[]-top-level", [{"pem": "enc"}], "password"),
    ("object[]-string", [{"pem": "enc:str", "passphrase": "password"}], None),
    ("object[]-raw-ignored", [{"pem": "raw", "passphrase": "ignored"}], None),
    ("object[]-raw-top-ignored", [{"pem": "raw"}], "ignored"),
    ("object[]-raw", [{"pem": "raw:str"}], None),
]
# The refused ones: missing passphrase (3), invalid passphrase (4).
_BAD_KEY_FORMS = [
    ("missing", "enc", None), ("missing[]", ["enc"], None), ("missing-object[]", [{"pem": "enc"}], None),
    ("invalid", "enc", "invalid"), ("invalid[]", ["enc"], "invalid"),
    ("invalid-object[]", [{"pem": "enc"}], "invalid"),
    ("own-invalid-wins", [{"pem": "enc", "passphrase": "invalid"}], "password"),
]


def _key_option(form: Any, keyed: dict[str, Any]) -> Any:
    """A form of _KEY_FORMS with its PEM put in ("enc:str": as text)."""
    if isinstance(form, list):
        return [_key_option(item, keyed) for item in form]
    if isinstance(form, dict):
        return {k: _key_option(v, keyed) if k == "pem" else v for k, v in form.items()}
    name, _, as_text = form.partition(":")
    blob: bytes | str = keyed[name]
    return blob.decode() if as_text and isinstance(blob, bytes) else blob


_NODE_KEY_FORMS = r"""
const tls = require('tls');
const cases = JSON.parse(process.argv[process.argv.length - 1]);
console.log(JSON.stringify(cases.map(([key, passphrase, cert]) => {
  try {
    tls.createSecureContext({key, cert, ...(passphrase === null ? {} : {passphrase})});
    return 'ok';
  } catch (e) { return 'throws'; }
})));
"""


@pytest.mark.needs_node
def test_key_forms_node_accepts_and_refuses_the_same(keyed: dict[str, Any]) -> None:
    """B-4: Node's verdict on each form (test/parallel/test-tls-passphrase.js) on
    these very PEMs, against greenhttps's server and client contexts."""
    from greenhttps import _tls

    forms = _KEY_FORMS + _BAD_KEY_FORMS
    text = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in keyed.items()}
    cases = [[_key_option(key, text), top, text["cert"]] for _, key, top in forms]
    out = helpers.run_command(["node", "-e", _NODE_KEY_FORMS, json.dumps(cases)], timeout=20)
    assert out.returncode == 0, out.stderr.decode()
    node = json.loads(out.stdout.decode().strip().splitlines()[-1])

    def ours(key: Any, top: str | None) -> str:
        extra = {} if top is None else {"passphrase": top}
        try:
            _tls.create_server_context(key=_key_option(key, keyed), cert=keyed["cert"], **extra)
            _tls.create_client_context(key=_key_option(key, keyed), cert=keyed["cert"], **extra)
        except errors.InvalidArgumentError as exc:
            assert exc.code == "ERR_OSSL_BAD_DECRYPT", (key, top, exc)
            return "throws"
        return "ok"

    assert node == ["ok"] * len(_KEY_FORMS) + ["throws"] * len(_BAD_KEY_FORMS)
    assert [ours(key, top) for _, key, top in forms] == node


@pytest.mark.parametrize(("name", "key", "top"), _KEY_FORMS, ids=[f[0] for f in _KEY_FORMS])
def test_key_forms_over_tls(make_server: Any, ca_pem: bytes, keyed: dict[str, Any],
                            name: str, key: Any, top: str | None) -> None:
    """B-4: each accepted form serves a handshake as the server's key and as the
    client's certificate key (``request_cert``).  Mirrors
    test/parallel/test-tls-passphrase.js (whose connections use the forms client-side)."""
    extra = {} if top is None else {"passphrase": top}
    option = _key_option(key, keyed)
    seen: list[Any] = []

    def handler(req: Any, res: Any) -> None:
        seen.append((req.socket.authorized, req.socket.get_peer_certificate().get("subjectAltName")))
        res.end("ok")

    server = make_server(handler, key=option, cert=keyed["cert"], request_cert=True, ca=ca_pem, **extra)
    res = greenhttps.get(f"https://localhost:{server.address()['port']}/", ca=ca_pem, agent=False,
                         key=option, cert=keyed["cert"], **extra)
    assert res.read() == b"ok"
    assert seen == [(True, (("DNS", "localhost"), ("DNS", "client.example")))]


@pytest.mark.parametrize(("name", "key", "top"), _BAD_KEY_FORMS, ids=[f[0] for f in _BAD_KEY_FORMS])
def test_bad_key_forms_raise_at_once(make_server: Any, ca_pem: bytes, keyed: dict[str, Any], name: str,
                                     key: Any, top: str | None) -> None:
    """B-4: a missing or wrong passphrase, a per-key one included (it wins over a
    valid top-level one), raises ``ERR_OSSL_BAD_DECRYPT``: from ``create_server``,
    and from a request before its handshake (Node throws in ``tls.connect``, before
    it connects).  Mirrors test/parallel/test-tls-passphrase.js."""
    extra = {} if top is None else {"passphrase": top}
    option = _key_option(key, keyed)
    with pytest.raises(errors.InvalidArgumentError) as server_side:
        greenhttps.create_server({"key": option, "cert": keyed["cert"], **extra})
    with pytest.raises(errors.InvalidArgumentError) as client_side:
        greenhttps.get(f"https://localhost:{make_server().address()['port']}/", key=option, cert=keyed["cert"],
                       ca=ca_pem, agent=False, **extra)
    assert server_side.value.code == client_side.value.code == "ERR_OSSL_BAD_DECRYPT"


def test_several_keys_each_with_its_chain(ca: trustme.CA, ca_pem: bytes) -> None:
    """Node's ``key``/``cert`` lists carry one key per type (RSA, ECDSA) with a chain
    for each, in any order; the handshake picks by what the client accepts.
    Mirrors test/parallel/test-tls-multi-key.js."""
    rsa = ca.issue_cert("localhost", common_name="rsa", key_type=trustme.KeyType.RSA)
    ecdsa = ca.issue_cert("localhost", common_name="ecdsa", key_type=trustme.KeyType.ECDSA)
    server = greenhttps.create_server(
        {"key": [{"pem": rsa.private_key_pem.bytes()}, ecdsa.private_key_pem.bytes()],
         "cert": [pem(ecdsa)["cert"], pem(rsa)["cert"]], "max_version": "TLSv1.2"},
        lambda req, res: res.end("ok"))
    server.listen(0, "127.0.0.1")
    try:
        names = []
        for ciphers in ("ECDHE-RSA-AES128-GCM-SHA256", "ECDHE-ECDSA-AES128-GCM-SHA256"):
            res = greenhttps.get(f"https://localhost:{server.address()['port']}/", ca=ca_pem, agent=False,
                                 ciphers=ciphers)
            subject = res.socket.get_peer_certificate()["subject"]
            names.append([v for rdn in subject for k, v in rdn if k == "commonName"])
            res.read()
        assert names == [["rsa"], ["ecdsa"]]
    finally:
        server.close()
    with pytest.raises(errors.InvalidArgumentError) as info:  # a key without its chain
        greenhttps.create_server({"key": [rsa.private_key_pem.bytes(), ecdsa.private_key_pem.bytes()],
                                  "cert": [pem(rsa)["cert"]]})
    assert info.value.code == "ERR_OSSL_X509_KEY_VALUES_MISMATCH"


# ================================================================ B-103: crl


def make_crl(ca: trustme.CA, *revoked: bytes, expired: bool = False) -> bytes:
    """A PEM CRL signed by ``ca`` that lists the certificates ``revoked`` (PEM)."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization

    now = datetime.datetime.now(datetime.timezone.utc)
    day = datetime.timedelta(days=1)
    issuer = x509.load_pem_x509_certificate(ca.cert_pem.bytes())
    builder = (x509.CertificateRevocationListBuilder().issuer_name(issuer.subject)
               .last_update(now - (3 if expired else 1) * day).next_update(now - day if expired else now + day))
    for cert in revoked:
        serial = x509.load_pem_x509_certificate(cert).serial_number
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(now - day / 2).build())
    key = serialization.load_pem_private_key(ca.private_key_pem.bytes(), None)
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def crl_world() -> dict[str, Any]:
    """A root, an intermediate, leaves good and revoked, and CRLs for them."""
    root = trustme.CA()
    inter = root.create_child_ca()
    good, revoked = root.issue_cert("localhost"), root.issue_cert("localhost")
    return {
        "root": root, "good": good, "revoked": revoked, "chained": inter.issue_cert("localhost"),
        "root_crl": make_crl(root, revoked.cert_chain_pems[0].bytes()), "inter_crl": make_crl(inter),
        "expired_crl": make_crl(root, expired=True),
    }


@pytest.mark.needs_node
@pytest.mark.parametrize("reject", [True, False])
@pytest.mark.parametrize(
    ("served", "crls", "code"),
    [
        ("good", ["root_crl"], None),
        ("revoked", ["root_crl"], "CERT_REVOKED"),
        ("chained", ["root_crl"], "UNABLE_TO_GET_CRL"),  # Node checks the whole chain
        ("chained", ["root_crl", "inter_crl"], None),
        ("good", ["expired_crl"], "CRL_HAS_EXPIRED"),
    ],
)
def test_client_crl(script_server: Any, crl_world: dict[str, Any], served: str, crls: list[str],
                    code: str | None, reject: bool) -> None:
    """B-103 (client side): a server certificate listed in the ``crl`` is refused
    with CERT_REVOKED; every certificate of the chain needs its issuer's CRL, as
    Node sets it (CRL_CHECK | CRL_CHECK_ALL); ``reject_unauthorized=False`` gives the
    same code as ``authorization_error``.  Node is asked on the same server.
    Mirrors test/parallel/test-tls-server-verify.js (its CRL row) and the ``crl``
    option of tls.createSecureContext."""
    port = ok_server(script_server, pem(crl_world[served]))
    ca = crl_world["root"].cert_pem.bytes()
    crl = [crl_world[name] for name in crls]
    if code is None:
        expected: dict[str, Any] = {"status": 200, "authorized": True, "authorizationError": None}
    else:
        expected = {"error": code} if reject else {"status": 200, "authorized": False, "authorizationError": code}
    assert ours_get(port, ca=ca, crl=crl, reject_unauthorized=reject) == expected
    assert node_get(host="127.0.0.1", servername="localhost", port=port, ca=ca,
                    crl=[c.decode() for c in crl], rejectUnauthorized=reject) == expected
    # negative control: without the crl, no revocation check at all
    assert ours_get(port, ca=ca, reject_unauthorized=reject)["authorized"] is True


_NODE_VERIFY_SERVER = r"""
const https = require('https');
const opts = JSON.parse(process.argv[process.argv.length - 1]);
const server = https.createServer(opts, (req, res) => {
  const s = req.socket;
  const cert = s.getPeerCertificate();
  res.end(JSON.stringify({authorized: s.authorized, cn: cert && cert.subject ? cert.subject.CN : null}));
});
server.listen(0, '127.0.0.1', () => console.log(server.address().port));
"""


def _self_signed(name: str) -> dict[str, bytes]:
    ca = trustme.CA(organization_name=name)
    return {"key": ca.private_key_pem.bytes(), "cert": ca.cert_pem.bytes()}


@pytest.mark.needs_node
def test_server_crl_row_of_the_verification_matrix(make_server: Any, ca: trustme.CA, ca_pem: bytes,
                                                   tls_options: dict[str, bytes]) -> None:
    """B-103, the last row: ``request_cert``, ``reject_unauthorized``, ``ca=[ca2]``
    and a CRL revoking agent4: agent1 (another CA), agent2 (self-signed) and a client
    without a certificate are rejected, agent3 (ca2) is authorized, agent4 (ca2,
    revoked) is rejected.  A Node server with the same options gives the same
    verdicts to the same clients.  Mirrors test/parallel/test-tls-server-verify.js."""
    ca2 = trustme.CA()
    agents = {
        "agent1": pem(ca.issue_cert("agent1", common_name="agent1")),
        "agent2": _self_signed("agent2"),
        "agent3": pem(ca2.issue_cert("agent3", common_name="agent3")),
        "none": {},
        "agent4": pem(ca2.issue_cert("agent4", common_name="agent4")),
    }
    crl = make_crl(ca2, agents["agent4"]["cert"])
    options = {"request_cert": True, "reject_unauthorized": True, "ca": [ca2.cert_pem.bytes()], "crl": crl}
    node_options = {"key": tls_options["key"].decode(), "cert": tls_options["cert"].decode(), "requestCert": True,
                    "rejectUnauthorized": True, "ca": [ca2.cert_pem.bytes().decode()], "crl": crl.decode()}
    failures: list[str | None] = []

    def verdicts(port: int) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, material in agents.items():
            try:
                res = greenhttps.get(f"https://localhost:{port}/", ca=ca_pem, agent=False, **material)
                body = json.loads(res.read())
                out[name] = "authorized" if body["authorized"] else "unauthorized"
            except errors.Error:
                out[name] = "rejected"
        return out

    def handler(req: Any, res: Any) -> None:
        cert = req.socket.get_peer_certificate()
        cn = [v for rdn in cert.get("subject", ()) for k, v in rdn if k == "commonName"]
        res.end(json.dumps({"authorized": req.socket.authorized, "cn": cn[0] if cn else None}))

    server = make_server(handler, **options)
    server.on("tlsClientError", lambda err, sock: failures.append(err.code))
    ours = verdicts(server.address()["port"])
    with helpers.node_server(_NODE_VERIFY_SERVER, [json.dumps(node_options)]) as port:
        node = verdicts(port)
    expected = {"agent1": "rejected", "agent2": "rejected", "agent3": "authorized", "none": "rejected",
                "agent4": "rejected"}
    assert node == expected
    assert ours == expected
    helpers.settle(0.2)
    assert "CERT_REVOKED" in failures  # agent4, named (Node's 'tlsClientError' is ECONNRESET)
    # negative control: without the crl, agent4 is authorized
    server2 = make_server(handler, **{**options, "crl": None})
    res = greenhttps.get(f"https://localhost:{server2.address()['port']}/", ca=ca_pem, agent=False, **agents["agent4"])
    assert json.loads(res.read()) == {"authorized": True, "cn": "agent4"}



# ============================ hostname checks on Node's own identity vectors

_ALT = "Host: {h}. is not in the cert's altnames: {a}"
_CN = "Host: {h}. is not cert's CN: {c}"
_NO_DNS = "Cert does not contain a DNS name"
_IP = "IP: {h} is not in the cert's list: {l}"

#: test/parallel/test-tls-check-server-identity.js (Node 20), as (host, CNs, SANs,
#: Node's reason or None).  Left out, as no certificate or Python host can carry
#: them: the false/null/undefined hosts, the host "\n.b.com", and an IP SAN written
#: as a CIDR ("IP Address:8.8.8.0/24": a certificate holds 4 or 16 bytes).
NODE_VECTORS: list[tuple[str, list[str], list[tuple[str, str]], str | None]] = [
    ("a.com", ["a.com"], [], None),
    ("a.com", ["A.COM"], [], None),
    ("a.com", ["b.com"], [], _CN.format(h="a.com", c="b.com")),
    ("a.com", ["a.com."], [], None),  # the one case OpenSSL refuses (see below)
    ("a.com", [".a.com"], [], _CN.format(h="a.com", c=".a.com")),
    ("8.8.8.8", ["8.8.8.8"], [], _IP.format(h="8.8.8.8", l="")),
    ("8.8.8.8", ["8.8.8.8"], [("DNS", "8.8.8.8")], _IP.format(h="8.8.8.8", l="")),
    ("8.8.8.8", ["8.8.8.8"], [("URI", "http://8.8.8.8/")], _IP.format(h="8.8.8.8", l="")),
    ("8.8.8.8", ["8.8.8.8"], [("IP", "8.8.8.8")], None),
    ("b.a.com", ["*.a.com"], [], None),
    ("ba.com", ["*.a.com"], [], _CN.format(h="ba.com", c="*.a.com")),
    ("b.a.com", ["*.a.com"], [("DNS", "omg.com")], _ALT.format(h="b.a.com", a="DNS:omg.com")),
    ("b.a.com", ["b*b.a.com"], [], _CN.format(h="b.a.com", c="b*b.a.com")),
    ("a.com", [], [], _NO_DNS),
    ("a.com", [], [("DNS", "a.com")], None),
    ("a.b.a.com", [], [("URI", "http://a.b.a.com/")], _NO_DNS),
    ("foo.com", ["foo.com", "bar.com"], [], None),
    ("a.com", ["b.com"], [("DNS", "*")], _ALT.format(h="a.com", a="DNS:*")),
    ("a.com", ["b.com"], [("DNS", "*.com")], _ALT.format(h="a.com", a="DNS:*.com")),
    ("a.co.uk", ["b.com"], [("DNS", "*.co.uk")], None),
    ("a.com", ["a.com"], [("DNS", "*.a.com")], _ALT.format(h="a.com", a="DNS:*.a.com")),
    ("a.com", ["b.com"], [("DNS", "*.a.com")], _ALT.format(h="a.com", a="DNS:*.a.com")),
    ("a.com", ["b.com"], [("DNS", "a.com")], None),
    ("a.com", ["b.com"], [("DNS", "A.COM")], None),
    ("a.com", [], [("DNS", "*.a.com")], _ALT.format(h="a.com", a="DNS:*.a.com")),
    ("b.a.com", [], [("DNS", "*.a.com")], None),
    ("c.b.a.com", [], [("DNS", "*.a.com")], _ALT.format(h="c.b.a.com", a="DNS:*.a.com")),
    ("b.a.com", [], [("DNS", "*b.a.com")], None),
    ("a-cb.a.com", [], [("DNS", "*b.a.com")], None),
    ("a.b.a.com", [], [("DNS", "*b.a.com")], _ALT.format(h="a.b.a.com", a="DNS:*b.a.com")),
    ("a.b.a.com", [], [("DNS", "*b.a.com"), ("DNS", "a.b.a.com")], None),
    ("a.b.a.com", [], [("URI", "http://a.b.a.com/")], _NO_DNS),
    ("a.b.a.com", [], [("URI", "http://*.b.a.com/")], _NO_DNS),
    ("a.b.a.com", [], [("IP", "127.0.0.1")], _NO_DNS),
    ("127.0.0.1", [], [("IP", "127.0.0.1")], None),
    ("127.0.0.2", [], [("IP", "127.0.0.1")], _IP.format(h="127.0.0.2", l="127.0.0.1")),
    ("127.0.0.1", [], [("DNS", "a.com")], _IP.format(h="127.0.0.1", l="")),
    ("localhost", ["localhost"], [("DNS", "a.com")], _ALT.format(h="localhost", a="DNS:a.com")),
    ("xn--bcher-kva.example.com", ["*.example.com"], [], None),
    ("xn--bcher-kva.example.com", ["xn--*.example.com"], [],
     _CN.format(h="xn--bcher-kva.example.com", c="xn--*.example.com")),
]

#: Where Node's rules and OpenSSL's X509_check_host (default flags) disagree, found by
#: real handshakes; the default check follows OpenSSL.  Node's vectors: only the first.
#: (host, CNs, SANs): Node accepts each, OpenSSL refuses each.
DISAGREEMENTS: list[tuple[str, list[str], list[tuple[str, str]]]] = [
    ("a.com", ["a.com."], []),  # a trailing dot in the CN: a literal compare
    ("a.com", [], [("DNS", "a.com.")]),  # ... or in a DNS SAN
    ("xn--foo.a.com", [], [("DNS", "x*.a.com")]),  # IDNA labels match whole-label '*' only
    ("a_b.c.d", [], [("DNS", "*.c.d")]),  # '*' stands for letters, digits and '-'
    ("a.b-.c", [], [("DNS", "*.b-.c")]),  # no label of a wildcard pattern ends in '-'
    ("foo-bar.example.com", [], [("DNS", "foo-*.example.com")]),  # ... not even the first
]
#: More cases where the two agree, to pin the port of X509_check_host down.
AGREEMENTS: list[tuple[str, list[str], list[tuple[str, str]]]] = [
    ("foo.a.com", [], [("DNS", "f*.a.com")]), ("foo.a.com", [], [("DNS", "*oo.a.com")]),
    ("xn--foo.a.com", [], [("DNS", "*.a.com")]), ("FOO.A.COM", [], [("DNS", "foo.a.com")]),
    ("a.b", [], [("DNS", "*.b")]), ("b.c.d", [], [("DNS", "**.c.d")]), ("a.c.d", [], [("DNS", "*.xn--c.d")]),
    ("a.xn--c.d", [], [("DNS", "*.xn--c.d")]), ("-a.b.c", [], [("DNS", "*.b.c")]),
    ("b.a.com", ["b.a.com"], [("IP", "1.2.3.4"), ("URI", "http://b.a.com/")]),
    ("0:0::1", [], [("IP", "::1")]), ("www.example.com", [], [("DNS", "w*w*.example.com")]),
]


def _identity_leaf(ca: trustme.CA, cns: list[str], sans: list[tuple[str, str]]) -> dict[str, bytes]:
    """key/cert PEMs of a certificate from ``ca`` with exactly these CNs and SANs."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    key = ec.generate_private_key(ec.SECP256R1())
    issuer = x509.load_pem_x509_certificate(ca.cert_pem.bytes())
    builder = (x509.CertificateBuilder()
               .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn) for cn in cns]))
               .issuer_name(issuer.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=1)))
    kinds: dict[str, Any] = {"DNS": x509.DNSName, "URI": x509.UniformResourceIdentifier,
                             "IP": lambda v: x509.IPAddress(ipaddress.ip_address(v))}
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName([kinds[k](v) for k, v in sans]), critical=False)
    ca_key = serialization.load_pem_private_key(ca.private_key_pem.bytes(), None)
    cert = builder.sign(ca_key, hashes.SHA256())  # type: ignore[arg-type]
    return {"cert": cert.public_bytes(serialization.Encoding.PEM),
            "key": key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                     serialization.NoEncryption())}


def _cert_dict(cns: list[str], sans: list[tuple[str, str]]) -> dict[str, Any]:
    """Python's ``getpeercert()`` shape, for the pure checks."""
    kinds = {"DNS": "DNS", "URI": "URI", "IP": "IP Address"}
    out: dict[str, Any] = {"subject": tuple((("commonName", cn),) for cn in cns)}
    if sans:
        out["subjectAltName"] = tuple((kinds[k], v) for k, v in sans)
    return out


_NODE_IDENTITY = r"""
const tls = require('tls');
const cases = JSON.parse(process.argv[process.argv.length - 1]);
console.log(JSON.stringify(cases.map(([host, cert]) => {
  const err = tls.checkServerIdentity(host, cert);
  return err ? err.reason : null;
})));
"""


@pytest.mark.needs_node
def test_node_identity_rules_on_nodes_vectors() -> None:
    """Node's own vectors through Node 20's ``tls.checkServerIdentity`` and through
    ``node_check_server_identity`` (Node's rules, kept for the error and its reason):
    the same verdicts and reasons.  Mirrors test/parallel/test-tls-check-server-identity.js."""
    from greenhttps import _verify

    node_certs = []
    for host, cns, sans, _ in NODE_VECTORS:
        cert: dict[str, Any] = {"subject": ({"CN": cns if len(cns) > 1 else cns[0]} if cns else {})}
        if sans:
            cert["subjectaltname"] = ", ".join(f"{'IP Address' if k == 'IP' else k}:{v}" for k, v in sans)
        node_certs.append([host, cert])
    out = helpers.run_command(["node", "-e", _NODE_IDENTITY, json.dumps(node_certs)], timeout=20)
    assert out.returncode == 0, out.stderr.decode()
    node = json.loads(out.stdout.decode().strip().splitlines()[-1])
    assert node == [reason for *_, reason in NODE_VECTORS]  # the port of the vectors is right

    def ours(host: str, cns: list[str], sans: list[tuple[str, str]]) -> str | None:
        err = _verify.node_check_server_identity(host, _cert_dict(cns, sans))
        return None if err is None else err.reason  # type: ignore[attr-defined]

    assert [ours(host, cns, sans) for host, cns, sans, _ in NODE_VECTORS] == node


def _openssl_accepts(port: int, host: str, ca_pem: bytes) -> bool:
    """A stdlib client's verdict: OpenSSL's X509_check_host/X509_check_ip in the
    handshake (Python's hostname check, with OpenSSL's default flags: Python's own
    default refuses partial wildcards such as ``*b.a.com``)."""
    import gevent.socket

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(cadata=ca_pem.decode())
    ctx._host_flags = 0  # type: ignore[attr-defined]  # X509_check_host's defaults
    raw = gevent.socket.create_connection(("127.0.0.1", port))
    try:
        helpers.wrap_client(raw, ctx, server_hostname=host).close()
        return True
    except ssl.SSLCertVerificationError as exc:
        assert exc.verify_code in (62, 64), exc  # X509_V_ERR_HOSTNAME_MISMATCH, ..._IP_ADDRESS_MISMATCH
        return False
    finally:
        raw.close()


@pytest.mark.parametrize("case", ["node", "disagreements", "agreements"])
def test_default_identity_check_is_openssls_verdict(script_server: Any, ca: trustme.CA, ca_pem: bytes,
                                                    case: str) -> None:
    """The default path (no ``check_server_identity``) refuses a name exactly when
    OpenSSL's X509_check_host does, on Node's vectors and more, over real handshakes:
    a stdlib client with OpenSSL's check, and greenhttps (``reject_unauthorized`` true
    and false).  Where Node's rules differ (DISAGREEMENTS, Node's vectors' CN
    ``a.com.`` among them), OpenSSL is followed; the error is still Node's.  Mirrors
    test/parallel/test-tls-check-server-identity.js."""
    from greenhttps import _verify

    cases = {
        "node": [(host, cns, sans) for host, cns, sans, _ in NODE_VECTORS],
        "disagreements": DISAGREEMENTS, "agreements": AGREEMENTS,
    }[case]
    verdicts = []
    for host, cns, sans in cases:
        port = ok_server(script_server, _identity_leaf(ca, cns, sans))
        openssl = _openssl_accepts(port, host, ca_pem)
        node = _verify.node_check_server_identity(host, _cert_dict(cns, sans)) is None
        try:
            res = greenhttps.get(f"https://127.0.0.1:{port}/", servername=host, ca=ca_pem, agent=False)
            assert res.read() == b"ok"
            ours = True
        except errors.CertificateError as exc:
            assert exc.code == "ERR_TLS_CERT_ALTNAME_INVALID"
            assert exc.reason == _verify._node_identity(host, _cert_dict(cns, sans))[2]  # type: ignore[attr-defined]
            ours = False
        lax = greenhttps.get(f"https://127.0.0.1:{port}/", servername=host, ca=ca_pem, agent=False,
                             reject_unauthorized=False)
        lax.read()
        assert (lax.socket.authorized, lax.socket.authorization_error) == (
            (True, None) if openssl else (False, "ERR_TLS_CERT_ALTNAME_INVALID"))
        assert _verify.x509_check_host(host, _cert_dict(cns, sans)) is openssl  # the pure port
        verdicts.append((host, openssl, ours, node))
    assert [(h, o) for h, o, _, _ in verdicts] == [(h, c) for h, _, c, _ in verdicts]
    differ = [h for h, o, _, n in verdicts if o != n]
    if case == "node":
        assert differ == ["a.com"]  # CN "a.com.", the one disagreement on Node's vectors
    elif case == "disagreements":
        assert len(differ) == len(DISAGREEMENTS) and not any(o for _, o, _, _ in verdicts)
    else:
        assert differ == []


def test_default_identity_check_drops_the_hosts_trailing_dot(script_server: Any, ca: trustme.CA,
                                                             ca_pem: bytes) -> None:
    """A host written with its root dot (``localhost.``) is checked as ``localhost``,
    as Node does (X509_check_host itself compares it as written and refuses)."""
    port = ok_server(script_server, pem(ca.issue_cert("localhost")))
    res = greenhttps.get(f"https://127.0.0.1:{port}/", servername="localhost.", ca=ca_pem, agent=False)
    assert res.read() == b"ok"
    with pytest.raises(errors.CertificateError):  # negative control
        greenhttps.get(f"https://127.0.0.1:{port}/", servername="localhost2.", ca=ca_pem, agent=False)
