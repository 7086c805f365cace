"""Outgoing framing, decided once by the message layer (:mod:`greenhttps._wire_format`).

``response_message`` / ``request_message`` return a head's bytes and the
:class:`OutgoingFraming` the wire then follows; these are the decisions, in memory.
"""

from __future__ import annotations

import pytest

from greenhttps import errors
from greenhttps._wire_format import Framing, request_message, response_message

CL5 = [(b"Content-Length", b"5")]


@pytest.mark.parametrize(
    "status, headers, head_request, peer_http10, keep_alive, kind, remaining, close, added",
    [
        (200, CL5, False, False, True, Framing.LENGTH, 5, False, []),
        (200, [], False, False, True, Framing.CHUNKED, 0, False, [b"Transfer-Encoding: chunked"]),
        (200, [], False, True, True, Framing.UNTIL_CLOSE, 0, True, [b"Connection: close"]),
        (200, [(b"Transfer-Encoding", b"chunked")], False, True, True, Framing.UNTIL_CLOSE, 0, True,
         [b"Connection: close"]),
        (200, [(b"Transfer-Encoding", b"gzip")], False, False, True, Framing.UNTIL_CLOSE, 0, True,
         [b"Connection: close"]),
        (200, CL5, True, False, True, Framing.NONE, 0, False, []),
        (200, [], True, False, True, Framing.NONE, 0, False, [b"Transfer-Encoding: chunked"]),
        (204, [], False, False, True, Framing.NONE, 0, False, []),
        (304, CL5, False, False, True, Framing.NONE, 0, False, []),
        (200, CL5, False, False, False, Framing.LENGTH, 5, True, [b"Connection: close"]),
        (200, [*CL5, (b"Connection", b"keep-alive")], False, False, False, Framing.LENGTH, 5, True,
         [b"Connection: close"]),
        (200, [*CL5, (b"Connection", b"close")], False, False, True, Framing.LENGTH, 5, True, []),
    ],
)
def test_response_framing(status: int, headers: list[tuple[bytes, bytes]], head_request: bool, peer_http10: bool,
                          keep_alive: bool, kind: str, remaining: int, close: bool, added: list[bytes]) -> None:
    for _ in range(2):  # decided, then from the cache: the same answer, a fresh framing object
        head, framing = response_message(status, "X", headers, head_request=head_request,
                                         peer_http10=peer_http10, keep_alive=keep_alive)
        assert (framing.kind, framing.remaining, framing.close) == (kind, remaining, close)
        for line in added:
            assert b"\r\n" + line + b"\r\n" in head
        assert head.startswith(b"HTTP/1.1 %d X\r\n" % status) and head.endswith(b"\r\n\r\n")
        if kind is Framing.LENGTH:
            framing.frame(b"12345")  # counting down must not change the cached decision


def test_a_response_to_http10_loses_its_transfer_encoding() -> None:
    head, _ = response_message(200, "OK", [(b"Transfer-Encoding", b"chunked")], head_request=False,
                               peer_http10=True, keep_alive=False)
    assert b"Transfer-Encoding" not in head


@pytest.mark.parametrize(
    "headers, kind, remaining, close",
    [
        ([], Framing.LENGTH, 0, False),
        (CL5, Framing.LENGTH, 5, False),
        ([(b"Transfer-Encoding", b"chunked")], Framing.CHUNKED, 0, False),
        ([(b"Connection", b"close")], Framing.LENGTH, 0, True),
    ],
)
def test_request_framing(headers: list[tuple[bytes, bytes]], kind: str, remaining: int, close: bool) -> None:
    head, framing = request_message("POST", "/p", headers)
    assert head.startswith(b"POST /p HTTP/1.1\r\n")
    assert (framing.kind, framing.remaining, framing.close) == (kind, remaining, close)


def test_framing_refuses_a_body_it_did_not_announce() -> None:
    _, framing = response_message(204, "No Content", [], head_request=False, peer_http10=False, keep_alive=True)
    with pytest.raises(errors.InvalidArgumentError):
        framing.frame(b"x")
    _, framing = request_message("POST", "/", CL5)
    with pytest.raises(errors.InvalidArgumentError):
        framing.frame(b"too long")
    with pytest.raises(errors.InvalidArgumentError):
        request_message("BAD METHOD", "/", [])
