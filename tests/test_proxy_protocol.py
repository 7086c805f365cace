"""The PROXY protocol (HAProxy's v1 and v2): the parser fed bytes, then a real
greenhttps server fed hand-written headers over loopback.

Node has no PROXY protocol, so there is no Node test to mirror; the reference is the
spec (https://www.haproxy.org/download/2.6/doc/proxy-protocol.txt) and, in
``test_proxy_protocol_haproxy.py``, a real HAProxy in front.  A refused connection
must be closed with nothing served: the client reads EOF (or a reset) and no byte,
and no ``'request'`` is emitted.
"""

from __future__ import annotations

import ipaddress
import socket
import struct
from typing import Any, Callable

import gevent
import gevent.socket
import pytest

import greenhttps
import helpers
from greenhttps._proxy_protocol import (
    MAX_V2_PAYLOAD,
    V2_SIGNATURE,
    AllowList,
    ProxyHeader,
    ProxyProtocolError,
    detect,
    parse,
    unmapped,
    versions_from_option,
)

pytestmark = pytest.mark.timeout(20)

V1 = b"PROXY TCP4 203.0.113.7 192.0.2.1 56324 443\r\n"


def v2(command: int = 0x1, family: int = 0x1, transport: int = 0x1, src: str = "203.0.113.7",
       dst: str = "192.0.2.1", sport: int = 56324, dport: int = 443, tlvs: bytes = b"",
       length: int | None = None) -> bytes:
    """A version 2 header, built from the spec's layout (section 2.2)."""
    if family in (0x1, 0x2):
        block = (ipaddress.ip_address(src).packed + ipaddress.ip_address(dst).packed
                 + struct.pack("!HH", sport, dport))
    elif family == 0x3:
        block = b"/tmp/a".ljust(108, b"\0") + b"/tmp/b".ljust(108, b"\0")
    else:
        block = b""
    payload = block + tlvs
    size = len(payload) if length is None else length
    return V2_SIGNATURE + bytes([0x20 | command, family << 4 | transport]) + struct.pack("!H", size) + payload


# ------------------------------------------------------------------ parser


def test_v1_tcp4_tcp6_unknown() -> None:
    header = parse(V1 + b"\x16\x03\x01 the client's own bytes")
    assert header == ProxyHeader(1, "PROXY", "TCP4", ("203.0.113.7", 56324), ("192.0.2.1", 443), len(V1))
    six = b"PROXY TCP6 2001:db8::1 2001:db8::2 1 65535\r\n"
    assert parse(six) == ProxyHeader(1, "PROXY", "TCP6", ("2001:db8::1", 1), ("2001:db8::2", 65535), len(six))
    unknown = b"PROXY UNKNOWN ffff:f...f:ffff ffff:f...f:ffff 65535 65535\r\n"  # spec 2.1's example
    header = parse(unknown)
    assert isinstance(header, ProxyHeader)
    assert (header.family, header.source, header.size, header.relayed) == ("UNKNOWN", None, len(unknown), False)
    longest = b"PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n"
    assert len(longest) == 104 and isinstance(parse(longest), ProxyHeader)


def test_v1_incomplete_asks_for_more_and_never_reads_past_the_crlf() -> None:
    for cut in range(1, len(V1)):
        assert parse(V1[:cut]) == cut + 1, cut
    header = parse(V1 + V1)  # a second header is the client's bytes, not ours
    assert isinstance(header, ProxyHeader) and header.size == len(V1)


def test_v2_families_commands_and_tlvs() -> None:
    four = v2()
    assert parse(four + b"\x16\x03") == ProxyHeader(2, "PROXY", "TCP4", ("203.0.113.7", 56324),
                                                    ("192.0.2.1", 443), len(four))
    six = v2(family=0x2, src="2001:db8::7", dst="::ffff:192.0.2.1", sport=1, dport=8443)
    assert parse(six) == ProxyHeader(2, "PROXY", "TCP6", ("2001:db8::7", 1), ("::ffff:192.0.2.1", 8443), len(six))
    # TLVs (here PP2_TYPE_AUTHORITY and a NOOP) are skipped, counted in the size.
    tlvs = b"\x02\x00\x0bexample.com" + b"\x04\x00\x02\0\0"
    with_tlvs = v2(tlvs=tlvs)
    header = parse(with_tlvs)
    assert isinstance(header, ProxyHeader) and header.size == 16 + 12 + len(tlvs) and header.source is not None
    local = parse(v2(command=0x0, family=0x0, transport=0x0))  # a health check
    assert local == ProxyHeader(2, "LOCAL", "UNSPEC", None, None, 16)
    local_with_block = parse(v2(command=0x0))  # LOCAL may carry addresses: ignored
    assert isinstance(local_with_block, ProxyHeader) and local_with_block.source is None
    assert parse(v2(family=0x0, transport=0x0)) == ProxyHeader(2, "PROXY", "UNSPEC", None, None, 16)
    unix = parse(v2(family=0x3))
    assert isinstance(unix, ProxyHeader) and unix.family == "UNIX" and unix.source is None and unix.size == 16 + 216


def test_v2_incomplete_asks_for_the_rest() -> None:
    header = v2(tlvs=b"\x04\x00\x10" + bytes(16))
    assert parse(header[:5]) == 16
    assert parse(header[:15]) == 16
    for cut in range(16, len(header)):
        assert parse(header[:cut]) == len(header)


@pytest.mark.parametrize(("data", "message"), [
    (b"GET / HTTP/1.1\r\n", "no PROXY header"),
    (b"\x16\x03\x01\x02\x00", "no PROXY header"),  # a TLS ClientHello where a header must be
    (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n", "bare CR or LF"),
    (b"PROXY TCP4 1.2.3.4\r5.6.7.8 1 2\r\n", "fields"),
    (b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n", "fields, not 6"),
    (b"PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n", "fields, not 6"),
    (b"PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n", "TCP5"),
    (b"PROXY TCP4 1.2.3 5.6.7.8 1 2\r\n", "bad IPv4 address"),
    (b"PROXY TCP4 01.2.3.4 5.6.7.8 1 2\r\n", "bad IPv4 address"),
    (b"PROXY TCP4 ::1 5.6.7.8 1 2\r\n", "bad IPv4 address"),
    (b"PROXY TCP6 1.2.3.4 ::1 1 2\r\n", "bad IPv6 address"),
    (b"PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n", "bad port"),
    (b"PROXY TCP4 1.2.3.4 5.6.7.8 +1 2\r\n", "bad port"),
    (b"PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n", "bad port"),
    (b"PROXY TCP4 1.2.3.4 5.6.7.8 \xd9\xa1 2\r\n", "not ASCII"),
    (b"PROXY " + b"x" * 120, "within 107 bytes"),
    (b"proxy TCP4 1.2.3.4 5.6.7.8 1 2\r\n", "no PROXY header"),
    (V2_SIGNATURE[:11] + b"X" + bytes(4), "signature"),
    (V2_SIGNATURE + b"\x11\x11\x00\x0c" + bytes(12), "version nibble 1"),
    (V2_SIGNATURE + b"\x22\x11\x00\x0c" + bytes(12), "command 0x2"),
    (v2(family=0x4), "family 0x4"),
    (v2(transport=0x2), "not STREAM"),
    (v2(length=8), "needs 12"),
    (v2(family=0x2, length=20) + bytes(20), "needs 36"),
    (V2_SIGNATURE + b"\x21\x11" + struct.pack("!H", MAX_V2_PAYLOAD + 1), "more than the 4096"),
])
def test_malformed_headers_are_refused_clearly(data: bytes, message: str) -> None:
    with pytest.raises(ProxyProtocolError, match=message) as caught:
        parse(data)
    assert caught.value.code == "ERR_PROXY_PROTOCOL"
    assert isinstance(caught.value, greenhttps.errors.ProtocolError)


def test_versions_restrict_what_is_accepted() -> None:
    assert versions_from_option(True) == versions_from_option("auto") == (1, 2)
    assert versions_from_option(False) == versions_from_option(None) == versions_from_option("off") == ()
    assert versions_from_option("v1") == (1,) and versions_from_option("V2") == (2,)
    with pytest.raises(ValueError, match="proxy_protocol must be"):
        versions_from_option("v3")
    with pytest.raises(ProxyProtocolError, match="only version 2"):
        parse(V1, (2,))
    with pytest.raises(ProxyProtocolError, match="only version 1"):
        parse(v2(), (1,))


def test_detect() -> None:
    assert detect(V1) is True and detect(v2()) is True
    assert detect(b"PROX") is None and detect(V2_SIGNATURE[:5]) is None  # cannot tell yet
    assert detect(b"POST / HTTP/1.1") is False and detect(b"\x16\x03\x01") is False and detect(b"G") is False


def test_allow_list() -> None:
    allowed = AllowList("127.0.0.1, 10.0.0.0/8,::1")
    assert "127.0.0.1" in allowed and "10.20.30.40" in allowed and "::1" in allowed
    assert "::ffff:127.0.0.1" in allowed  # an IPv4-mapped peer (dual-stack listener)
    assert "::ffff:10.1.1.1" in allowed
    assert "127.0.0.2" not in allowed and "11.0.0.1" not in allowed and "::2" not in allowed
    assert "not-an-ip" not in allowed and None not in allowed
    assert "198.51.100.1" in AllowList("*") and "x" in AllowList(["*"])
    assert "127.0.0.1" not in AllowList("") and "127.0.0.1" not in AllowList(None)
    assert "192.0.2.9" in AllowList(["192.0.2.0/24"])
    with pytest.raises(ValueError, match="'10.0.0.300'"):
        AllowList("10.0.0.300")
    assert unmapped("::ffff:127.0.0.1") == "127.0.0.1"
    assert unmapped("::FFFF:10.0.0.1") == "10.0.0.1"
    assert unmapped("::ffff:1") == "::ffff:1" and unmapped("2001:db8::1") == "2001:db8::1"


# ------------------------------------------------------------------ server


def _who(req: Any, res: Any) -> None:
    sock = req.socket
    res.end(f"{sock.remote_address} {sock.remote_port} {sock.remote_family}")


@pytest.fixture
def proxied(make_server: Callable[..., Any]) -> Callable[..., Any]:
    """``proxied(tls=True, **options)``: a server answering the client's address it
    sees, with ``proxy_protocol`` on; ``srv.errors`` collects its ``'clientError'``s
    and ``srv.requests`` counts requests."""

    def make(tls: bool = True, **opts: Any) -> Any:
        srv = make_server(_who, tls=tls, **{"proxy_protocol": True, **opts})
        srv.errors, srv.requests = [], []
        srv.on("clientError", lambda err, sock: srv.errors.append((err, sock.destroyed)))
        srv.on("request", lambda req, res: srv.requests.append(req.url))
        srv.port = srv.address()["port"]
        return srv

    return make


def _ask(sock: Any) -> bytes:
    sock.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
    return helpers.read_response(sock).body


def _over(port: int, header: bytes, tls: bool = True, pieces: int = 1, timeout: float = 5) -> Any:
    """Connect, send ``header`` (in ``pieces`` writes, pausing between), then TLS."""
    raw = gevent.socket.create_connection(("127.0.0.1", port), timeout=timeout)
    step = -(-len(header) // pieces) if header else 1
    for start in range(0, len(header), step):
        raw.sendall(header[start : start + step])
        gevent.sleep(0.02)
    return helpers.wrap_client(raw, helpers.unverified_client_context(), "localhost") if tls else raw


@pytest.mark.parametrize("header", [V1, v2()], ids=["v1", "v2"])
@pytest.mark.parametrize("tls", [True, False], ids=["https", "http"])
def test_the_socket_names_the_client_from_the_header(proxied: Callable[..., Any], header: bytes, tls: bool) -> None:
    srv = proxied(tls=tls)
    assert _ask(_over(srv.port, header, tls)) == b"203.0.113.7 56324 IPv4"
    assert srv.errors == []


def test_tcp6_client_behind_an_ipv4_proxy(proxied: Callable[..., Any]) -> None:
    srv = proxied()
    header = b"PROXY TCP6 2001:db8::7 2001:db8::1 4242 443\r\n"
    assert _ask(_over(srv.port, header)) == b"2001:db8::7 4242 IPv6"
    assert _ask(_over(srv.port, v2(family=0x2, src="2001:db8::8", dst="::1", sport=9))) == b"2001:db8::8 9 IPv6"


def test_header_in_pieces_and_tls_bytes_after_it_are_left_alone(proxied: Callable[..., Any]) -> None:
    """A header trickling in byte by byte (and one with TLVs) is read to its end
    and not a byte further: the TLS handshake that follows succeeds."""
    srv = proxied()
    assert _ask(_over(srv.port, V1, pieces=len(V1))) == b"203.0.113.7 56324 IPv4"
    long_v2 = v2(tlvs=b"\x04" + struct.pack("!H", 300) + bytes(300))
    assert _ask(_over(srv.port, long_v2, pieces=7)) == b"203.0.113.7 56324 IPv4"


def test_local_and_unknown_keep_the_real_address(proxied: Callable[..., Any]) -> None:
    """v2 LOCAL (HAProxy's health checks) and v1 UNKNOWN are served with the
    connection's own address (the proxy's)."""
    srv = proxied()
    for header in (v2(command=0x0, family=0x0, transport=0x0), b"PROXY UNKNOWN\r\n", v2(family=0x0, transport=0x0)):
        sock = _over(srv.port, header)
        answer = _ask(sock)
        assert answer == b"127.0.0.1 %d IPv4" % sock.getsockname()[1], header
    assert srv.errors == []


@pytest.mark.parametrize("tls", [True, False], ids=["https", "http"])
@pytest.mark.parametrize("header", [
    b"PROXY TCP4 1.2.3 5.6.7.8 1 2\r\n",
    b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n",
    b"PROXY TCP9 1.2.3.4 5.6.7.8 1 2\r\n",
    b"PROXY " + b"9" * 200,
    V2_SIGNATURE + b"\x21\x51\x00\x00",
    V2_SIGNATURE + b"\x21\x11" + struct.pack("!H", 60000),
    b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n",  # no header at all, from a peer that owes one
], ids=["bad-address", "bare-lf", "bad-proto", "too-long", "bad-family", "too-big", "missing"])
def test_a_malformed_or_missing_header_closes_with_nothing_served(
    proxied: Callable[..., Any], header: bytes, tls: bool
) -> None:
    srv = proxied(tls=tls)
    raw = gevent.socket.create_connection(("127.0.0.1", srv.port), timeout=5)
    raw.sendall(header)
    assert helpers.read_until_eof(raw, timeout=5, reset_ok=True) == b""
    raw.close()
    helpers.settle()
    assert srv.requests == []
    assert len(srv.errors) == 1
    err, destroyed = srv.errors[0]
    assert err.code == "ERR_PROXY_PROTOCOL" and destroyed
    assert srv.connections == 0


def test_tls_without_a_header_from_a_trusted_peer_is_refused(proxied: Callable[..., Any]) -> None:
    """A trusted peer must send the header (the spec forbids guessing): a direct TLS
    client from it gets no handshake."""
    srv = proxied()
    with pytest.raises((OSError, TimeoutError)):
        helpers.raw_connect(srv.port, tls=True)
    helpers.settle()
    assert srv.requests == [] and [e.code for e, _ in srv.errors] == ["ERR_PROXY_PROTOCOL"]


@pytest.mark.parametrize("header", [V1, v2(), b"PROX"], ids=["v1", "v2", "v1-prefix"])
def test_a_header_from_an_untrusted_peer_closes(proxied: Callable[..., Any], header: bytes) -> None:
    srv = proxied(tls=False, proxy_allow_ips="10.0.0.0/8")
    raw = gevent.socket.create_connection(("127.0.0.1", srv.port), timeout=5)
    raw.sendall(header)
    if header == b"PROX":
        gevent.sleep(0.1)  # the server cannot tell yet; the rest decides
        raw.sendall(V1[4:])
    assert helpers.read_until_eof(raw, timeout=5, reset_ok=True) == b""
    raw.close()
    helpers.settle()
    assert srv.requests == []
    assert [str(e) for e, _ in srv.errors] == [
        "PROXY protocol: a header from a peer not in proxy_allow_ips [ERR_PROXY_PROTOCOL]"]


@pytest.mark.parametrize("tls", [True, False], ids=["https", "http"])
def test_an_untrusted_peer_without_a_header_is_served_as_itself(proxied: Callable[..., Any], tls: bool) -> None:
    srv = proxied(tls=tls, proxy_allow_ips=["192.0.2.0/24"])
    sock = helpers.raw_connect(srv.port, tls=tls)
    assert _ask(sock) == b"127.0.0.1 %d IPv4" % sock.getsockname()[1]
    # A request starting with P (POST, PUT) is not mistaken for a header.
    sock = helpers.raw_connect(srv.port, tls=tls)
    sock.sendall(b"PUT / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
    assert helpers.read_response(sock).status == 200
    if not tls:  # a "P" and a long pause: the server stops wondering, and serves it
        sock = helpers.raw_connect(srv.port)
        sock.sendall(b"P")
        gevent.sleep(1.0)
        sock.sendall(b"UT / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        assert helpers.read_response(sock).status == 200
    assert srv.errors == []


def test_allow_list_star_and_changes_at_run_time(proxied: Callable[..., Any]) -> None:
    srv = proxied(proxy_allow_ips="*")
    assert _ask(_over(srv.port, V1)) == b"203.0.113.7 56324 IPv4"
    srv.proxy_allow_ips = "10.0.0.1"  # read per connection, as the other options
    sock = helpers.raw_connect(srv.port, tls=True)
    assert _ask(sock) == b"127.0.0.1 %d IPv4" % sock.getsockname()[1]
    srv.proxyAllowIps = ["127.0.0.0/8"]  # Node-style spelling of the same attribute
    assert _ask(_over(srv.port, v2())) == b"203.0.113.7 56324 IPv4"


def test_versions_option(proxied: Callable[..., Any]) -> None:
    srv = proxied(proxy_protocol="v2")
    assert _ask(_over(srv.port, v2())) == b"203.0.113.7 56324 IPv4"
    raw = gevent.socket.create_connection(("127.0.0.1", srv.port), timeout=5)
    raw.sendall(V1)
    assert helpers.read_until_eof(raw, timeout=5, reset_ok=True) == b""
    helpers.settle()
    assert "only version 2" in str(srv.errors[0][0])


def test_a_header_that_never_comes_times_out(proxied: Callable[..., Any]) -> None:
    """The handshake timeout bounds the wait for the header (a silent peer, and one
    that stops half-way)."""
    srv = proxied(handshake_timeout=300)
    silent = gevent.socket.create_connection(("127.0.0.1", srv.port), timeout=5)
    half = gevent.socket.create_connection(("127.0.0.1", srv.port), timeout=5)
    half.sendall(V1[:20])
    for sock in (silent, half):
        started = gevent.get_hub().loop.now()
        assert helpers.read_until_eof(sock, timeout=5, reset_ok=True) == b""
        assert gevent.get_hub().loop.now() - started < 2
    helpers.settle()
    assert [("within 0.3 s" in str(e)) for e, _ in srv.errors] == [True, True]
    assert srv.connections == 0


def test_refused_connections_leak_nothing(proxied: Callable[..., Any]) -> None:
    srv = proxied()
    good = _over(srv.port, V1)
    assert _ask(good) == b"203.0.113.7 56324 IPv4"
    good.close()
    helpers.settle(0.1)
    fds, greenlets = helpers.open_fds(), helpers.live_greenlets()
    for _ in range(20):
        raw = gevent.socket.create_connection(("127.0.0.1", srv.port), timeout=5)
        raw.sendall(b"PROXY TCP4 nope\r\n")
        helpers.read_until_eof(raw, timeout=5, reset_ok=True)
        raw.close()
    helpers.settle(0.2)
    assert srv.connections == 0
    assert helpers.open_fds() <= fds and helpers.live_greenlets() <= greenlets


def test_bad_options_fail_at_create_server(tls_options: dict[str, bytes]) -> None:
    with pytest.raises(ValueError, match="proxy_protocol must be"):
        greenhttps.create_server(tls_options, proxy_protocol="yes")
    with pytest.raises(ValueError, match="'10.0.0.0/33'"):
        greenhttps.create_server(tls_options, proxy_protocol=True, proxy_allow_ips="10.0.0.0/33")
    srv = greenhttps.create_server({**tls_options, "proxyProtocol": "v1", "proxyAllowIps": "*"})
    assert srv.proxy_protocol == "v1" and srv.proxy_allow_ips == "*"
    assert greenhttps.create_server(tls_options).proxy_protocol is False  # opt-in


def test_off_by_default_a_header_is_just_bad_http(make_server: Callable[..., Any]) -> None:
    """Without the option nothing is read before the request: a PROXY line is a
    malformed request (400), as on any server that does not expect one."""
    for off in (False, "off"):  # gunicorn's spelling: a true string that means off
        srv = make_server(_who, tls=False, proxy_protocol=off)
        raw = gevent.socket.create_connection(("127.0.0.1", srv.address()["port"]), timeout=5)
        raw.sendall(V1 + b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert helpers.read_response(raw).status == 400
        raw.close()


def test_unix_socket_peers_are_trusted(make_server: Callable[..., Any], tmp_path: Any) -> None:
    """As gunicorn: a peer on a Unix socket (a local proxy) is allowed to send the header."""
    srv = make_server(_who, tls=False, listen=False, proxy_protocol=True, proxy_allow_ips="")
    path = str(tmp_path / "s.sock")
    srv.listen(path)
    raw = gevent.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    raw.settimeout(5)
    raw.connect(path)
    raw.sendall(V1)
    assert _ask(raw) == b"203.0.113.7 56324 IPv4"
