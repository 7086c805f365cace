"""Representative rows of tests/test_parse_table.py over a real TLS socket, against a
running server, with each parser: the same answer whatever the parser, and however
the bytes arrive (whole, one byte per TLS record, odd pieces).

The in-memory table holds every case; these rows check that the server turns the
parser's answer into the reply on the wire: the status, then the close.
"""

from __future__ import annotations

from typing import Any

import pytest
from test_parse_table import PARSERS  # the parsers this installation has, as the table runs them

import helpers
from greenhttps import _server_conn

TE = b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"

# (id, bytes, the reply's status line)
ROWS = [
    ("host-userinfo", b"GET / HTTP/1.1\r\nHost: u@a\r\n\r\n", b"HTTP/1.1 400 Bad Request"),
    ("host-empty", b"GET / HTTP/1.1\r\nHost: \r\n\r\n", b"HTTP/1.1 400 Bad Request"),
    ("asterisk-get", b"GET * HTTP/1.1\r\nHost: a\r\n\r\n", b"HTTP/1.1 400 Bad Request"),
    ("te-gzip", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n", b"HTTP/1.1 400 Bad Request"),
    ("te-chunked-parameter", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked;q=1\r\n\r\n0\r\n\r\n",
     b"HTTP/1.1 400 Bad Request"),
    ("te-gzip-chunked", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
     b"HTTP/1.1 501 Not Implemented"),
    ("ext-bare-semicolon", TE + b"5;\r\nhello\r\n0\r\n\r\n", b"HTTP/1.1 400 Bad Request"),
    ("ext-bad-name", TE + b"5;a@b=1\r\nhello\r\n0\r\n\r\n", b"HTTP/1.1 400 Bad Request"),
    ("chunk-size-17-digits", TE + b"00000000000000005\r\nhello\r\n0\r\n\r\n", b"HTTP/1.1 400 Bad Request"),
    ("chunk-line-limit-second-chunk", TE + b"5\r\nhello\r\n5;a=" + b"x" * 17000 + b"\r\nhello\r\n0\r\n\r\n",
     b"HTTP/1.1 413 Payload Too Large"),
    ("long-method", b"G" * 9000 + b" / HTTP/1.1\r\nHost: a\r\n\r\n", b"HTTP/1.1 400 Bad Request"),
]


def _reads_body(req: Any, res: Any) -> None:
    req.read()
    res.end(b"ok")


def _pieces(data: bytes, how: str) -> list[bytes]:
    if how == "whole":
        return [data]
    size = 1 if len(data) < 2048 else 997  # one byte per record, or odd pieces
    return [data[i : i + size] for i in range(0, len(data), size)]


@pytest.mark.parametrize("how", ["whole", "bytewise"])
@pytest.mark.parametrize("name, data, status_line", [pytest.param(*row, id=row[0]) for row in ROWS])
def test_the_same_reply_from_both_parsers(make_server: Any, monkeypatch: pytest.MonkeyPatch, name: str,
                                          data: bytes, status_line: bytes, how: str) -> None:
    replies = []
    for parser_cls in PARSERS:
        monkeypatch.setattr(_server_conn, "SERVER_PARSER", parser_cls)
        srv = make_server(_reads_body)
        sock = helpers.raw_connect(int(srv.address()["port"]), tls=True)
        try:
            for piece in _pieces(data, how):
                try:
                    sock.sendall(piece)
                except OSError:
                    break  # the server answered and closed before the rest
            reply = helpers.read_until_eof(sock, 5, reset_ok=True)
        finally:
            sock.close()
        assert reply.split(b"\r\n", 1)[0] == status_line, (parser_cls.__name__, reply)
        assert b"\r\nConnection: close\r\n" in reply
        replies.append(reply)
    assert len(set(replies)) == 1
