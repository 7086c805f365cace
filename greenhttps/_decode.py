"""Content-Encoding decoders for ``fetch()``: bytes in, bytes out, never a socket.

What is installed is what is offered: gzip and deflate always (``zlib``), ``br``
when ``brotli`` or ``brotlicffi`` imports, ``zstd`` when ``zstandard`` (or Python
3.14's ``compression.zstd``) does.  :data:`ACCEPT_ENCODING` is the header value
that says so; ``pip install greenhttps[decode]`` installs the optional two, and
``isal``: gzip and deflate are inflated by ISA-L's igzip (python-isal's
``isal.isal_zlib``, zlib's API) when it imports, by the stdlib's ``zlib``
otherwise -- the same bytes out, the same cap, the same errors (:data:`INFLATE`
names the one in use).  On a crawl's 20 KiB HTML page (a 6.5 KB gzip) igzip takes
0.58x the instructions of zlib 1.2.13 (the CRC included: zlib's alone is a fifth
of its cost), zlib-ng 0.61x; inflate is about a third of a crawl's client CPU.

A :class:`BodyDecoder` undoes a ``Content-Encoding`` (one coding or a list, undone
last first) on pieces of a body as they arrive.  Output is produced in bounded
pieces and counted as it is produced, so a decompression bomb fails with
:class:`~greenhttps.errors.DecodedSizeError` once it passes the cap, having held at
most about the cap (plus one piece) in memory -- never the whole expansion.  The
decoders that cannot bound one call's output (``zstandard``, ``brotlicffi``) are fed
small slices of input instead: zstd's worst case is about 32,768 output bytes per
input byte (an RLE block), so a 256-byte slice yields at most ~8 MiB.

Strict on purpose: corrupt data, a body that ends before its compressed stream does,
and a coding with no decoder here all raise
:class:`~greenhttps.errors.ContentDecodingError` (a crawler should know it stored
garbage); ``fetch(..., decompress=False)`` gives the bytes as sent.
"""

from __future__ import annotations

import functools
import importlib
import zlib
from typing import Any, Callable, Iterator

from . import errors

__all__ = [
    "ACCEPT_ENCODING",
    "DEFAULT_MAX_DECODED_SIZE",
    "INFLATE",
    "BodyDecoder",
    "SUPPORTED",
    "codings",
    "decoder_for",
]

#: The cap fetch() puts on a decoded body unless told otherwise (bytes).
DEFAULT_MAX_DECODED_SIZE = 100 * 2**20
#: The most one decoder call hands back (zlib, brotli and stdlib zstd honour it).
_PIECE = 256 * 1024
#: zlib's own (ISA-L's or the stdlib's inflate): 16 KiB.  Asked for at most that,
#: ISA-L fills one buffer in place instead of growing it (a realloc and a copy), and
#: a page of more than one piece is joined into a new, exact-size bytes object,
#: allocated once the inflate's temporaries are gone.  Measured on the
#: crawl (1,000 workers keeping their last 20 KiB page): one 256 KiB call per page
#: left each page where ISA-L's growing buffer (next to its 87 KiB state) put it,
#: and the heap grew page after page: peak RSS 130.5 MiB; with 16 KiB pieces 109.9
#: (get() + gzip.decompress: 105.9).
_ZLIB_PIECE = 16 * 1024
#: Input slice for decoders without an output bound (see the module docstring).
_ZSTD_SLICE = 256
_BROTLI_SLICE = 16
#: The most the first decoder is given at once (see BodyDecoder.feed).
_FEED = 64 * 1024
#: RFC 9659 §3: a zstd content coding uses a window of at most 8 MB; decoders may
#: refuse more (it is also the decoder's memory per body).
_ZSTD_WINDOW_LOG = 23


def _optional(*names: str) -> Any:
    """The first of the modules ``names`` that imports, or None."""
    for name in names:
        try:
            return importlib.import_module(name)
        except ImportError:
            continue
    return None


#: The inflate for gzip and deflate: ISA-L's when installed, else the stdlib's (a
#: module with zlib's decompressobj() and error; tests switch it to run both).
_inflate: Any = _optional("isal.isal_zlib") or zlib
#: Which one that is: ``"isal.isal_zlib"`` or ``"zlib"``.
INFLATE: str = _inflate.__name__
_brotli: Any = _optional("brotli", "brotlicffi")
_zstandard: Any = _optional("zstandard")
#: Python 3.14's own zstd, when the zstandard package is not there.
_zstd_stdlib: Any = None if _zstandard is not None else _optional("compression.zstd")

#: The codings this installation decodes, in the order offered.
SUPPORTED: tuple[str, ...] = (
    "gzip",
    "deflate",
    *(("br",) if _brotli is not None else ()),
    *(("zstd",) if _zstandard is not None or _zstd_stdlib is not None else ()),
)
#: The ``Accept-Encoding`` value fetch() sends: exactly what it can decode.
ACCEPT_ENCODING = ", ".join(SUPPORTED)

#: Header values that are one coding's name as it stands (lowercase, no spaces).
_PLAIN_NAMES = frozenset({"gzip", "deflate", "br", "zstd", "compress"})
#: Old spellings RFC 9110 §8.4.1.3 says a recipient should treat as the new ones.
_ALIASES = {"x-gzip": "gzip", "x-compress": "compress"}


def codings(content_encoding: str | list[str] | None) -> list[str]:
    """The codings a ``Content-Encoding`` value names, in the order applied
    (lowercase; ``identity`` and empty members left out)."""
    if not content_encoding:
        return []
    if type(content_encoding) is str and content_encoding in _PLAIN_NAMES:
        return [content_encoding]  # the usual value ("gzip"): nothing to split or fold
    values = content_encoding if isinstance(content_encoding, list) else [content_encoding]
    found = []
    for value in values:
        for member in value.split(","):
            name = member.strip().lower()
            name = _ALIASES.get(name, name)
            if name and name != "identity":
                found.append(name)
    return found


# ------------------------------------------------------------------ one coding


class _Stage:
    """Undoes one coding; :meth:`decode` yields output pieces of at most ``_PIECE``
    (``_ZLIB_PIECE`` for gzip and deflate)."""

    name = ""

    def decode(self, data: bytes) -> Iterator[bytes]:
        raise NotImplementedError

    def finished(self) -> bool:
        """True once the compressed stream has ended (checked at the body's end)."""
        raise NotImplementedError


class _Zlib(_Stage):
    """gzip (RFC 1952, members one after another) or deflate, inflated by
    :data:`_inflate` (ISA-L's or the stdlib's, chosen when the stage is made).

    HTTP's ``deflate`` is the zlib format (RFC 1950), but servers have long sent raw
    deflate (RFC 1951) under that name; browsers take both, so does this: the first
    two bytes say which (a zlib header is a multiple of 31 with method 8).
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self._zlib: Any = _inflate
        self._obj: Any = self._zlib.decompressobj(16 + zlib.MAX_WBITS) if name == "gzip" else None
        #: Bytes kept for the next call: deflate's first byte (the format is not
        #: known yet), or gzip's that may start the next member.
        self._head = b""
        self._done = False

    def decode(self, data: bytes) -> Iterator[bytes]:
        if self._head:
            data, self._head = self._head + data, b""
        if self._obj is None:
            if len(data) < 2:
                self._head = data
                return
            zlib_wrapped = data[0] & 0x0F == 8 and (data[0] << 8 | data[1]) % 31 == 0
            self._obj = self._zlib.decompressobj(zlib.MAX_WBITS if zlib_wrapped else -zlib.MAX_WBITS)
        while data or not self._done:
            if self._done:
                if self.name == "gzip" and data == b"\x1f":
                    self._head = data  # perhaps the start of the next member
                    return
                if self.name == "gzip" and data[:2] == b"\x1f\x8b":
                    # RFC 1952 §2.2: a gzip file is a series of members.
                    self._obj, self._done = self._zlib.decompressobj(16 + zlib.MAX_WBITS), False
                else:
                    return  # bytes after the end of the stream: ignored, as zlib's own tools do
            try:
                out = self._obj.decompress(data, _ZLIB_PIECE)
            except self._zlib.error as exc:
                raise errors.ContentDecodingError(f"{self.name} body does not decode: {exc}") from None
            if out:
                yield out
            if self._obj.eof:
                self._done = True
                # Everything after the stream's end.  Not unconsumed_tail as well:
                # the stdlib's leaves the same bytes there too once an earlier call
                # stopped at its bound (ISA-L's does not), which would repeat a member.
                data = self._obj.unused_data
                continue
            data = self._obj.unconsumed_tail
            if not data and len(out) < _ZLIB_PIECE:
                return  # all input taken, no output pending: wait for more

    def finished(self) -> bool:
        return self._done


class _Brotli(_Stage):
    name = "br"

    def __init__(self) -> None:
        assert _brotli is not None
        self._obj = _brotli.Decompressor()
        # brotli >= 1.2 can stop at an output size; brotlicffi and older brotli
        # cannot, so they are fed small slices (see the module docstring).
        try:
            self._obj.process(b"", output_buffer_limit=_PIECE)
            self._bounded = True
        except TypeError:  # brotlicffi / brotli < 1.2
            self._bounded = False

    def decode(self, data: bytes) -> Iterator[bytes]:
        obj = self._obj
        try:
            if not self._bounded:
                for start in range(0, len(data), _BROTLI_SLICE):
                    out = obj.process(data[start:start + _BROTLI_SLICE])
                    if out:
                        yield out
                return
            out = obj.process(data, output_buffer_limit=_PIECE)
            if out:
                yield out
            while not obj.can_accept_more_data():
                out = obj.process(b"", output_buffer_limit=_PIECE)
                if not out:
                    break
                yield out
        except _brotli.error as exc:
            raise errors.ContentDecodingError(f"br body does not decode: {exc}") from None

    def finished(self) -> bool:
        return bool(self._obj.is_finished())


class _Zstd(_Stage):
    """zstd (RFC 8878), one frame after another (RFC 9659 allows several)."""

    name = "zstd"

    def __init__(self) -> None:
        self._obj: Any = self._new()
        self._done = False

    @staticmethod
    def _new() -> Any:
        if _zstandard is not None:
            return _zstandard.ZstdDecompressor(max_window_size=1 << _ZSTD_WINDOW_LOG).decompressobj()
        return _zstd_stdlib.ZstdDecompressor(  # pragma: no cover - Python 3.14 without zstandard
            options={_zstd_stdlib.DecompressionParameter.window_log_max: _ZSTD_WINDOW_LOG}
        )

    def decode(self, data: bytes) -> Iterator[bytes]:
        if _zstandard is None:  # pragma: no cover - Python 3.14 without zstandard
            yield from self._decode_stdlib(data)
            return
        pos = 0
        while pos < len(data):
            if self._done:
                self._obj, self._done = self._new(), False
            chunk = data[pos:pos + _ZSTD_SLICE]
            pos += _ZSTD_SLICE
            try:
                out = self._obj.decompress(chunk)
            except _zstandard.ZstdError as exc:
                raise errors.ContentDecodingError(f"zstd body does not decode: {exc}") from None
            if out:
                yield out
            if self._obj.eof:
                self._done = True
                data, pos = self._obj.unused_data + data[pos:], 0

    def _decode_stdlib(self, data: bytes) -> Iterator[bytes]:  # pragma: no cover - Python 3.14
        while data:
            if self._done:
                self._obj, self._done = self._new(), False
            try:
                out = self._obj.decompress(data, _PIECE)
                data = b""
                while True:
                    if out:
                        yield out
                    if self._obj.eof or self._obj.needs_input:
                        break
                    out = self._obj.decompress(b"", _PIECE)
            except _zstd_stdlib.ZstdError as exc:
                raise errors.ContentDecodingError(f"zstd body does not decode: {exc}") from None
            if self._obj.eof:
                self._done = True
                data = self._obj.unused_data

    def finished(self) -> bool:
        return self._done


_STAGES: dict[str, Callable[[], _Stage]] = {
    "gzip": functools.partial(_Zlib, "gzip"),
    "deflate": functools.partial(_Zlib, "deflate"),
}
if _brotli is not None:
    _STAGES["br"] = _Brotli
if _zstandard is not None or _zstd_stdlib is not None:
    _STAGES["zstd"] = _Zstd


# ------------------------------------------------------------------ a whole body


class BodyDecoder:
    """Undo ``names`` (codings in the order they were applied) on a body fed in pieces.

    ``feed(data)`` returns the decoded bytes so far, ``finish()`` what is left at the
    body's end and checks every stream ended.  ``max_size`` (bytes, None: no cap) bounds
    the decoded total: :class:`~greenhttps.errors.DecodedSizeError` past it.
    """

    def __init__(self, names: list[str], max_size: int | None = DEFAULT_MAX_DECODED_SIZE) -> None:
        self.max_size = max_size
        #: Decoded bytes produced so far.
        self.size = 0
        self._fed = False
        make = _STAGES.get(names[0]) if len(names) == 1 else None
        if make is not None:  # one coding we decode: the usual case
            self._stages = [make()]
            return
        missing = [name for name in names if name not in _STAGES]
        if missing:
            hint = " (pip install greenhttps[decode])" if set(missing) & {"br", "zstd"} else ""
            raise errors.ContentDecodingError(
                f"no decoder for Content-Encoding {', '.join(missing)}{hint}; "
                "decompress=False gives the body as sent"
            )
        #: Applied first is undone last.
        self._stages = [_STAGES[name]() for name in reversed(names)]

    def feed(self, data: bytes) -> bytes:
        """Decode the next piece of the body."""
        out: list[bytes] = []
        self._fed = self._fed or bool(data)
        # One coding (the usual case): its stage's pieces are the output, no chain to run.
        run = self._stages[0].decode if len(self._stages) == 1 else self._run_chain
        # The first stage takes at most _FEED at a time: zlib copies the input it has
        # not consumed yet on every call, which on one large piece is quadratic.
        for start in range(0, len(data), _FEED):
            for piece in run(data[start:start + _FEED]):
                self._count(piece)
                out.append(piece)
        return b"".join(out)

    def decode_all(self, data: bytes) -> bytes:
        """``feed(data) + finish()``: a whole body at once (what fetch() does with a
        small one), in fewer steps when it is one piece for one coding."""
        if len(self._stages) != 1 or len(data) > _FEED:
            return self.feed(data) + self.finish()
        self._fed = self._fed or bool(data)
        out = []
        limit = self.max_size
        for piece in self._stages[0].decode(data):
            self.size += len(piece)
            if limit is not None and self.size > limit:
                self._count(b"")  # raises DecodedSizeError (the size is past the cap already)
            out.append(piece)
        self.finish()
        return out[0] if len(out) == 1 else b"".join(out)

    def _run_chain(self, data: bytes) -> Iterator[bytes]:
        return self._run(0, data)

    def _count(self, piece: bytes) -> None:
        self.size += len(piece)
        if self.max_size is not None and self.size > self.max_size:
            raise errors.DecodedSizeError(
                f"decoded body passed the cap of {self.max_size} bytes "
                f"(Content-Encoding {', '.join(s.name for s in reversed(self._stages))}); "
                "raise max_decoded_size, or decompress=False for the bytes as sent",
                limit=self.max_size,
            )

    def _run(self, index: int, data: bytes) -> Iterator[bytes]:
        if index == len(self._stages):
            yield data
            return
        for piece in self._stages[index].decode(data):
            yield from self._run(index + 1, piece)

    def finish(self) -> bytes:
        """The body has ended: raise if a compressed stream had not.  (An empty
        body is empty whatever its Content-Encoding says, as browsers take it.)"""
        for stage in self._stages if self._fed else ():
            if not stage.finished():
                raise errors.ContentDecodingError(
                    f"{stage.name} body ended before its compressed stream did (truncated)"
                )
        return b""


def gunzip_whole(data: bytes, max_size: int | None = DEFAULT_MAX_DECODED_SIZE) -> bytes:
    """``decoder_for("gzip", max_size).decode_all(data)``: a whole gzip body at once,
    the same bytes out and the same errors, in fewer steps for the usual body (one
    gzip member, ending where the body does, at most :data:`_FEED` bytes): the stages'
    calls and generators cost ~18k instructions a crawled page, a tenth of its
    inflate.  Anything else (an error, a second member or bytes after the stream, a
    truncated stream, the size cap passed) is decoded again from the start by the
    general path, which says what is wrong."""
    if data and len(data) <= _FEED:
        obj = _inflate.decompressobj(16 + zlib.MAX_WBITS)
        pieces: list[bytes] = []
        size = 0
        limit = max_size if max_size is not None else -1
        rest = data
        try:
            while True:
                out = obj.decompress(rest, _ZLIB_PIECE)  # as _Zlib.decode
                size += len(out)
                if 0 <= limit < size:
                    pieces.clear()  # not held while the general path decodes it again
                    break  # the general path raises DecodedSizeError
                if out:
                    pieces.append(out)
                if obj.eof:
                    if not obj.unused_data:
                        return pieces[0] if len(pieces) == 1 else b"".join(pieces)
                    break  # another member, or bytes after the stream
                rest = obj.unconsumed_tail
                if not rest and len(out) < _ZLIB_PIECE:
                    break  # truncated
        except _inflate.error:
            pass
    return BodyDecoder(["gzip"], max_size).decode_all(data)


def decoder_for(content_encoding: str | list[str] | None,
                max_size: int | None = DEFAULT_MAX_DECODED_SIZE) -> BodyDecoder | None:
    """A decoder for a ``Content-Encoding`` header value, or None for identity.

    Raises :class:`~greenhttps.errors.ContentDecodingError` for a coding with no
    decoder here (``compress``, or ``br``/``zstd`` without their packages).
    """
    names = codings(content_encoding)
    return BodyDecoder(names, max_size) if names else None
