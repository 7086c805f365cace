"""Content-Encoding decoding: the pure decoders (greenhttps._decode) and fetch() on the wire.

Every compressed body here is made by the real library (zlib/gzip, brotli, zstandard,
or Node's zlib for the Node origin), including the bombs: 256 MiB of zeros
compressed, which must fail at the cap having held about the cap in memory.
"""

from __future__ import annotations

import gzip
import importlib
import importlib.util
import os
import tracemalloc
import zlib
from typing import Any, Callable

import pytest

import greenhttps
import helpers
from greenhttps import _decode, errors

brotli = pytest.importorskip("brotli")
zstandard = pytest.importorskip("zstandard")

pytestmark = pytest.mark.timeout(60)

#: The inflates _decode may use for gzip and deflate: ISA-L's (the decode extra) and
#: the stdlib's fallback.  Tests that inflate take the ``inflate`` fixture: both run.
HAVE_ISAL = importlib.util.find_spec("isal") is not None
INFLATES = [
    pytest.param("isal.isal_zlib", marks=pytest.mark.skipif(not HAVE_ISAL, reason="isal not installed")),
    "zlib",
]


@pytest.fixture(params=INFLATES)
def inflate(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Any:
    """Run the test with ``_decode`` inflating through one backend (module-wide, so a
    fetch() in the test uses it too)."""
    module = importlib.import_module(request.param)
    monkeypatch.setattr(_decode, "_inflate", module)
    return module

BODY = os.urandom(3000) * 20 + b"<html>" + b"hello, world " * 20000


def _raw_deflate(data: bytes) -> bytes:
    obj = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    return obj.compress(data) + obj.flush()


ENCODERS: dict[str, Callable[[bytes], bytes]] = {
    "gzip": gzip.compress,
    "deflate": zlib.compress,  # RFC 1950 zlib, what the RFC means
    "deflate-raw": _raw_deflate,  # what some servers send under "deflate"
    "br": brotli.compress,
    "zstd": lambda data: zstandard.ZstdCompressor().compress(data),
    "gzip-members": lambda data: gzip.compress(data[:1000]) + gzip.compress(data[1000:]),
    "zstd-frames": lambda data: (zstandard.ZstdCompressor().compress(data[:1000])
                                 + zstandard.ZstdCompressor().compress(data[1000:])),
}


def _coding(kind: str) -> str:
    return kind.split("-")[0]


def _decode_in_pieces(coding: str, data: bytes, size: int, cap: int | None = None) -> bytes:
    decoder = _decode.decoder_for(coding, cap)
    assert decoder is not None
    out = [decoder.feed(data[i:i + size]) for i in range(0, len(data), size)]
    return b"".join(out) + decoder.finish()


# ------------------------------------------------------------------ pure


@pytest.mark.parametrize("kind", sorted(ENCODERS))
@pytest.mark.parametrize("size", [1, 13, 4096, 10**8])
def test_each_coding_round_trips_in_any_pieces(inflate: Any, kind: str, size: int) -> None:
    data = ENCODERS[kind](BODY)
    assert _decode_in_pieces(_coding(kind), data, size) == BODY


@pytest.mark.parametrize("kind", sorted(ENCODERS))
def test_decode_all_is_feed_then_finish(inflate: Any, kind: str) -> None:
    """decode_all() (fetch()'s whole small body) gives what feed() + finish() give,
    fails as they do (truncated, the cap), for one piece or a long one."""
    data = ENCODERS[kind](BODY)
    decoder = _decode.decoder_for(_coding(kind))
    assert decoder is not None and decoder.decode_all(data) == BODY
    with pytest.raises(errors.ContentDecodingError, match="truncated"):
        decoder = _decode.decoder_for(_coding(kind))
        assert decoder is not None
        decoder.decode_all(data[: len(data) // 2])
    with pytest.raises(errors.DecodedSizeError):
        decoder = _decode.decoder_for(_coding(kind), len(BODY) - 1)
        assert decoder is not None
        decoder.decode_all(data)
    decoder = _decode.decoder_for(_coding(kind), len(BODY))
    assert decoder is not None and decoder.decode_all(data) == BODY  # the cap itself is allowed


def _outcome(decode: Callable[[], bytes]) -> Any:
    try:
        return decode()
    except errors.ContentDecodingError as exc:
        return type(exc), str(exc)


@pytest.mark.parametrize("cap", [None, 0, 16384, 20000, 10**8])
def test_gunzip_whole_is_decode_all(inflate: Any, cap: int | None) -> None:
    """gunzip_whole() (fetch()'s shortcut for a whole small gzip body) gives what
    decoder_for("gzip").decode_all() gives: the bytes, or the same error (truncated,
    corrupt, the cap), for one member, several, bytes after the stream, an output
    that ends exactly at one call's bound (16 KiB), and bodies past the shortcut."""
    page = BODY * (20480 // len(BODY) + 1)
    cases = [gzip.compress(page[:20480]), gzip.compress(page[:16384]), gzip.compress(b""), gzip.compress(b"x"),
             gzip.compress(page[:100]) + gzip.compress(b"second"), gzip.compress(page[:20000]) + b"garbage",
             gzip.compress(page[:20000]) + b"\x1f", gzip.compress(page[:20000])[:-3],
             gzip.compress(page[:20000])[:200], b"\x1f\x8b\x08\x00" + b"\xff" * 50, b"not gzip", b"",
             gzip.compress(bytes(range(256)) * 400), gzip.compress(b"a" * 600_000) + gzip.compress(b"second")]
    for data in cases:
        expected = _outcome(lambda: _decode.BodyDecoder(["gzip"], cap).decode_all(data))
        assert _outcome(lambda: _decode.gunzip_whole(data, cap)) == expected, data[:40]


def test_gunzip_whole_holds_no_more_than_the_cap_for_a_bomb(inflate: Any) -> None:
    """A bomb past the cap: gunzip_whole lets go of what it inflated before the general
    path decodes it again to say so (review: it held both, twice the cap)."""
    import tracemalloc

    cap = 8 << 20
    bomb = gzip.compress(b"\0" * (cap + (1 << 20)), 9)
    assert len(bomb) <= 64 * 1024  # small enough for the shortcut
    tracemalloc.start()
    try:
        with pytest.raises(errors.DecodedSizeError):
            _decode.gunzip_whole(bomb, cap)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < cap * 1.5, peak


def test_stacked_codings_are_undone_last_first(inflate: Any) -> None:
    """``Content-Encoding: gzip, br`` was gzipped, then brotli'd (RFC 9110 §8.4)."""
    data = brotli.compress(gzip.compress(BODY))
    assert _decode_in_pieces("gzip, br", data, 1000) == BODY
    assert _decode_in_pieces("x-gzip", gzip.compress(b"old name"), 3) == b"old name"
    assert _decode.decoder_for("identity") is None and _decode.decoder_for(None) is None
    assert _decode.codings(["gzip", "identity, BR"]) == ["gzip", "br"]


@pytest.mark.parametrize("kind", ["gzip", "deflate", "br", "zstd"])
def test_truncated_and_corrupt_bodies_fail_clearly(inflate: Any, kind: str) -> None:
    data = ENCODERS[kind](BODY)
    with pytest.raises(errors.ContentDecodingError, match="truncated") as info:
        _decode_in_pieces(kind, data[: len(data) // 2], 500)
    assert info.value.code == "ERR_CONTENT_DECODING_FAILED"
    with pytest.raises(errors.ContentDecodingError, match="does not decode"):
        _decode_in_pieces(kind, b"\x1f\x8b\x08\x00" + b"\xff" * 50 if kind == "gzip" else b"\xff" * 50, 7)


def test_a_gzip_member_after_a_long_one_is_decoded_once(inflate: Any) -> None:
    """A member whose output passes one call's bound (16 KiB), then another member,
    in one piece: the stdlib's decompressobj leaves the bytes after the first member
    in both ``unused_data`` and ``unconsumed_tail`` then, and the second member must
    still come out once (ISA-L's leaves them in ``unused_data`` only)."""
    body = gzip.compress(b"a" * 600_000) + gzip.compress(b"second")
    decoder = _decode.decoder_for("gzip", None)
    assert decoder is not None
    assert decoder._stages[0]._zlib is inflate  # type: ignore[attr-defined]
    assert decoder.feed(body) + decoder.finish() == b"a" * 600_000 + b"second"


def test_isal_inflates_when_installed_else_the_stdlib() -> None:
    """The decode extra's ISA-L is used when it imports; without it, the stdlib's
    zlib, offering and decoding the same."""
    assert _decode.INFLATE == ("isal.isal_zlib" if HAVE_ISAL else "zlib")
    code = (
        "import sys; sys.modules['isal'] = None\n"
        "import gzip\n"
        "from greenhttps import _decode\n"
        "d = _decode.decoder_for('gzip')\n"
        "print(_decode.INFLATE, _decode.ACCEPT_ENCODING, d.feed(gzip.compress(b'plain')) + d.finish())\n"
    )
    done = helpers.run_python(code)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["zlib", "gzip,", "deflate,", "br,", "zstd", "b'plain'"]


def test_unknown_coding_names_the_extra() -> None:
    with pytest.raises(errors.ContentDecodingError, match="compress") as info:
        _decode.decoder_for("compress")
    assert "decompress=False" in str(info.value)


def test_empty_body_is_empty_whatever_its_coding(inflate: Any) -> None:
    decoder = _decode.decoder_for("gzip")
    assert decoder is not None and decoder.feed(b"") == b"" and decoder.finish() == b""


@pytest.mark.parametrize("kind", ["gzip", "deflate", "br", "zstd"])
def test_a_bomb_fails_at_the_cap_without_the_memory(inflate: Any, kind: str) -> None:
    """256 MiB of zeros, compressed by the real library (a ~260 KB gzip, a few hundred bytes of br):
    decoding stops past a 10 MiB cap, having held little more than the cap."""
    zeros = bytes(2**28)
    if kind == "br":
        bomb = brotli.compress(zeros, quality=5)  # quality 11 takes seconds on this much
    elif kind == "zstd":
        bomb = zstandard.ZstdCompressor(level=19).compress(zeros)
    else:
        bomb = ENCODERS[kind](zeros)
    del zeros
    cap = 10 * 2**20
    tracemalloc.start()
    try:
        with pytest.raises(errors.DecodedSizeError) as info:
            _decode_in_pieces(kind, bomb, 65536, cap)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert info.value.code == "ERR_GREENHTTPS_DECODED_TOO_LARGE" and info.value.limit == cap
    assert isinstance(info.value, errors.ContentDecodingError)
    assert peak < 3 * cap, f"held {peak >> 20} MiB decoding a bomb with a 10 MiB cap"


def test_what_is_installed_is_what_is_offered() -> None:
    """Without brotli (and brotlicffi), br is neither offered nor decoded."""
    code = (
        "import sys; sys.modules['brotli'] = None; sys.modules['brotlicffi'] = None\n"
        "from greenhttps import _decode, errors\n"
        "print(_decode.ACCEPT_ENCODING)\n"
        "try:\n    _decode.decoder_for('br')\nexcept errors.ContentDecodingError as e:\n    print(e)\n"
    )
    done = helpers.run_python(code)
    assert done.returncode == 0, done.stderr
    offered, error = done.stdout.splitlines()
    assert offered == "gzip, deflate, zstd"
    assert "no decoder for Content-Encoding br (pip install greenhttps[decode])" in error
    assert _decode.ACCEPT_ENCODING == "gzip, deflate, br, zstd"  # this environment has both


# ------------------------------------------------------------------ fetch()


@pytest.fixture
def encoded_origin(serve: Callable[..., int]) -> Callable[..., str]:
    """``encoded_origin(body_bytes, coding, chunk=None) -> url`` of a server sending
    ``body_bytes`` with ``Content-Encoding: coding``, chunked in ``chunk``-sized writes."""

    def start(data: bytes, coding: str, chunk: int | None = None) -> str:
        def handler(req: Any, res: Any) -> None:
            res.write_head(200, {"Content-Encoding": coding, "Content-Type": "text/html; charset=utf-8"})
            if chunk:
                for i in range(0, len(data), chunk):
                    res.write(data[i:i + chunk])
                res.end()
            else:
                res.end(data)

        return f"https://127.0.0.1:{serve(handler)}/"

    return start


@pytest.mark.parametrize("kind", sorted(ENCODERS))
def test_fetch_decodes_each_coding(encoded_origin: Any, inflate: Any, ca_pem: bytes, kind: str) -> None:
    compressed = ENCODERS[kind](BODY)
    url = encoded_origin(compressed, _coding(kind), chunk=1000)
    res = greenhttps.fetch(url, ca=ca_pem)
    assert res.content == BODY and res.headers["content-encoding"] == _coding(kind)
    streamed = greenhttps.fetch(url, ca=ca_pem)
    assert streamed.read(100) == BODY[:100] and b"".join(streamed) == BODY[100:]
    raw = greenhttps.fetch(url, ca=ca_pem, decompress=False)
    assert raw.content == compressed


def test_fetch_bomb_fails_and_frees_the_connection(encoded_origin: Any, inflate: Any, ca_pem: bytes) -> None:
    bomb = gzip.compress(bytes(32 * 2**20))
    url = encoded_origin(bomb, "gzip")
    res = greenhttps.fetch(url, ca=ca_pem, max_decoded_size=2**20)
    with pytest.raises(errors.DecodedSizeError):
        res.content
    helpers.settle()
    assert greenhttps.global_agent.total_socket_count == 0  # closed, not pooled half read
    assert len(greenhttps.fetch(url, ca=ca_pem, max_decoded_size=None).content) == 32 * 2**20


def test_fetch_unknown_coding_is_an_error_unless_raw(encoded_origin: Any, ca_pem: bytes) -> None:
    url = encoded_origin(b"lzw-ish", "compress")
    res = greenhttps.fetch(url, ca=ca_pem)
    assert res.status == 200  # the head is fine; reading the body says what is wrong
    with pytest.raises(errors.ContentDecodingError, match="compress"):
        res.text()
    assert greenhttps.fetch(url, ca=ca_pem, decompress=False).content == b"lzw-ish"


def test_fetch_corrupt_gzip_fails(encoded_origin: Any, inflate: Any, ca_pem: bytes) -> None:
    data = gzip.compress(BODY)
    url = encoded_origin(data[:-20], "gzip")
    with pytest.raises(errors.ContentDecodingError, match="truncated"):
        greenhttps.fetch(url, ca=ca_pem).content


@pytest.mark.needs_node
def test_fetch_decodes_what_node_zlib_sends(inflate: Any, ca_pem: bytes, server_cert_files: dict[str, str]) -> None:
    """A Node 20 https server compressing with its own zlib (gzip, deflate, br) and
    streaming the result (mirrors the pattern of Node's test/parallel/test-zlib-*.js)."""
    script = r"""
const https = require('https'), zlib = require('zlib'), fs = require('fs');
const [key, cert] = process.argv.slice(2);
const body = Buffer.from('node says hello '.repeat(5000));
const server = https.createServer({key: fs.readFileSync(key), cert: fs.readFileSync(cert)}, (req, res) => {
  const coding = req.url.slice(1);
  const stream = {gzip: zlib.createGzip(), deflate: zlib.createDeflate(), br: zlib.createBrotliCompress()}[coding];
  res.writeHead(200, {'Content-Encoding': coding});
  stream.pipe(res);
  stream.end(body);
});
server.listen(0, '127.0.0.1', () => console.log(server.address().port));
"""
    with helpers.node_server(script, [server_cert_files["key"], server_cert_files["cert"]]) as port:
        for coding in ("gzip", "deflate", "br"):
            res = greenhttps.fetch(f"https://127.0.0.1:{port}/{coding}", ca=ca_pem)
            assert res.text() == "node says hello " * 5000, coding


def test_head_and_empty_responses_with_a_coding(inflate: Any, serve: Callable[..., int], ca_pem: bytes) -> None:
    def handler(req: Any, res: Any) -> None:
        res.write_head(200 if req.url == "/empty" else 204, {"Content-Encoding": "gzip"})
        res.end()

    url = f"https://127.0.0.1:{serve(handler)}"
    assert greenhttps.fetch(url + "/empty", ca=ca_pem).content == b""
    assert greenhttps.fetch(url + "/none", ca=ca_pem).content == b""
    assert greenhttps.fetch(url + "/empty", method="HEAD", ca=ca_pem).content == b""



@pytest.mark.needs_node
def test_truncated_gzip_differs_from_node_on_purpose(make_server: Any) -> None:
    """README, fetch: Node's fetch (undici, Z_SYNC_FLUSH) gives what decoded of a
    truncated gzip body; fetch() raises.  Both run against the same bytes here, so
    the documented difference stays true."""
    data = gzip.compress(b"hello world " * 1000)
    srv = make_server(lambda req, res: (res.write_head(200, {"Content-Encoding": "gzip"}), res.end(data[:-30])),
                      tls=False)
    url = f"http://127.0.0.1:{srv.address()['port']}/"
    script = ("fetch(process.argv[1]).then(r => r.text()).then(t => console.log(t.length),"
              " e => console.log('error', e.message))")
    done = helpers.run_command(["node", "-e", script, url])
    assert done.returncode == 0, done.stderr
    partial = int(done.stdout.strip())
    assert 0 < partial < len("hello world " * 1000)
    with pytest.raises(errors.ContentDecodingError, match="truncated"):
        greenhttps.fetch(url).content


def test_brotli_without_an_output_bound_is_fed_small_slices() -> None:
    """brotlicffi and brotli < 1.2 cannot stop at an output size: the decoder feeds
    them 16-byte slices instead.  That path, run here on the installed brotli:
    bodies still round-trip, and a bomb still stops near the cap."""

    def unbounded(cap: int | None) -> _decode.BodyDecoder:
        decoder = _decode.decoder_for("br", cap)
        assert decoder is not None
        stage = decoder._stages[0]
        assert stage._bounded  # the installed brotli has the bound...
        stage._bounded = False  # ...the fallback is what is under test
        return decoder

    decoder = unbounded(None)
    data = brotli.compress(BODY)
    assert b"".join(decoder.feed(data[i:i + 999]) for i in range(0, len(data), 999)) + decoder.finish() == BODY
    bomb = brotli.compress(bytes(2**27), quality=5)
    cap = 4 * 2**20
    tracemalloc.start()
    try:
        with pytest.raises(errors.DecodedSizeError):
            unbounded(cap).feed(bomb)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4 * cap
