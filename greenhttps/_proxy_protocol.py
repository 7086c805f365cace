"""The PROXY protocol header (HAProxy's, versions 1 and 2), parsed from bytes.

A load balancer that passes TCP through (HAProxy ``send-proxy``/``send-proxy-v2``,
AWS NLB, stunnel, ...) sends one header before the client's own bytes -- before the
TLS handshake too -- naming the client's address.  Spec:
https://www.haproxy.org/download/2.6/doc/proxy-protocol.txt

This module only looks at bytes (the reader that takes the header off a socket is
:mod:`greenhttps._proxy_socket`):

* :func:`parse` returns a :class:`ProxyHeader` once ``data`` holds a whole header,
  the number of bytes it needs at least while it does not, and raises
  :class:`ProxyProtocolError` as soon as the bytes cannot be a valid header.
* :func:`detect` says whether the first bytes of a connection start a header at all
  (for peers not allowed to send one: a header from them is refused).
* :class:`AllowList` is ``proxy_allow_ips`` / ``forwarded_allow_ips``: addresses and
  networks, ``*`` for every peer; an IPv4-mapped IPv6 peer matches its IPv4 entry.

Limits: a version 1 line is at most 107 bytes, CRLF included (the spec's own
bound); a version 2 header is 16 bytes plus at most :data:`MAX_V2_PAYLOAD` bytes of
addresses and TLVs (the TLVs are skipped: nothing here needs them).
"""

from __future__ import annotations

import ipaddress
from functools import lru_cache
from typing import Iterable, NamedTuple, Union

from . import errors

__all__ = [
    "ProxyHeader",
    "ProxyProtocolError",
    "AllowList",
    "allow_list",
    "parse",
    "detect",
    "versions_from_option",
    "unmapped",
    "V1_MAX",
    "V2_SIGNATURE",
    "MAX_V2_PAYLOAD",
]

#: The longest version 1 line, ``PROXY TCP6 <39> <39> 65535 65535\r\n`` (spec 2.1).
V1_MAX = 107
#: The first 12 bytes of every version 2 header (spec 2.2).
V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
#: The most address-and-TLV bytes a version 2 header may carry here.  The length
#: field allows 65535; real proxies send tens of bytes (addresses) plus small TLVs
#: (AWS's VPC endpoint id, HAProxy's unique id or TLS details), so 4 KiB is generous
#: and bounds what one connection makes us buffer before it has said anything.
MAX_V2_PAYLOAD = 4096

_V1_PREFIX = b"PROXY "
_V2_ADDRESS_SIZES = {0x1: 12, 0x2: 36, 0x3: 216}  # AF_INET, AF_INET6, AF_UNIX (spec 2.2)
_V2_FAMILIES = {0x0: "UNSPEC", 0x1: "TCP4", 0x2: "TCP6", 0x3: "UNIX"}


class ProxyProtocolError(errors.ProtocolError):
    """A PROXY header that is malformed, too long, missing, or from a peer not
    allowed to send one.  The connection is closed with nothing served."""

    code = "ERR_PROXY_PROTOCOL"


class ProxyHeader(NamedTuple):
    """What a PROXY header said.

    ``command`` is ``'PROXY'`` (relayed connection) or ``'LOCAL'`` (the proxy's own
    connection, e.g. a health check: v2 only).  ``family`` is ``'TCP4'``, ``'TCP6'``,
    ``'UNIX'`` or ``'UNKNOWN'`` (v1) / ``'UNSPEC'`` (v2).  ``source`` and
    ``destination`` are ``(address, port)`` for TCP4/TCP6 (the client and the address
    it connected to), None otherwise: then the connection's own addresses stand.
    ``size`` is the header's length on the wire.
    """

    version: int
    command: str
    family: str
    source: tuple[str, int] | None
    destination: tuple[str, int] | None
    size: int

    @property
    def relayed(self) -> bool:
        """True when the header names a client: the connection's addresses are replaced."""
        return self.source is not None


def _fail(message: str) -> ProxyProtocolError:
    return ProxyProtocolError(f"PROXY protocol: {message}")


def detect(data: bytes) -> bool | None:
    """Do the first bytes ``data`` start a PROXY header?  None while too few bytes
    arrived to tell (they are a prefix of one of the two signatures)."""
    for signature in (_V1_PREFIX, V2_SIGNATURE):
        n = min(len(data), len(signature))
        if data[:n] == signature[:n]:
            if n == len(signature):
                return True
            if n == len(data):
                return None
    return False


def parse(data: bytes, versions: tuple[int, ...] = (1, 2)) -> ProxyHeader | int:
    """The header at the start of ``data``, or the total byte count needed to go on.

    ``versions`` are those accepted (``proxy_protocol='v1'`` or ``'v2'`` accepts one).
    Bytes after the header are not looked at (they are the client's).  Raises
    :class:`ProxyProtocolError` as soon as ``data`` cannot start a valid header.
    """
    if not data:
        return len(V2_SIGNATURE)
    if data[:1] == _V1_PREFIX[:1]:
        if 1 not in versions:
            raise _fail("a version 1 header where only version 2 is accepted")
        return _parse_v1(data)
    if data[:1] == V2_SIGNATURE[:1]:
        if 2 not in versions:
            raise _fail("a version 2 header where only version 1 is accepted")
        return _parse_v2(data)
    raise _fail("no PROXY header where one is required")


# ----------------------------------------------------------------- version 1


def _parse_v1(data: bytes) -> ProxyHeader | int:
    n = min(len(data), len(_V1_PREFIX))
    if data[:n] != _V1_PREFIX[:n]:
        raise _fail("no PROXY header where one is required")
    end = data.find(b"\r\n", 0, V1_MAX)
    if end < 0:
        # No CRLF yet: fine while it may still come (a CR may only be the last byte).
        if len(data) >= V1_MAX:
            raise _fail(f"version 1 line not ended by CRLF within {V1_MAX} bytes")
        if b"\n" in data or b"\r" in data[:-1]:
            raise _fail("version 1 line has a bare CR or LF")
        return len(data) + 1
    try:
        line = data[:end].decode("ascii")
    except UnicodeDecodeError:
        raise _fail("version 1 line is not ASCII") from None
    size = end + 2
    parts = line.split(" ")
    if len(parts) >= 2 and parts[1] == "UNKNOWN":
        # Spec 2.1: whatever follows UNKNOWN up to the CRLF is ignored; the
        # connection's own addresses stand.
        return ProxyHeader(1, "PROXY", "UNKNOWN", None, None, size)
    if len(parts) != 6:
        raise _fail(f"version 1 line has {len(parts)} fields, not 6: {line!r}")
    _, family, src, dst, sport, dport = parts
    if family == "TCP4":
        kind: type[ipaddress.IPv4Address] | type[ipaddress.IPv6Address] = ipaddress.IPv4Address
    elif family == "TCP6":
        kind = ipaddress.IPv6Address
    else:
        raise _fail(f"version 1 protocol {family!r} is none of TCP4, TCP6, UNKNOWN")
    return ProxyHeader(1, "PROXY", family, (_v1_address(kind, src), _v1_port(sport)),
                       (_v1_address(kind, dst), _v1_port(dport)), size)


def _v1_address(kind: type[ipaddress.IPv4Address] | type[ipaddress.IPv6Address], text: str) -> str:
    try:
        return _text(kind(text))  # strict: no leading zeros, no zone, no brackets
    except ValueError:
        raise _fail(f"bad {'IPv4' if kind is ipaddress.IPv4Address else 'IPv6'} address {text!r}") from None


def _v1_port(text: str) -> int:
    # Spec 2.1: decimal 0..65535 -- no sign, no spaces, no leading zeros.
    if not (text.isdigit() and text.isascii()) or len(text) > 5 or (len(text) > 1 and text[0] == "0"):
        raise _fail(f"bad port {text!r}")
    port = int(text)
    if port > 65535:
        raise _fail(f"bad port {text!r}")
    return port


# ----------------------------------------------------------------- version 2


def _parse_v2(data: bytes) -> ProxyHeader | int:
    n = min(len(data), len(V2_SIGNATURE))
    if data[:n] != V2_SIGNATURE[:n]:
        raise _fail("bad version 2 signature")
    if len(data) < 16:
        return 16
    version, command = data[12] >> 4, data[12] & 0x0F
    if version != 2:
        raise _fail(f"version 2 signature with version nibble {version}")
    if command not in (0x0, 0x1):
        raise _fail(f"version 2 command {command:#x} is neither LOCAL nor PROXY")
    family, transport = data[13] >> 4, data[13] & 0x0F
    length = int.from_bytes(data[14:16], "big")
    if length > MAX_V2_PAYLOAD:
        raise _fail(f"version 2 header carries {length} bytes, more than the {MAX_V2_PAYLOAD} accepted")
    size = 16 + length
    if len(data) < size:
        return size
    if command == 0x0:
        # LOCAL: the proxy's own connection (health checks); the address block, if
        # any, is to be ignored (spec 2.2).
        return ProxyHeader(2, "LOCAL", _V2_FAMILIES.get(family, "UNSPEC"), None, None, size)
    if family not in _V2_FAMILIES:
        raise _fail(f"version 2 address family {family:#x} is unknown")
    if family == 0x0:
        return ProxyHeader(2, "PROXY", "UNSPEC", None, None, size)  # the receiver's own addresses stand
    if transport != 0x1:
        raise _fail(f"version 2 transport {transport:#x} is not STREAM")
    need = _V2_ADDRESS_SIZES[family]
    if length < need:
        raise _fail(f"version 2 {_V2_FAMILIES[family]} address block is {length} bytes, needs {need}")
    block = data[16 : 16 + need]
    if family == 0x3:
        return ProxyHeader(2, "PROXY", "UNIX", None, None, size)  # no IP address to report
    width = 4 if family == 0x1 else 16
    make = ipaddress.IPv4Address if family == 0x1 else ipaddress.IPv6Address
    src, dst = _text(make(block[:width])), _text(make(block[width : 2 * width]))
    ports = block[2 * width :]
    sport, dport = int.from_bytes(ports[:2], "big"), int.from_bytes(ports[2:4], "big")
    return ProxyHeader(2, "PROXY", _V2_FAMILIES[family], (src, sport), (dst, dport), size)


def _text(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str:
    """An address as the kernel (and Node) show a peer's: IPv4-mapped IPv6 keeps its
    dotted tail (``::ffff:192.0.2.1``; Python before 3.13 writes ``::ffff:c000:201``)."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return f"::ffff:{ip.ipv4_mapped}"
    return str(ip)


# ------------------------------------------------------------------- options


def versions_from_option(value: object) -> tuple[int, ...]:
    """The ``proxy_protocol`` option as the versions accepted; ``()`` when off.

    False/None/``'off'`` -> off; True/``'auto'`` -> both; ``'v1'``/``'v2'`` -> one
    (gunicorn's spellings).  Raises ValueError for anything else.
    """
    if value is None or value is False:
        return ()
    if value is True:
        return (1, 2)
    if isinstance(value, str):
        found = {"off": (), "false": (), "auto": (1, 2), "true": (1, 2), "v1": (1,), "v2": (2,)}.get(value.lower())
        if found is not None:
            return found
    raise ValueError(f"proxy_protocol must be True, False, 'v1', 'v2' or 'auto', not {value!r}")


_Network = Union[ipaddress.IPv4Network, ipaddress.IPv6Network]


def unmapped(address: str) -> str:
    """``'::ffff:127.0.0.1'`` -> ``'127.0.0.1'``; anything else unchanged."""
    if address[:7].lower() == "::ffff:" and "." in address:
        return address[7:]
    return address


class AllowList:
    """Peers trusted to speak for someone else: ``'127.0.0.1,::1'``, ``'10.0.0.0/8'``,
    ``'*'`` (everyone), or an iterable of such strings.

    A peer given as an IPv4-mapped IPv6 address (a dual-stack listener) matches its
    IPv4 entries.  Raises ValueError for an entry that is no address or network.
    """

    __slots__ = ("everyone", "networks")

    def __init__(self, spec: str | Iterable[str] | None) -> None:
        if spec is None:
            entries: list[str] = []
        elif isinstance(spec, str):
            entries = [part.strip() for part in spec.split(",")]
        else:
            entries = [str(part).strip() for part in spec]
        entries = [entry for entry in entries if entry]
        self.everyone = "*" in entries
        networks: list[_Network] = []
        for entry in entries:
            if entry == "*":
                continue
            try:
                networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                raise ValueError(f"not an IP address or network: {entry!r}") from None
        self.networks = tuple(networks)

    def __repr__(self) -> str:
        return "AllowList(*)" if self.everyone else f"AllowList({', '.join(map(str, self.networks))})"

    def __contains__(self, address: object) -> bool:
        if self.everyone:
            return True
        if not isinstance(address, str) or not self.networks:
            return False
        try:
            ip = ipaddress.ip_address(address.partition("%")[0])
        except ValueError:
            return False
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return any(ip in network for network in self.networks)


@lru_cache(maxsize=64)
def _cached(spec: str | tuple[str, ...] | None) -> AllowList:
    return AllowList(spec)


def allow_list(spec: str | Iterable[str] | None) -> AllowList:
    """:class:`AllowList` for an option value, parsed once per distinct value (the
    option is re-read per connection, so a changed attribute takes effect)."""
    if isinstance(spec, AllowList):
        return spec
    key = spec if spec is None or isinstance(spec, str) else tuple(spec)
    return _cached(key)
