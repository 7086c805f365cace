"""The strict checks on raw head bytes that both parsers' results go through (pure).

Theory of operation
-------------------
Neither parser is strict enough alone (see ``shared/HARDENING.md``): h11 accepts bare
LF line endings, obs-fold, control characters in values, Content-Length together with
Transfer-Encoding, and folds repeated Content-Lengths; llhttp (as httptools builds it)
takes several spaces in a request line, "gzip, chunked" as chunked, and any trailing
whitespace.  Each of those was a request-smuggling CVE somewhere.  So a head is
checked here as bytes before either parser is believed and its fields once parsed.

The common head costs little: when it arrives whole, one match of
:data:`CLEAN_REQUEST_HEAD` or :data:`CLEAN_RESPONSE_HEAD` stands for the line-by-line
checks (and, a response's status line being clean, for :func:`check_head_bytes`);
a response head's match is made line by line by :func:`clean_response_head`, against
lines remembered from earlier heads, which also tells when :func:`check_raw_framing`
has nothing to find and hands the fields to the parser;
:func:`check_raw_framing` finds the framing fields in one pass and settles one plain
Content-Length there; :func:`check_fields` can run inside the parser's own pass over
the fields (:func:`check_host`, :func:`check_field_counts`).  Anything off those
paths goes through the full checks, which place the error (tests/test_parse_table.py
holds the heads next to each shortcut with the answers the full checks give).

The checks that decide an answer live here, so that both parsers give the same one
(the same status and the same llhttp code): the request line and field lines as
they arrive (:func:`check_request_line_prefix`, :func:`check_head_prefix`: a
malformed head is refused when its bad line is whole, as Node does, not when the
head ends), the framing fields of a whole head (:func:`check_raw_framing`), Host and
the asterisk-form, and every chunk-size line (:func:`chunk_line`), whichever parser
reads the chunked body.

Nothing here does I/O, keeps state (but bounded tables of lines that passed) or
imports a parser: the functions take bytes or
field pairs and raise :class:`greenhttps.errors.ProtocolError` with Node's (llhttp's)
error code, the status a server answers with, and the offset of the offending byte
(from which the parser computes Node's ``bytesParsed``).
"""

from __future__ import annotations

import re
from typing import Iterable

from . import errors

__all__ = [
    "MAX_REQUEST_LINE",
    "check_head_prefix",
    "check_status_line_prefix",
    "check_request_target",
    "check_raw_framing",
    "chunk_line",
    "MAX_CHUNK_LINE",
    "MAX_CHUNK_SIZE",
    "protocol_error",
    "head_end",
    "STRICT_STATUS_LINE",
    "CLEAN_REQUEST_HEAD",
    "CLEAN_RESPONSE_HEAD",
    "clean_response_head",
    "NOT_CLEAN",
    "CLEAN",
    "CLEAN_PLAIN_FRAMING",
    "check_request_line",
    "check_head_bytes",
    "check_fields",
    "check_field_counts",
    "check_host",
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
# RFC 9110 §7.2 / RFC 3986 §3.2.2: Host = uri-host [ ":" port ].  No userinfo, path
# or empty value; and no comma either (a sub-delim, but "a, b" is two folded Hosts).
_HOST = re.compile(
    rb"(?:\[[0-9A-Fa-f:.]+\]|\[v[0-9A-Fa-f]+\.[!$&'()*+;=:A-Za-z0-9._~-]+\]"
    rb"|(?:[A-Za-z0-9._~!$&'()*+;=-]|%[0-9A-Fa-f]{2})+)(?::[0-9]*)?"
)
_TCHAR = rb"[!#$%&'*+.^_`|~0-9A-Za-z-]"
_NOT_TCHAR = re.compile(rb"[^!#$%&'*+.^_`|~0-9A-Za-z-]")
_QUOTED = rb'"(?:[\t !#-\[\]-~\x80-\xff]|\\[\t -~\x80-\xff])*"'
# RFC 9112 §7.1.1: chunk-ext = *( ";" chunk-ext-name [ "=" chunk-ext-val ] ), without
# the BWS llhttp refuses too.
_CHUNK_LINE = re.compile(
    rb"([0-9A-Fa-f]{1,16})((?:;" + _TCHAR + rb"+(?:=(?:" + _TCHAR + rb"+|" + _QUOTED + rb"))?)*)\r\n"
)
_HEX_RUN = re.compile(rb"[0-9A-Fa-f]*")
# RFC 9112 §3: method SP request-target SP HTTP-version (one SP each, no CTL in the
# target), and the prefix of one: what can still become a request line.
_REQUEST_LINE = re.compile(_TCHAR + rb"+ [^ \x00-\x1f\x7f]+ HTTP/[0-9]\.[0-9]\r\n")
_REQUEST_PREFIX = re.compile(_TCHAR + rb"*(?: (?:[^ \x00-\x1f\x7f]+(?: (?:H(?:T(?:T(?:P(?:/(?:[0-9](?:\.(?:[0-9]\r?)?)?)?)?)?)?)?)?)?)?)?")
_FIELD_LINE = re.compile(_TCHAR + rb"+:[^\x00-\x08\x0a-\x1f\x7f]*\r\n")
_FIELD_LINES = re.compile(rb"(?:" + _TCHAR + rb"+:[^\x00-\x08\x0a-\x1f\x7f]*\r\n)*(?:\r\n)?")
# llhttp's methods (Node's http.METHODS, with its RTSP ones): where an unknown method
# stops being a prefix of one of them is where llhttp reports HPE_INVALID_METHOD.
LLHTTP_METHODS = (
    b"DELETE GET HEAD POST PUT CONNECT OPTIONS TRACE COPY LOCK MKCOL MOVE PROPFIND PROPPATCH SEARCH UNLOCK "
    b"BIND REBIND UNBIND ACL REPORT MKACTIVITY CHECKOUT MERGE M-SEARCH NOTIFY SUBSCRIBE UNSUBSCRIBE PATCH "
    b"PURGE MKCALENDAR LINK UNLINK SOURCE QUERY PRI DESCRIBE ANNOUNCE SETUP PLAY PAUSE TEARDOWN "
    b"GET_PARAMETER SET_PARAMETER REDIRECT RECORD FLUSH"
).split()
HEAD_END = b"\r\n\r\n"
_CONTENT_LENGTH_LINE = re.compile(rb"\r\ncontent-length[ \t]*:([^\r\n]*)", re.IGNORECASE)
TRANSFER_ENCODING_LINE = re.compile(rb"\r\ntransfer-encoding[ \t]*:([^\r\n]*)", re.IGNORECASE)
# The framing fields of a head in one pass: (b"content-length" or b"", value) pairs.
_FRAMING_FIELDS = re.compile(rb"\r\n(?:(content-length)|transfer-encoding)[ \t]*:([^\r\n]*)", re.IGNORECASE)
# A status line with nothing for check_head_bytes to find: CRLF-terminated, no CTL
# (HTAB aside).  After Parser._check_lines checked the field lines, such a head
# needs no check_head_bytes; a head without one goes through it as before.
STRICT_STATUS_LINE = re.compile(rb"HTTP/([0-9])\.([0-9]) ([0-9]{3})(?: [^\x00-\x08\x0a-\x1f\x7f]*)?\r\n")
# A whole head that passes every check of check_request_line_prefix (its line within
# MAX_REQUEST_LINE: the caller's to see) or check_status_line_prefix and
# check_head_prefix, in one match: neither first line can hold an LF, so the
# concatenation matches exactly when the line and the field lines would.  A head
# that does not match goes through those checks, which say what is wrong.
CLEAN_REQUEST_HEAD = re.compile(_REQUEST_LINE.pattern + _FIELD_LINES.pattern)
CLEAN_RESPONSE_HEAD = re.compile(STRICT_STATUS_LINE.pattern + _FIELD_LINES.pattern)
#: Status lines that passed STRICT_STATUS_LINE, and field lines that passed
#: _FIELD_LINE (both without their CRLF), each field line with its framing kind
#: (_NOT_FRAMING, _PLAIN_LENGTH, _FRAMING) and its (name, value) pair as llhttp
#: reads it: a server sends the same lines again and again (all but Date, most of
#: the time).  Cleared when full, so that no peer can grow them.
_GOOD_STATUS_LINES: set[bytes] = set()
_GOOD_FIELD_LINES: dict[bytes, tuple[int, tuple[bytes, bytes]]] = {}
_GOOD_LINES_MAX = 512
_GOOD_LINE_LENGTH = 256
_NOT_FRAMING, _PLAIN_LENGTH, _FRAMING = 0, 1, 2
#: Field lines never remembered: credentials and cookies must not outlive their
#: message in a module-wide table (as _headers._SECRET_FIELDS).
_SECRET_NAMES = frozenset({b"set-cookie", b"cookie", b"authorization", b"proxy-authorization"})
#: clean_response_head's answers: not clean; clean; clean, and check_raw_framing
#: would pass it (no Transfer-Encoding, at most one Content-Length, a plain decimal).
NOT_CLEAN, CLEAN, CLEAN_PLAIN_FRAMING = 0, 1, 2


def clean_response_head(head: bytes, fields: list[tuple[bytes, bytes]] | None = None) -> int:
    """Whether ``CLEAN_RESPONSE_HEAD.fullmatch(head)`` matches, for one whole head (up
    to and including its blank line), in fewer instructions: line by line, a line
    seen before costing a dict lookup instead of a regex run over its bytes (the one
    fullmatch was ~13k instructions for a 190-byte Node response head).  A clean head
    whose framing fields :func:`check_raw_framing` would pass without a word is
    :data:`CLEAN_PLAIN_FRAMING`, so that it need not search the head again.  Given
    ``fields``, a clean head's field lines are appended to it as ``(name, value)``
    pairs, the value without the whitespace around it (what llhttp reports, and the
    parsers keep: RFC 9110 §5.5).

    The same answer: neither pattern lets a CR or LF into a line, so a head that
    matches is exactly ``status CRLF (field CRLF)* CRLF``, and splitting all but its
    final CRLF CRLF at each CRLF gives those lines; a piece that holds a stray CR or
    LF fails its line's pattern as the head would fail the whole.  A head that ends
    otherwise (a bare LF) is left to the pattern.  In a clean head a field name runs
    up to its colon (no whitespace), so _FRAMING_FIELDS finds exactly the lines that
    start, in any case, with ``content-length:`` or ``transfer-encoding:``."""
    if head[-4:] != b"\r\n\r\n":
        return CLEAN if CLEAN_RESPONSE_HEAD.fullmatch(head) is not None else NOT_CLEAN
    lines = head[:-4].split(b"\r\n")
    status = lines[0]
    if status not in _GOOD_STATUS_LINES:
        if STRICT_STATUS_LINE.fullmatch(status + b"\r\n") is None:
            return NOT_CLEAN
        if len(status) <= _GOOD_LINE_LENGTH:
            if len(_GOOD_STATUS_LINES) >= _GOOD_LINES_MAX:
                _GOOD_STATUS_LINES.clear()
            _GOOD_STATUS_LINES.add(status)
    known = _GOOD_FIELD_LINES.get
    lengths = framing = 0
    for line in lines[1:]:
        entry = known(line)
        if entry is None:
            entry = _field_line_kind(line)
            if entry is None:
                return NOT_CLEAN
        if fields is not None:
            fields.append(entry[1])
        kind = entry[0]
        if kind:
            if kind == _PLAIN_LENGTH:
                lengths += 1
            else:
                framing += 1
    return CLEAN_PLAIN_FRAMING if not framing and lengths <= 1 else CLEAN


def _field_line_kind(line: bytes) -> tuple[int, tuple[bytes, bytes]] | None:
    """A field line's framing kind and (name, value) pair (None: it fails
    _FIELD_LINE), remembered."""
    if _FIELD_LINE.fullmatch(line + b"\r\n") is None:
        return None
    name, _, value = line.partition(b":")
    value = value.strip(b" \t")
    lower = name.lower()
    if lower == b"content-length":
        kind = _PLAIN_LENGTH if value.isdigit() and len(value) <= 18 else _FRAMING
    else:
        kind = _FRAMING if lower == b"transfer-encoding" else _NOT_FRAMING
    entry = (kind, (name, value))
    if len(line) <= _GOOD_LINE_LENGTH and lower not in _SECRET_NAMES:
        if len(_GOOD_FIELD_LINES) >= _GOOD_LINES_MAX:
            _GOOD_FIELD_LINES.clear()
        _GOOD_FIELD_LINES[line] = entry
    return entry


def protocol_error(message: str, status: int = 400, code: str = "HPE_INVALID",
                   at: int | None = None) -> errors.ProtocolError:
    """The error for a malformed message; ``at`` is the offset of the offending byte
    in the bytes checked (the parser turns it into Node's ``bytesParsed``).  The
    message starts as Node's does ("Parse Error: ...")."""
    return errors.ProtocolError(f"Parse Error: {message}", code, status_hint=status, position=at)


def _method_error_at(line: bytes | bytearray) -> int | None:
    """Where llhttp stops on this line's method when it is not one llhttp knows
    (Node reports HPE_INVALID_METHOD at that offset); None for a known method, or
    for one still arriving that may become one."""
    end = line.find(b" ")
    method = bytes(line[: end if end >= 0 else len(line)])
    if end >= 0 and method in LLHTTP_METHODS:
        return None
    for i in range(1, len(method) + 1):
        prefix = method[:i]
        if not any(m.startswith(prefix) for m in LLHTTP_METHODS):
            return i - 1
    return len(method) if end >= 0 else None


def check_request_line_prefix(buf: bytes | bytearray) -> None:
    """RFC 9112 §3 on the request line, as soon as its bytes are here: a line (or
    the start of one) that can no longer become ``method SP target SP HTTP/d.d CRLF``
    is refused at once, not when the head ends or the headers timeout passes.  The
    code is llhttp's: HPE_INVALID_METHOD (at llhttp's offset) when the method is not
    one llhttp knows, else the part that is wrong."""
    newline = buf.find(b"\n", 0, MAX_REQUEST_LINE + 1)
    line = buf[: newline + 1] if newline >= 0 else buf[:MAX_REQUEST_LINE]
    if newline >= 0 and _REQUEST_LINE.fullmatch(line):
        return
    good = _REQUEST_PREFIX.match(line).end()  # type: ignore[union-attr]
    if good == len(line):
        if newline < 0 and len(buf) > MAX_REQUEST_LINE:
            if b" " not in line:  # still in the method: a bad method, not a long URI
                raise protocol_error("method too long", 400, "HPE_INVALID_METHOD", _method_error_at(line) or 0)
            raise protocol_error("request line too long", 414, "HPE_URI_TOO_LONG", MAX_REQUEST_LINE)
        return  # may still become a request line
    method_at = _method_error_at(line)
    if method_at is not None:
        raise protocol_error("invalid method", 400, "HPE_INVALID_METHOD", method_at)
    space = line.find(b" ")
    if good <= space:
        raise protocol_error("invalid method", 400, "HPE_INVALID_METHOD", good)
    if line.find(b" HTTP/", space + 1) < 0 or good <= line.find(b" ", space + 1):
        raise protocol_error("invalid request target", 400, "HPE_INVALID_URL", good)
    if line[good : good + 1] == b"\n":
        raise protocol_error("bare LF after the version", 400, "HPE_INVALID_VERSION", good + 1)
    raise protocol_error("invalid HTTP version", 400, "HPE_INVALID_VERSION", good)


def check_status_line_prefix(buf: bytes | bytearray) -> None:
    """A response must start with ``HTTP/``: anything else is refused as soon as it
    is seen (llhttp's HPE_INVALID_CONSTANT, at the first byte that differs)."""
    if buf.startswith(b"HTTP/"):
        return  # every response: one C call (the loop below costs ~10x that)
    start = bytes(buf[:5])
    for i, byte in enumerate(start):
        if byte != b"HTTP/"[i]:
            raise protocol_error("expected HTTP/", 400, "HPE_INVALID_CONSTANT", i)


def check_head_prefix(buf: bytes | bytearray, start: int, stop: int) -> None:
    """RFC 9112 §5 on the field lines in ``buf[start:stop]`` (whole lines, each ending
    in LF), as they arrive: ``token ":" value CRLF``, no CTL, no obs-fold.  Offsets
    are llhttp's (the offending byte)."""
    if _FIELD_LINES.fullmatch(buf, start, stop) is not None:
        return  # the common case, in one pass; else find the line at fault
    pos = start
    while pos < stop:
        end = buf.find(b"\n", pos, stop)
        if end < 0:
            return
        if end == pos + 1 and buf[pos] == 13:
            return  # the blank line: the head ends here
        if _FIELD_LINE.fullmatch(buf, pos, end + 1) is None:
            _field_line_error(bytes(buf[pos : end + 1]), pos)
        pos = end + 1


def _field_line_error(line: bytes, pos: int) -> None:
    if line[:1] in (b" ", b"\t"):
        raise protocol_error("obsolete line folding in head", 400, "HPE_INVALID_HEADER_TOKEN", pos)
    colon = line.find(b":")
    name = _NOT_TCHAR.search(line, 0, colon if colon > 0 else len(line))
    if name is not None or colon <= 0:
        at = name.start() if name is not None else max(colon, 0)
        if line[at : at + 1] == b"\n":
            raise protocol_error("bare LF in head", 400, "HPE_LF_EXPECTED", pos + at)
        raise protocol_error("invalid header name", 400, "HPE_INVALID_HEADER_TOKEN", pos + at)
    cr = line.find(b"\r")
    if 0 <= cr < len(line) - 2:
        raise protocol_error("bare CR in head", 400, "HPE_LF_EXPECTED", pos + cr + 1)
    if cr < 0:
        raise protocol_error("bare LF in head", 400, "HPE_LF_EXPECTED", pos + len(line))
    bad = CONTROL_CHAR.search(line)
    raise protocol_error("control character in head", 400, "HPE_INVALID_HEADER_TOKEN",
                         pos + (bad.start() if bad else colon))


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
        raise protocol_error("bare CR in head", 400, "HPE_LF_EXPECTED")
    if _OBS_FOLD.search(head):
        raise protocol_error("obsolete line folding in head", 400, "HPE_INVALID_HEADER_TOKEN")
    if CONTROL_CHAR.search(head):
        raise protocol_error("control character in head", 400, "HPE_INVALID_HEADER_TOKEN")


def check_fields(fields: Iterable[tuple[bytes, bytes]], *, request: bool, max_count: int) -> bool | None:
    """Checks neither parser makes on parsed fields; returns whether the message
    declares a body (None: a Content-Length, which :func:`check_raw_framing`
    checked in the raw head, where h11 had not yet folded repeats)."""
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
            check_host(value)
    return check_field_counts(count, lengths, length, has_chunked, hosts, request=request, max_count=max_count)


def check_host(value: bytes) -> None:
    """One Host field's value (:func:`check_fields`, which a parser may run as part
    of its own pass over the fields: then it calls this for each Host, in order,
    and :func:`check_field_counts` after)."""
    if _HOST.fullmatch(value) is None:
        raise protocol_error("invalid Host header", 400, "HPE_INVALID_HEADER_TOKEN")


def check_field_counts(count: int, lengths: int, length: bytes, has_chunked: bool, hosts: int, *,
                       request: bool, max_count: int) -> bool | None:
    """The rest of :func:`check_fields`, from what one pass over the fields counted:
    ``count`` fields, ``lengths`` Content-Lengths (the last one ``length``), a
    Transfer-Encoding or not, ``hosts`` Hosts."""
    if count > max_count:
        raise protocol_error("too many header fields", 431, "HPE_HEADER_OVERFLOW")
    if lengths:
        if has_chunked:
            # RFC 9112 §6.1: a sender MUST NOT send both; h11 lets TE win, which is
            # how CL.TE smuggling works.  We refuse the message outright.
            # Node 20 (llhttp 8) reports it as HPE_INVALID_TRANSFER_ENCODING.
            raise protocol_error("both Content-Length and Transfer-Encoding", 400, "HPE_INVALID_TRANSFER_ENCODING")
        # h11 takes "5, 5" as 5 and any size; as llhttp, one plain decimal of at
        # most 18 digits (2**63 > 10**18).
        if lengths > 1 or not length.isdigit() or len(length) > 18:
            raise protocol_error("invalid Content-Length", 400, "HPE_INVALID_CONTENT_LENGTH")
    if request and hosts > 1:
        raise protocol_error("more than one Host header", 400)
    if lengths:
        return None
    return has_chunked


def header_overflow_at(buf: bytes | bytearray, max_size: int) -> int:
    """Where Node reports HPE_HEADER_OVERFLOW in this head: it counts the target, the
    field names and the values (not the method, the version, ": " or CRLFs) and stops
    at the end of the field (just past its CR) where the count reaches ``max_size``;
    the end of ``buf`` if the count never does here (our limit counts every byte)."""
    newline = buf.find(b"\n")
    if newline < 0:
        return len(buf)
    line = bytes(buf[:newline])
    parts = line.split(b" ")
    count = len(parts[1]) if len(parts) > 2 else 0
    pos = newline + 1
    while pos < len(buf):
        end = buf.find(b"\n", pos)
        field = bytes(buf[pos : end if end >= 0 else len(buf)])
        name, _, value = field.partition(b":")
        count += len(name) + len(value.strip(b" \t\r"))
        if count >= max_size or end < 0:
            return min(len(buf), (end if end >= 0 else len(buf)))
        pos = end + 1
    return len(buf)


def check_raw_framing(head: bytes, *, request: bool) -> None:
    """The framing fields of one whole head, checked as bytes before either parser
    reads it (so that both answer with the same code): Content-Length one plain
    decimal, never with Transfer-Encoding (Node 20: HPE_INVALID_TRANSFER_ENCODING,
    just past the later field's colon), and a well-formed Transfer-Encoding list."""
    found = _FRAMING_FIELDS.findall(head)
    if not found:
        return  # most requests: one search, and nothing to check
    if len(found) == 1 and found[0][0]:
        # Most responses: one Content-Length and no Transfer-Encoding, found in the
        # same pass; a plain decimal passes here, anything else is placed below.
        stripped = found[0][1].strip(b" \t")
        if stripped.isdigit() and len(stripped) <= 18:
            return
    lengths = list(_CONTENT_LENGTH_LINE.finditer(head))
    codings = list(TRANSFER_ENCODING_LINE.finditer(head))
    if lengths and codings:
        at = max(lengths[0].start(1), codings[0].start(1))
        raise protocol_error("both Content-Length and Transfer-Encoding", 400, "HPE_INVALID_TRANSFER_ENCODING", at)
    if len(lengths) > 1:
        raise protocol_error("repeated Content-Length", 400, "HPE_INVALID_CONTENT_LENGTH", lengths[1].start(1))
    if lengths:
        value = lengths[0].group(1)
        stripped = value.strip(b" \t")
        if not stripped.isdigit() or len(stripped) > 18:
            bad = re.search(rb"[^0-9 \t]", value)
            offset = bad.start() if bad else len(value)
            raise protocol_error("invalid Content-Length", 400, "HPE_INVALID_CONTENT_LENGTH", lengths[0].start(1) + offset)
    if codings:
        status = transfer_coding_status(head)
        if status == 400 or (status is not None and not request):
            raise protocol_error("invalid Transfer-Encoding", 400, "HPE_INVALID_TRANSFER_ENCODING", codings[-1].end())


def check_request_target(method: str, target: str) -> None:
    """RFC 9112 §3.2.4: the asterisk-form is only for OPTIONS."""
    if target == "*" and method != "OPTIONS":
        raise protocol_error("asterisk-form target with a method other than OPTIONS", 400, "HPE_INVALID_URL")


_CODING = re.compile(_TCHAR + rb"+(?:[ \t]*;[ \t]*" + _TCHAR + rb"+=(?:" + _TCHAR + rb"+|" + _QUOTED + rb"))*")


def transfer_coding_status(head: bytes) -> int | None:
    """How a server refuses a head's Transfer-Encoding (RFC 9112 §6.1, §7): 400 when
    the list is malformed (an empty element, a bad coding, parameters on chunked,
    chunked twice, the field repeated) or its final coding is not chunked (the body
    length cannot be known); 501 for a well-formed list ending in chunked that names
    another coding (none is implemented here); None when there is none, or only
    chunked.  ``head`` is one whole head."""
    values = TRANSFER_ENCODING_LINE.findall(head)
    if not values:
        return None
    codings = [c.strip(b" \t") for value in values for c in value.split(b",")]
    if len(values) > 1 or any(_CODING.fullmatch(c) is None for c in codings):
        return 400
    names = [c.split(b";", 1)[0].rstrip(b" \t").lower() for c in codings]
    if names[-1] != b"chunked" or codings[-1].lower() != b"chunked" or names.count(b"chunked") > 1:
        return 400
    return 501 if len(names) > 1 else None


def chunk_line(buf: bytes | bytearray, start: int) -> tuple[int, int] | None:
    """The chunk-size line at ``buf[start:]``, checked as soon as its bytes are here
    (however they arrive): ``(size, end)`` with ``end`` just past its LF, or None
    while it is incomplete.  At most 16 hex digits (llhttp: below 2**64), extensions
    as RFC 9112's ABNF (llhttp: HPE_STRICT), the whole line within 16 KiB (Node: 413,
    for every chunk)."""
    digits = _HEX_RUN.match(buf, start).end() - start  # type: ignore[union-attr]
    if digits > 16:
        raise protocol_error("chunk size too large", 400, "HPE_INVALID_CHUNK_SIZE", start + 16)
    if digits == 0 and len(buf) > start:
        raise protocol_error("invalid chunk size", 400, "HPE_INVALID_CHUNK_SIZE", start)
    newline = buf.find(b"\n", start, start + MAX_CHUNK_LINE + 2)
    if newline < 0:
        if len(buf) - start >= MAX_CHUNK_LINE + 2:
            raise protocol_error("chunk extensions too large", 413, "HPE_CHUNK_EXTENSIONS_OVERFLOW",
                                 start + MAX_CHUNK_LINE + 2)
        rest = buf[start + digits : start + digits + 1]
        if rest and rest not in b";\r":
            raise protocol_error("invalid chunk size", 400, "HPE_INVALID_CHUNK_SIZE", start + digits)
        return None
    match = _CHUNK_LINE.fullmatch(buf, start, newline + 1)
    if match is None:
        at = start + digits
        if buf[at : at + 1] == b";":
            raise protocol_error("invalid chunk extension", 400, "HPE_STRICT", at)
        raise protocol_error("invalid chunk size", 400, "HPE_INVALID_CHUNK_SIZE", at)
    return int(match.group(1), 16), newline + 1
