"""The strict checks on raw head bytes that both parsers' results go through (pure).

Theory of operation
-------------------
Neither parser is strict enough alone (see ``shared/HARDENING.md``): h11 accepts bare
LF line endings, obs-fold, control characters in values, Content-Length together with
Transfer-Encoding, and folds repeated Content-Lengths; llhttp (as httptools builds it)
takes several spaces in a request line, "gzip, chunked" as chunked, and any trailing
whitespace.  Each of those was a request-smuggling CVE somewhere.  So a head is
checked here as bytes before either parser is believed -- a few ``bytes.count`` calls
and one regex over a few hundred bytes -- and its fields once parsed.

Nothing here does I/O, keeps state or imports a parser: the functions take bytes or
field pairs and raise :class:`greenhttps.errors.ProtocolError` with Node's (llhttp's)
error code and the status a server answers with.
"""

from __future__ import annotations

import re
from typing import Iterable

from . import errors

__all__ = [
    "MAX_REQUEST_LINE",
    "MAX_CHUNK_LINE",
    "MAX_CHUNK_SIZE",
    "protocol_error",
    "head_end",
    "check_request_line",
    "check_head_bytes",
    "check_raw_content_length",
    "check_fields",
    "transfer_coding_status",
]

#: Longest request line accepted before answering 414 (Node and nginx use 8 KiB).
MAX_REQUEST_LINE = 8192

#: Longest chunk-size line (with its extensions) accepted in a chunked body.
MAX_CHUNK_LINE = 16384
MAX_CHUNK_SIZE = 2**63 - 1

# RFC 9110 §5.5: field values are VCHAR / obs-text / SP / HTAB.  CR and LF are
# checked separately (they must come as CRLF pairs ending lines).
CONTROL_CHAR = re.compile(rb"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
# Searches rather than ``b"," in value``: CPython's ``bytes in bytes`` first
# tries the needle as an integer and builds (then drops) a TypeError, ~0.15 µs a test.
_OBS_FOLD = re.compile(rb"\n[ \t]")
_HOST_DELIMITER = re.compile(rb"[, \t]")
HEAD_END = b"\r\n\r\n"
_CONTENT_LENGTH_LINE = re.compile(rb"\r\ncontent-length[ \t]*:([^\r\n]*)", re.IGNORECASE)
TRANSFER_ENCODING_LINE = re.compile(rb"\r\ntransfer-encoding[ \t]*:([^\r\n]*)", re.IGNORECASE)


def protocol_error(message: str, status: int = 400, code: str = "HPE_INVALID") -> errors.ProtocolError:
    return errors.ProtocolError(message, code, status_hint=status)


def head_end(buf: bytes | bytearray) -> int:
    """The end of the head in ``buf`` (just after its blank line), or -1.

    A bare-LF end counts too: :func:`check_head_bytes` refuses it, and h11 ends
    heads there (so both parsers see the same head)."""
    crlf = buf.find(b"\r\n\r\n")
    bare = buf.find(b"\n\n", 0, crlf + 2 if crlf >= 0 else len(buf))
    if bare >= 0:
        return bare + 2
    return crlf + 4 if crlf >= 0 else -1


def check_request_line(pending: bytes | bytearray) -> None:
    if b"\n" not in pending[: MAX_REQUEST_LINE + 1]:
        raise protocol_error("request line too long", 414, "HPE_URI_TOO_LONG")


def check_head_bytes(pending: bytes) -> None:
    """RFC 9112 §2.2/§5.2: CRLF line endings only, no obs-fold, no control chars."""
    end = pending.find(HEAD_END)
    if end < 0:
        raise protocol_error("head not terminated by CRLF CRLF", 400, "HPE_LF_EXPECTED")
    head = pending[:end]
    crlf = head.count(b"\r\n")
    if head.count(b"\n") != crlf:
        raise protocol_error("bare LF in head", 400, "HPE_LF_EXPECTED")
    if head.count(b"\r") != crlf:
        raise protocol_error("bare CR in head", 400, "HPE_CR_EXPECTED")
    if _OBS_FOLD.search(head):
        raise protocol_error("obsolete line folding in head", 400, "HPE_INVALID_HEADER_TOKEN")
    if CONTROL_CHAR.search(head):
        raise protocol_error("control character in head", 400, "HPE_INVALID_HEADER_TOKEN")


def check_raw_content_length(pending: bytes) -> None:
    """h11 folds "5, 5" and equal repeated fields into one value; llhttp refuses
    both, and so do we: a proxy in front may have read them differently."""
    values = _CONTENT_LENGTH_LINE.findall(pending, 0, pending.find(HEAD_END) + 2)
    if len(values) > 1 or not values[0].strip(b" \t").isdigit():
        raise protocol_error("invalid Content-Length", 400, "HPE_INVALID_CONTENT_LENGTH")


def check_fields(fields: Iterable[tuple[bytes, bytes]], *, request: bool, max_count: int) -> bool | None:
    """Checks neither parser makes on parsed fields; returns whether the message
    declares a body (None: a Content-Length, which :func:`check_raw_content_length`
    checks in the raw head where h11 folded repeats)."""
    count = hosts = lengths = 0
    has_chunked = False
    length = b""
    for name, value in fields:
        count += 1
        if len(name) not in (4, 14, 17):
            continue
        lname = name.lower()
        if lname == b"content-length":
            lengths += 1
            length = value
        elif lname == b"transfer-encoding":
            has_chunked = True
        elif lname == b"host":
            hosts += 1
            if _HOST_DELIMITER.search(value):
                raise protocol_error("invalid Host header", 400)
    if count > max_count:
        raise protocol_error("too many header fields", 431, "HPE_HEADER_OVERFLOW")
    if lengths:
        if has_chunked:
            # RFC 9112 §6.1: a sender MUST NOT send both; h11 lets TE win, which is
            # how CL.TE smuggling works.  We refuse the message outright.
            raise protocol_error("both Content-Length and Transfer-Encoding", 400, "HPE_UNEXPECTED_CONTENT_LENGTH")
        # h11 takes "5, 5" as 5 and any size; as llhttp, one plain decimal of at
        # most 18 digits (2**63 > 10**18).
        if lengths > 1 or not length.isdigit() or len(length) > 18:
            raise protocol_error("invalid Content-Length", 400, "HPE_INVALID_CONTENT_LENGTH")
    if request and hosts > 1:
        raise protocol_error("more than one Host header", 400)
    if lengths:
        return None
    return has_chunked


def transfer_coding_status(head: bytes) -> int | None:
    """How a server refuses a head's Transfer-Encoding: 400 when a coding repeats (in
    one field or two: malformed), 501 when the last one is not chunked (unsupported),
    None when there is none or it ends in chunked.  ``head`` is one whole head."""
    values = TRANSFER_ENCODING_LINE.findall(head)
    if not values:
        return None
    codings = [c.strip().lower() for value in values for c in value.split(b",")]
    if len(values) > 1 or len(codings) != len(set(codings)):
        return 400
    return 501 if codings[-1] != b"chunked" else None
