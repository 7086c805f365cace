"""``get_peer_certificate()`` carries Node's fields beside Python's (NODE-BEHAVIOURS
B-104): compared with what node 20's ``getPeerCertificate()`` gives for the same
certificate, on the client side (a node https server) and on the server side (a
client certificate presented by ``openssl s_client``, as
test/parallel/test-https-foafssl.js does).
"""

from __future__ import annotations

import datetime
import ipaddress
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gevent
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

import greenhttps
import helpers

pytestmark = pytest.mark.timeout(30)

#: The fields compared with node's (``raw``/``pubkey`` as hex, the rest as given).
NODE_FIELDS = ("subjectaltname", "ca", "bits", "modulus", "exponent", "asn1Curve", "nistCurve", "valid_from",
               "valid_to", "fingerprint", "fingerprint256", "fingerprint512", "ext_key_usage", "serialNumber",
               "pubkey", "raw")


def self_signed(tmp_path: Path, kind: str) -> tuple[Path, Path]:
    key: Any = rsa.generate_private_key(public_exponent=65537, key_size=2048) if kind == "rsa" \
        else ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost"),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Acme, Inc.")])
    start = datetime.datetime(2024, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(0x0123456789).not_valid_before(start).not_valid_after(start + datetime.timedelta(days=3650))
            .add_extension(x509.SubjectAlternativeName([
                x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                x509.IPAddress(ipaddress.ip_address("::1")), x509.UniformResourceIdentifier("http://example.com/#me"),
                x509.RFC822Name("me@example.com")]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH,
                                                  x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .sign(key, hashes.SHA256()))
    key_file, cert_file = tmp_path / f"{kind}-key.pem", tmp_path / f"{kind}-cert.pem"
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return key_file, cert_file


NODE_SERVER = """
const https = require('https'), tls = require('tls'), fs = require('fs');
const opts = {key: fs.readFileSync(process.argv[2]), cert: fs.readFileSync(process.argv[3])};
const server = https.createServer(opts, (req, res) => res.end('ok'));
server.listen(0, '127.0.0.1', () => {
  const port = server.address().port;
  const c = tls.connect({port, host: '127.0.0.1', servername: 'localhost', rejectUnauthorized: false}, () => {
    const p = c.getPeerCertificate(), out = {};
    for (const k of Object.keys(p)) out[k] = Buffer.isBuffer(p[k]) ? p[k].toString('hex') : p[k];
    fs.writeFileSync(process.argv[4], JSON.stringify(out));
    c.destroy();
    console.log(port);
  });
});
"""


def comparable(cert: dict[str, Any]) -> dict[str, Any]:
    return {k: (v.hex() if isinstance(v, bytes) else v) for k, v in cert.items() if k in NODE_FIELDS}


@pytest.mark.needs_node
@pytest.mark.parametrize("kind", ["rsa", "ec"])
def test_client_sees_nodes_certificate_fields(tmp_path: Path, kind: str) -> None:
    """The server's certificate, read by greenhttps's client and by node's, gives the
    same Node fields; Python's own (``subject`` as RDN tuples, ``subjectAltName``)
    are still there."""
    key_file, cert_file = self_signed(tmp_path, kind)
    seen_by_node = tmp_path / "node.json"
    with helpers.node_server(NODE_SERVER, [str(key_file), str(cert_file), str(seen_by_node)]) as port:
        res = greenhttps.get({"hostname": "127.0.0.1", "port": port, "servername": "localhost",
                              "reject_unauthorized": False, "agent": False})
        res.read()
    ours = res.socket.get_peer_certificate()
    node = json.loads(seen_by_node.read_text())
    assert comparable(ours) == comparable(node)
    assert ours["subjectaltname"] == ("DNS:localhost, IP Address:127.0.0.1, IP Address:0:0:0:0:0:0:0:1, "
                                      "URI:http://example.com/#me, email:me@example.com")
    assert ("rsa" == kind) == ("modulus" in ours and ours["exponent"] == "0x10001")
    assert ours["subject"] == ((("commonName", "localhost"),), (("organizationName", "Acme, Inc."),))
    assert ("URI", "http://example.com/#me") in ours["subjectAltName"]


@pytest.mark.needs_openssl
def test_server_sees_a_client_certificates_node_fields(make_server: Callable[..., Any], tmp_path: Path) -> None:
    """B-104, mirrors test/parallel/test-https-foafssl.js: ``request_cert``, a client
    certificate with ``URI:http://example.com/#me`` presented by ``openssl s_client``:
    the handler reads ``subjectaltname``, ``exponent`` and ``modulus``; the response
    body arrives."""
    key_file, cert_file = self_signed(tmp_path, "rsa")
    seen: list[dict[str, Any]] = []

    def handler(req: Any, res: Any) -> None:
        seen.append(req.socket.get_peer_certificate())
        res.end("body arrives\n")

    srv = make_server(handler, request_cert=True, ca=cert_file.read_bytes())
    port = srv.address()["port"]
    proc = helpers.run_command(
        ["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-servername", "localhost", "-quiet",
         "-cert", str(cert_file), "-key", str(key_file)],
        input=b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n", timeout=15)
    assert b"body arrives" in proc.stdout, proc.stderr[-500:]
    cert = x509.load_pem_x509_certificate(cert_file.read_bytes())
    numbers = cert.public_key().public_numbers()  # type: ignore[union-attr]
    assert len(seen) == 1
    assert "URI:http://example.com/#me" in seen[0]["subjectaltname"].split(", ")
    assert seen[0]["exponent"] == "0x10001"
    assert seen[0]["modulus"] == f"{numbers.n:X}"
    gevent.sleep(0)


def test_unsafe_names_are_quoted_as_node_quotes_them() -> None:
    """Node 17+ quotes a name that would make the list ambiguous; the expected strings
    are what node 20's ``X509Certificate.subjectAltName`` printed for these names."""
    from greenhttps._verify import _node_quoted

    assert _node_quoted("plain.example") == "plain.example"
    assert _node_quoted("a,b.example") == '"a\\u002cb.example"'
    assert _node_quoted('http://x/a"b') == '"http://x/a\\"b"'
    assert _node_quoted("it's") == '"it\'s"'
    assert _node_quoted("tab\there") == '"tab\\u0009here"'
