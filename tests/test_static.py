"""``greenhttps._static.StaticFiles``: the static-file handler behind
``python -m greenhttps serve DIR``.

A greenhttps server in this process runs the handler over a small tree in tmp_path;
the clients are independent of greenhttps: raw TLS sockets sending exact bytes (so
that ``..`` and odd targets reach the server unnormalised) read by the hand-written
parser in ``helpers``, stdlib ``html.parser`` for the listings, and curl.
"""

from __future__ import annotations

import email.utils
import hashlib
import html.parser
import os
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import gevent
import gevent.subprocess
import pytest

import helpers
from greenhttps._static import UNSATISFIABLE, StaticFiles, content_type, parse_range

pytestmark = pytest.mark.timeout(20)

HELLO = b"hello, static world\n"
DIGITS = bytes(range(256)) * 4  # 1024 distinct-enough bytes: a slice shows where it came from
SECRET = b"the secret outside the root\n"


@pytest.fixture
def site(tmp_path: Path) -> Path:
    """The served tree (``root``) and, beside it, what must never be served."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_bytes(SECRET)
    (tmp_path / "secret.txt").write_bytes(SECRET)

    root = tmp_path / "root"
    root.mkdir()
    (root / "hello.txt").write_bytes(HELLO)
    (root / "digits.bin").write_bytes(DIGITS)
    (root / "empty.txt").write_bytes(b"")
    for name in ("page.html", "style.css", "data.json", "img.png", "blob.zzqq", "logs.tar.gz"):
        (root / name).write_bytes(b"x")
    docs = root / "docs"
    docs.mkdir()
    for name in ("b.txt", "A.txt", "q&<x>.html", "50% off #1?.txt", 'quote".txt'):
        (docs / name).write_bytes(name.encode())
    (docs / "sub dir").mkdir()
    (docs / "sub dir" / "inner.txt").write_bytes(b"inner\n")
    (docs / "Zeta").mkdir()
    (root / "withindex").mkdir()
    (root / "withindex" / "index.html").write_bytes(b"<h1>the index</h1>\n")
    (root / "withindex" / "other.txt").write_bytes(b"other\n")
    # Symlinks: one inside (served), three out of the root (refused).
    (root / "alias.txt").symlink_to("hello.txt")
    (root / "escape.txt").symlink_to(outside / "secret.txt")
    (root / "escape_dir").symlink_to(outside)
    (root / "sneaky").mkdir()
    (root / "sneaky" / "index.html").symlink_to(outside / "secret.txt")
    os.mkfifo(root / "pipe")
    return root


@pytest.fixture
def port(site: Path, serve: Callable[..., int]) -> int:
    return serve(StaticFiles(site))


def request(
    port: int, target: str, method: str = "GET", headers: dict[str, str] | None = None
) -> helpers.Response:
    """Send exactly ``METHOD target HTTP/1.1`` (with ``headers``) and parse the answer."""
    lines = [f"{method} {target} HTTP/1.1", "Host: localhost", "Connection: close"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    sock = helpers.raw_connect(port, tls=True)
    try:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        return helpers.read_response(sock, method)
    finally:
        sock.close()


def header(response: helpers.Response, name: str) -> str | None:
    value = response.get(name)
    return None if value is None else value.decode("latin-1")


# --------------------------------------------------------------------- files


def test_file_with_its_headers(port: int, site: Path) -> None:
    response = request(port, "/hello.txt")
    assert response.status == 200
    assert response.body == HELLO
    assert response.framing == "content-length"
    assert header(response, "content-length") == str(len(HELLO))
    assert header(response, "content-type") == "text/plain; charset=utf-8"
    assert header(response, "accept-ranges") == "bytes"
    mtime = (site / "hello.txt").stat().st_mtime
    assert header(response, "last-modified") == email.utils.formatdate(int(mtime), usegmt=True)
    etag = header(response, "etag")
    assert etag and etag.startswith('"') and etag.endswith('"')


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("page.html", "text/html; charset=utf-8"),
        ("style.css", "text/css; charset=utf-8"),
        ("hello.txt", "text/plain; charset=utf-8"),
        ("data.json", "application/json"),
        ("img.png", "image/png"),
        ("blob.zzqq", "application/octet-stream"),
        ("logs.tar.gz", "application/gzip"),  # and no Content-Encoding: it stays packed
    ],
)
def test_content_type(port: int, name: str, expected: str) -> None:
    response = request(port, f"/{name}")
    assert response.status == 200
    assert header(response, "content-type") == expected
    assert response.get("content-encoding") is None


def test_content_type_of_scripts_has_a_charset() -> None:
    # .js is application/javascript or text/javascript, by Python version and
    # /etc/mime.types; either way it is text and says so.
    assert content_type("app.js") in (
        "application/javascript; charset=utf-8",
        "text/javascript; charset=utf-8",
    )


def test_head_is_get_without_the_body(port: int) -> None:
    get, head = request(port, "/digits.bin"), request(port, "/digits.bin", "HEAD")
    assert head.status == 200 and head.body == b"" and head.framing == "none"
    for name in ("content-length", "content-type", "last-modified", "etag", "accept-ranges"):
        assert header(head, name) == header(get, name), name
    assert header(head, "content-length") == str(len(DIGITS))
    listing = request(port, "/docs/", "HEAD")
    assert listing.status == 200 and listing.body == b""
    assert int(header(listing, "content-length") or 0) > 0


def test_empty_file(port: int) -> None:
    response = request(port, "/empty.txt")
    assert response.status == 200 and response.body == b""
    assert header(response, "content-length") == "0"


def test_symlink_inside_the_root_is_served(port: int) -> None:
    response = request(port, "/alias.txt")
    assert response.status == 200 and response.body == HELLO


def test_big_file_is_streamed_not_read_whole(site: Path, serve: Callable[..., int]) -> None:
    """16 MiB go out while the process never holds more than a few chunks of it
    (tracemalloc's peak; the client here counts the body and drops it)."""
    size = 16 << 20
    data = hashlib.sha256(b"seed").digest() * (size // 32)
    (site / "big.bin").write_bytes(data)
    port = serve(StaticFiles(site))
    digest = hashlib.sha256()
    tracemalloc.start()
    try:
        sock = helpers.raw_connect(port, tls=True)
        try:
            sock.sendall(b"GET /big.bin HTTP/1.1\r\nHost: localhost\r\n\r\n")
            head = helpers.read_request_head(sock)  # reads up to the blank line
            assert head.startswith(b"HTTP/1.1 200 OK\r\n"), head
            assert f"Content-Length: {size}\r\n".encode() in head
            received = 0
            while received < size:
                chunk = sock.recv(256 * 1024)
                assert chunk, f"closed after {received} bytes"
                digest.update(chunk)
                received += len(chunk)
        finally:
            sock.close()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert received == size
    assert digest.digest() == hashlib.sha256(data).digest()
    assert peak < 4 << 20, f"peak {peak} bytes while serving {size}"


def test_client_leaving_mid_file_is_quiet_and_the_server_goes_on(
    site: Path, serve: Callable[..., int]
) -> None:
    (site / "big.bin").write_bytes(b"z" * (8 << 20))
    port = serve(StaticFiles(site))
    sock = helpers.raw_connect(port, tls=True)
    sock.sendall(b"GET /big.bin HTTP/1.1\r\nHost: localhost\r\n\r\n")
    assert sock.recv(1000).startswith(b"HTTP/1.1 200 OK")
    helpers.rst_close(sock)  # the handler is blocked in write(): it must just stop
    helpers.settle(0.2)
    assert request(port, "/hello.txt").body == HELLO  # (and the hub saw no error)


def test_file_that_shrinks_while_sent_is_cut_short(site: Path, serve: Callable[..., int]) -> None:
    """The promised Content-Length cannot be kept: the connection is closed, so the
    client sees an incomplete body, never a complete-looking short one."""
    path = site / "shrinks.bin"
    with open(path, "wb") as f:
        f.truncate(64 << 20)  # sparse: far more than the socket buffers hold
    port = serve(StaticFiles(site, chunk_size=64 * 1024))
    sock = helpers.raw_connect(port, tls=True)
    try:
        sock.sendall(b"GET /shrinks.bin HTTP/1.1\r\nHost: localhost\r\n\r\n")
        head = helpers.read_request_head(sock)
        assert f"Content-Length: {64 << 20}".encode() in head
        gevent.sleep(0.2)  # the server fills the buffers and blocks in write()
        os.truncate(path, 1 << 20)
        received = len(helpers.read_until_eof(sock, timeout=10))
    finally:
        sock.close()
    assert received < 64 << 20


def test_fifo_is_not_served_and_does_not_hang(port: int) -> None:
    with gevent.Timeout(3, AssertionError("opening the FIFO blocked the server")):
        assert request(port, "/pipe").status == 404


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads unreadable files")
def test_unreadable_file_and_directory_are_403(site: Path, port: int) -> None:
    (site / "locked.txt").write_bytes(b"no")
    (site / "locked.txt").chmod(0)
    (site / "lockeddir").mkdir()
    (site / "lockeddir").chmod(0)
    try:
        assert request(port, "/locked.txt").status == 403
        assert request(port, "/lockeddir/").status == 403
    finally:
        (site / "lockeddir").chmod(0o755)


# ------------------------------------------------------------- conditional GET


def test_if_modified_since(port: int) -> None:
    first = request(port, "/hello.txt")
    stamp = header(first, "last-modified") or ""
    again = request(port, "/hello.txt", headers={"If-Modified-Since": stamp})
    assert again.status == 304 and again.body == b"" and again.framing == "none"
    assert header(again, "etag") == header(first, "etag")
    assert header(again, "last-modified") == stamp
    older = email.utils.formatdate(
        email.utils.parsedate_to_datetime(stamp).timestamp() - 60, usegmt=True
    )
    assert request(port, "/hello.txt", headers={"If-Modified-Since": older}).status == 200
    assert request(port, "/hello.txt", headers={"If-Modified-Since": "yesterday"}).status == 200


def test_if_none_match_and_its_precedence(port: int) -> None:
    etag = header(request(port, "/hello.txt"), "etag") or ""
    future = email.utils.formatdate(4102444800, usegmt=True)  # 2100: "not modified since"
    cases = [
        ({"If-None-Match": etag}, 304),
        ({"If-None-Match": f'"other", {etag}'}, 304),
        ({"If-None-Match": f"W/{etag}"}, 304),  # weak comparison
        ({"If-None-Match": "*"}, 304),
        # RFC 9110 §13.2.2: If-None-Match decides; If-Modified-Since is then ignored.
        ({"If-None-Match": '"other"', "If-Modified-Since": future}, 200),
    ]
    for headers, status in cases:
        assert request(port, "/hello.txt", headers=headers).status == status, headers


# --------------------------------------------------------------------- ranges


@pytest.mark.parametrize(
    ("spec", "start", "stop"),
    [
        ("bytes=0-99", 0, 100),
        ("bytes=100-100", 100, 101),
        ("bytes=1000-", 1000, 1024),
        ("bytes=-24", 1000, 1024),
        ("bytes=1000-999999", 1000, 1024),  # clamped to the end
        ("bytes=-5000", 0, 1024),  # a suffix longer than the file: all of it
        ("BYTES=5-6", 5, 7),
    ],
)
def test_single_range(port: int, spec: str, start: int, stop: int) -> None:
    response = request(port, "/digits.bin", headers={"Range": spec})
    assert response.status == 206
    assert response.body == DIGITS[start:stop]
    assert header(response, "content-range") == f"bytes {start}-{stop - 1}/{len(DIGITS)}"
    assert header(response, "content-length") == str(stop - start)
    assert header(response, "content-type") == "application/octet-stream"


@pytest.mark.parametrize(
    ("path", "spec", "size"),
    [
        ("/digits.bin", "bytes=1024-", 1024),
        ("/digits.bin", "bytes=5000-6000", 1024),
        ("/digits.bin", "bytes=-0", 1024),
        ("/empty.txt", "bytes=0-", 0),
        ("/empty.txt", "bytes=-1", 0),
    ],
)
def test_unsatisfiable_range_is_416(port: int, path: str, spec: str, size: int) -> None:
    response = request(port, path, headers={"Range": spec})
    assert response.status == 416
    assert header(response, "content-range") == f"bytes */{size}"


@pytest.mark.parametrize(
    "spec",
    [
        "bytes=5-1",  # last before first: invalid, ignored
        "items=0-1",  # another unit
        "bytes=abc",
        "bytes=-",
        "bytes=0-1,5-6",  # several ranges: answered with the whole file (documented)
    ],
)
def test_range_ignored_gives_the_whole_file(port: int, spec: str) -> None:
    response = request(port, "/digits.bin", headers={"Range": spec})
    assert response.status == 200
    assert response.body == DIGITS
    assert response.get("content-range") is None


def test_range_on_head_is_ignored(port: int) -> None:
    """RFC 9110 §14.2: Range is defined for GET only."""
    response = request(port, "/digits.bin", "HEAD", headers={"Range": "bytes=0-9"})
    assert response.status == 200
    assert header(response, "content-length") == str(len(DIGITS))


def test_if_range(port: int) -> None:
    full = request(port, "/digits.bin")
    etag, stamp = header(full, "etag") or "", header(full, "last-modified") or ""
    for if_range, status in [
        (etag, 206),
        (stamp, 206),
        ('"stale"', 200),
        (f"W/{etag}", 200),  # If-Range compares strongly
        ("Mon, 01 Jan 2001 00:00:00 GMT", 200),
    ]:
        response = request(
            port, "/digits.bin", headers={"Range": "bytes=0-9", "If-Range": if_range}
        )
        assert response.status == status, if_range
        assert response.body == (DIGITS[:10] if status == 206 else DIGITS)


def test_parse_range_table() -> None:
    assert parse_range("bytes=0-0", 1) == (0, 1)
    assert parse_range("bytes=0-", 0) == UNSATISFIABLE
    assert parse_range("bytes=١-٢", 10) is None  # only ASCII digits count
    assert parse_range("bytes = 0-1", 10) is None


@pytest.mark.needs_curl
def test_curl_resumes_a_download(port: int, site: Path, ca_file: str, tmp_path: Path) -> None:
    """``curl -C -`` (an independent client) continues a partial file with a Range."""
    out = tmp_path / "partial.bin"
    out.write_bytes(DIGITS[:300])
    done = helpers.run_command(
        ["curl", "-sS", "--fail", "--cacert", ca_file, "-C", "-", "-o", str(out),
         f"https://localhost:{port}/digits.bin"],
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert out.read_bytes() == DIGITS


# ---------------------------------------------------------------- directories


class _Links(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.links: list[tuple[str, str]] = []  # (href, text)
        self._href: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            self._href = dict(attrs).get("href")

    def handle_data(self, data: str) -> None:
        if self._href is not None:
            self.links.append((self._href, data))
            self._href = None


def links(response: helpers.Response) -> list[tuple[str, str]]:
    parser = _Links()
    parser.feed(response.body.decode("utf-8"))
    return parser.links


def test_listing(port: int) -> None:
    response = request(port, "/docs/")
    assert response.status == 200
    assert header(response, "content-type") == "text/html; charset=utf-8"
    assert header(response, "content-length") == str(len(response.body))
    assert links(response) == [
        ("../", "../"),
        ("50%25%20off%20%231%3F.txt", "50% off #1?.txt"),
        ("A.txt", "A.txt"),
        ("b.txt", "b.txt"),
        ("q%26%3Cx%3E.html", "q&<x>.html"),
        ("quote%22.txt", 'quote".txt'),
        ("sub%20dir/", "sub dir/"),
        ("Zeta/", "Zeta/"),
    ]
    page = response.body.decode()
    assert "<x>" not in page and "q&amp;&lt;x&gt;.html" in page  # escaped, not markup
    assert "Index of /docs/" in page


def test_listing_links_lead_to_the_files(port: int) -> None:
    """Every href, resolved against the listing's URL, fetches that very entry."""
    for href, text in links(request(port, "/docs/"))[1:]:
        response = request(port, "/docs/" + href)
        assert response.status == 200, href
        if not text.endswith("/"):
            assert response.body == text.encode(), href
    assert [text for _, text in links(request(port, "/docs/sub%20dir/"))] == ["../", "inner.txt"]


def test_root_listing_has_no_parent_link(port: int) -> None:
    texts = [text for _, text in links(request(port, "/"))]
    assert "../" not in texts
    assert "docs/" in texts and "hello.txt" in texts and "withindex/" in texts
    assert texts == sorted(texts, key=lambda t: (t.casefold(), t))


def test_listing_shows_a_name_that_is_not_utf8(site: Path, port: int) -> None:
    os.close(os.open(os.path.join(os.fsencode(site), b"caf\xe9.txt"), os.O_CREAT | os.O_WRONLY))
    found = [(h, t) for h, t in links(request(port, "/")) if t.startswith("caf")]
    assert found == [("caf%E9.txt", "caf\ufffd.txt")]
    assert request(port, "/caf%E9.txt").status == 200


def test_index_html_is_served_for_its_directory(port: int) -> None:
    response = request(port, "/withindex/")
    assert response.status == 200
    assert response.body == b"<h1>the index</h1>\n"
    assert header(response, "content-type") == "text/html; charset=utf-8"


@pytest.mark.parametrize(
    ("target", "location"),
    [
        ("/docs", "/docs/"),
        ("/docs?sort=name", "/docs/?sort=name"),
        ("/docs/sub%20dir", "/docs/sub%20dir/"),
        ("//docs", "/docs/"),  # never "//docs/": a protocol-relative URL is another host
        ("/withindex", "/withindex/"),
    ],
)
def test_directory_without_slash_redirects(port: int, target: str, location: str) -> None:
    response = request(port, target)
    assert response.status == 301
    assert header(response, "location") == location


def test_file_with_a_trailing_slash_is_404(port: int) -> None:
    assert request(port, "/hello.txt/").status == 404


# ------------------------------------------------------------ never outside


@pytest.mark.parametrize(
    "target",
    [
        "/../secret.txt",
        "/docs/../../secret.txt",
        "/%2e%2e/secret.txt",
        "/%2E%2E/secret.txt",
        "/.%2e/secret.txt",
        "/%2e%2e%2fsecret.txt",
        "/docs/..%2F..%2Fsecret.txt",
        "/docs/%2e%2e/%2e%2e/outside/secret.txt",
        "https://localhost/../secret.txt",  # absolute-form target
    ],
)
def test_dot_dot_is_404(port: int, target: str) -> None:
    response = request(port, target)
    assert response.status == 404, response.raw[:200]
    assert SECRET not in response.body


def test_absolute_paths_stay_under_the_root(port: int, tmp_path: Path) -> None:
    for target in (f"/{tmp_path}/secret.txt", f"/{tmp_path}/outside/secret.txt", "//etc/passwd"):
        response = request(port, target)
        assert response.status == 404, target
        assert SECRET not in response.body


@pytest.mark.parametrize(
    "target", ["/escape.txt", "/escape_dir/secret.txt", "/escape_dir/", "/escape_dir"]
)
def test_symlink_out_of_the_root_is_403(port: int, target: str) -> None:
    response = request(port, target)
    assert response.status == 403
    assert SECRET not in response.body


def test_index_html_symlinked_out_of_the_root_is_not_served(port: int) -> None:
    response = request(port, "/sneaky/")
    assert SECRET not in response.body
    assert response.status == 200  # the listing instead
    assert [text for _, text in links(response)] == ["../", "index.html"]


@pytest.mark.parametrize("target", ["/hello.txt%00", "/%00", "/hello.txt%00.png", "/docs/%00/"])
def test_nul_byte_is_400(port: int, target: str) -> None:
    assert request(port, target).status == 400


def test_root_given_as_a_symlink(site: Path, tmp_path: Path, serve: Callable[..., int]) -> None:
    """The root is resolved once: a root reached through a symlink still serves."""
    (tmp_path / "root-link").symlink_to(site)
    port = serve(StaticFiles(tmp_path / "root-link"))
    assert request(port, "/hello.txt").body == HELLO
    assert request(port, "/escape.txt").status == 403


def test_root_must_be_a_directory(site: Path) -> None:
    with pytest.raises(NotADirectoryError):
        StaticFiles(site / "hello.txt")
    with pytest.raises(NotADirectoryError):
        StaticFiles(site / "missing")


# ------------------------------------------------------------------- methods


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "OPTIONS"])
def test_other_methods_are_405_with_allow(port: int, method: str) -> None:
    response = request(port, "/hello.txt", method, headers={"Content-Length": "0"})
    assert response.status == 405
    assert header(response, "allow") == "GET, HEAD"


def test_keep_alive_across_requests(port: int) -> None:
    """Several answers (file, 404, 206, listing) on one connection: each is framed."""
    sock = helpers.raw_connect(port, tls=True)
    try:
        sock.sendall(
            b"GET /hello.txt HTTP/1.1\r\nHost: localhost\r\n\r\n"
            b"GET /missing HTTP/1.1\r\nHost: localhost\r\n\r\n"
            b"GET /digits.bin HTTP/1.1\r\nHost: localhost\r\nRange: bytes=0-3\r\n\r\n"
            b"GET /docs/ HTTP/1.1\r\nHost: localhost\r\n\r\n"
        )
        statuses = [helpers.read_response(sock).status for _ in range(4)]
    finally:
        sock.close()
    assert statuses == [200, 404, 206, 200]


def test_stdlib_client_in_a_subprocess(port: int, ca_file: str) -> None:
    """http.client (another implementation) reads a file, a range and a listing."""
    code = f"""
import http.client, ssl
ctx = ssl.create_default_context(cafile={ca_file!r})
conn = http.client.HTTPSConnection("localhost", {port}, context=ctx)
for path, headers in [("/hello.txt", {{}}), ("/digits.bin", {{"Range": "bytes=10-19"}}), ("/docs/", {{}})]:
    conn.request("GET", path, headers=headers)
    r = conn.getresponse()
    body = r.read()
    print(r.status, len(body), r.getheader("Content-Type"))
"""
    done = helpers.run_python(code)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == f"200 {len(HELLO)} text/plain; charset=utf-8"
    assert lines[1] == "206 10 application/octet-stream"
    assert lines[2].startswith("200 ") and lines[2].endswith("text/html; charset=utf-8")
