"""Outgoing framing, decided once by the message layer (:mod:`greenhttps._outgoing`).

``response_framing`` / ``request_framing`` decide a head's :class:`OutgoingFraming`
and its final fields from the message's own fields; :mod:`greenhttps._wire_format`
only serialises them.  These are the decisions, in memory.
"""

from __future__ import annotations

import pytest

from greenhttps import errors
from greenhttps._headers import OutgoingHeaders
from greenhttps._outgoing import request_framing, response_framing
from greenhttps._wire_format import Framing, request_bytes, response_bytes

CL5 = [("Content-Length", "5")]


def fields(pairs: list[tuple[str, str]]) -> OutgoingHeaders:
    out = OutgoingHeaders()
    out.update(pairs)
    return out


@pytest.mark.parametrize(
    "status, headers, head_request, peer_http10, keep_alive, kind, remaining, close, added",
    [
        (200, CL5, False, False, True, Framing.LENGTH, 5, False, []),
        (200, [], False, False, True, Framing.CHUNKED, 0, False, [b"Transfer-Encoding: chunked"]),
        (200, [], False, True, True, Framing.UNTIL_CLOSE, 0, True, [b"Connection: close"]),
        (200, [("Transfer-Encoding", "chunked")], False, True, True, Framing.UNTIL_CLOSE, 0, True,
         [b"Connection: close"]),
        (200, [("Transfer-Encoding", "gzip")], False, False, True, Framing.UNTIL_CLOSE, 0, True,
         [b"Connection: close"]),
        (200, [("Transfer-Encoding", "gzip, chunked")], False, False, True, Framing.CHUNKED, 0, False, []),
        (200, CL5, True, False, True, Framing.NONE, 0, False, []),
        (200, [], True, False, True, Framing.NONE, 0, False, [b"Transfer-Encoding: chunked"]),
        (204, [], False, False, True, Framing.NONE, 0, False, []),
        (304, CL5, False, False, True, Framing.NONE, 0, False, []),
        (200, CL5, False, False, False, Framing.LENGTH, 5, True, [b"Connection: close"]),
        (200, [*CL5, ("Connection", "keep-alive")], False, False, False, Framing.LENGTH, 5, True,
         [b"Connection: close"]),
        (200, [*CL5, ("Connection", "Upgrade, Keep-Alive")], False, False, False, Framing.LENGTH, 5, True,
         [b"Connection: upgrade, close"]),
        (200, [*CL5, ("Connection", "close")], False, False, True, Framing.LENGTH, 5, True, []),
    ],
)
def test_response_framing(status: int, headers: list[tuple[str, str]], head_request: bool, peer_http10: bool,
                          keep_alive: bool, kind: str, remaining: int, close: bool, added: list[bytes]) -> None:
    out = fields(headers)
    before = out.as_dict()
    for _ in range(2):  # decided, then serialised from the cache: the same head, a fresh framing
        pairs, framing = response_framing(out, status=status, head_request=head_request,
                                          peer_http10=peer_http10, keep_alive=keep_alive)
        head = response_bytes(status, "X", pairs)
        assert (framing.kind, framing.remaining, framing.close) == (kind, remaining, close)
        for line in added:
            assert b"\r\n" + line + b"\r\n" in head
        assert head.startswith(b"HTTP/1.1 %d X\r\n" % status) and head.endswith(b"\r\n\r\n")
        if kind is Framing.LENGTH:
            framing.frame(b"12345")  # counting down belongs to this framing only
    assert out.as_dict() == before  # the decision edits the wire fields, not the user's


def test_a_response_to_http10_loses_its_transfer_encoding() -> None:
    pairs, _ = response_framing(fields([("Transfer-Encoding", "chunked")]), status=200, head_request=False,
                                peer_http10=True, keep_alive=False)
    assert b"Transfer-Encoding" not in response_bytes(200, "OK", pairs)


def test_removed_fields_are_not_put_back() -> None:
    # B-31: no length, no Transfer-Encoding, no Connection: close-delimited, said by nothing.
    pairs, framing = response_framing(fields([("Date", "coffee o clock")]),
                                      {"content-length", "transfer-encoding", "connection"}, status=200,
                                      head_request=False, peer_http10=False, keep_alive=True)
    assert pairs == [(b"Date", b"coffee o clock")]
    assert (framing.kind, framing.close) == (Framing.UNTIL_CLOSE, True)


def test_a_length_we_set_is_not_parsed_again() -> None:
    _, framing = response_framing(fields(CL5), status=200, head_request=False, peer_http10=False,
                                  keep_alive=True, length=5)
    assert (framing.kind, framing.remaining) == (Framing.LENGTH, 5)


@pytest.mark.parametrize(
    "headers, kind, remaining, close",
    [
        ([], Framing.LENGTH, 0, False),
        (CL5, Framing.LENGTH, 5, False),
        ([("Transfer-Encoding", "chunked")], Framing.CHUNKED, 0, False),
        ([("Connection", "close")], Framing.LENGTH, 0, True),
    ],
)
def test_request_framing(headers: list[tuple[str, str]], kind: str, remaining: int, close: bool) -> None:
    pairs, framing = request_framing(fields(headers))
    assert request_bytes("POST", "/p", pairs).startswith(b"POST /p HTTP/1.1\r\n")
    assert (framing.kind, framing.remaining, framing.close) == (kind, remaining, close)


def test_framing_refuses_a_body_it_did_not_announce() -> None:
    _, framing = response_framing(OutgoingHeaders(), status=204, head_request=False, peer_http10=False,
                                  keep_alive=True)
    with pytest.raises(errors.InvalidArgumentError):
        framing.frame(b"x")
    _, framing = request_framing(fields(CL5))
    with pytest.raises(errors.InvalidArgumentError):
        framing.frame(b"too long")
    with pytest.raises(errors.InvalidArgumentError):
        request_bytes("BAD METHOD", "/", [])
    with pytest.raises(errors.InvalidArgumentError):
        request_framing(fields([("Content-Length", "5x")]))


def test_request_head_bytes_from_the_field_cache_are_the_same() -> None:
    """request_bytes() keeps a head's field lines for the next request with the same
    fields: the bytes are request_head()'s for every target, a bad method or target
    is still refused on the cached path, and no head with credentials is kept."""
    from greenhttps import _wire_format, errors

    fields = [(b"User-Agent", b"t/1"), (b"Host", b"a:1"), (b"Connection", b"keep-alive")]
    for target in ("/a", "/b?c=d", "/\xe9"):
        expected = _wire_format.request_head(b"GET", target.encode("latin-1"), fields)
        assert _wire_format.request_bytes("GET", target, list(fields)) == expected
    assert tuple(fields) in _wire_format._REQUEST_FIELDS
    with pytest.raises(errors.InvalidArgumentError, match="unescaped"):
        _wire_format.request_bytes("GET", "/a b", list(fields))
    with pytest.raises(errors.InvalidArgumentError, match="valid HTTP token"):
        _wire_format.request_bytes("G T", "/a", list(fields))
    secret = [*fields, (b"authorization", b"Basic eDp5")]
    assert _wire_format.request_bytes("GET", "/", secret) == _wire_format.request_head(b"GET", b"/", secret)
    assert tuple(secret) not in _wire_format._REQUEST_FIELDS


def test_the_request_field_cache_keeps_only_small_heads() -> None:
    """request_bytes remembers the field lines of small heads only (review: 512 heads
    with a unique 1 MiB field each held 1 GiB), and takes an unhashable value (a
    bytearray) without caching it, as request_head does."""
    from greenhttps import _wire_format

    _wire_format._REQUEST_FIELDS.clear()
    big = [(b"Host", b"a"), (b"X-Big", b"x" * 4096)]
    assert _wire_format.request_bytes("GET", "/", big) == _wire_format.request_head(b"GET", b"/", big)
    assert not _wire_format._REQUEST_FIELDS
    odd = [(b"Host", bytearray(b"a"))]
    assert _wire_format.request_bytes("GET", "/", odd) == b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"
    small = [(b"Host", b"a")]
    assert _wire_format.request_bytes("GET", "/x", small) == b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n"
    assert len(_wire_format._REQUEST_FIELDS) == 1
