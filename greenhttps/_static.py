"""Static files for ``python -m greenhttps serve DIR``: a request handler.

``StaticFiles(root)`` is a ``(req, res)`` handler for :func:`greenhttps.create_server`.
It answers GET and HEAD (405 with ``Allow`` otherwise) with:

- a file, streamed in ``chunk_size`` pieces (never read whole), with ``Content-Type``
  from :mod:`mimetypes` (``; charset=utf-8`` on text types), ``Content-Length``,
  ``Last-Modified``, ``ETag`` and ``Accept-Ranges: bytes``;
- ``304`` for ``If-None-Match`` / ``If-Modified-Since`` (RFC 9110 §13.2.2 order);
- ``206`` for one ``Range: bytes=a-b`` / ``a-`` / ``-n`` (GET only, honouring
  ``If-Range``), ``416`` with ``Content-Range: bytes */size`` when it is past the end.
  Several ranges get the whole file with ``200``, which RFC 9110 §14.2 allows
  (a server may ignore ``Range``): no multipart/byteranges;
- a directory: ``301`` to the same path with a trailing ``/``, then ``index.html`` if
  there is one, else an HTML listing (sorted, directories with a trailing ``/``,
  names HTML-escaped, links percent-encoded).

Nothing outside ``root`` is served: the path is percent-decoded *before* it is split,
so ``%2e%2e`` and ``%2f`` are seen for what they are; a ``..`` segment is 404; a
path whose real location (symlinks resolved) is outside ``root`` is 403; ``%00`` is
400.  FIFOs, sockets and devices are 404 (opened non-blocking, so a FIFO cannot hang
the server).  File reads are ordinary blocking reads: fine for a development server
on local disks, not for a slow network filesystem.
"""

from __future__ import annotations

import datetime
import email.utils
import html
import mimetypes
import os
import re
import stat
from typing import Any, Mapping
from urllib.parse import quote, unquote_to_bytes, urlsplit

from ._outgoing import STATUS_CODES

__all__ = ["StaticFiles", "content_type", "parse_range"]

#: Bytes read from a file and written to the socket at a time.
CHUNK_SIZE = 64 * 1024

#: A ``Range`` no byte of the file satisfies (answered with 416).
UNSATISFIABLE = "unsatisfiable"

_RANGE = re.compile(r"bytes=([0-9]*)-([0-9]*)", re.IGNORECASE)

# A compressed file is served as what it is (Content-Encoding would make a browser
# unpack it on the fly and save the unpacked bytes under the .gz name).
_COMPRESSED = {
    "gzip": "application/gzip",
    "bzip2": "application/x-bzip2",
    "xz": "application/x-xz",
    "compress": "application/x-compress",
    "br": "application/x-brotli",
}

# Text that is not text/*: still wants a charset so browsers do not guess.
_TEXTUAL = {"application/javascript", "application/xml", "image/svg+xml"}


def content_type(name: str) -> str:
    """The ``Content-Type`` for a file called ``name`` (``application/octet-stream``
    when unknown; text types say ``charset=utf-8``)."""
    kind, encoding = mimetypes.guess_type(name, strict=False)
    if encoding is not None:
        return _COMPRESSED.get(encoding, "application/octet-stream")
    if kind is None:
        return "application/octet-stream"
    if kind.startswith("text/") or kind in _TEXTUAL:
        return f"{kind}; charset=utf-8"
    return kind


def parse_range(value: str, size: int) -> tuple[int, int] | str | None:
    """``Range`` against a body of ``size`` bytes: ``(start, stop)`` (stop exclusive),
    :data:`UNSATISFIABLE`, or None to ignore it and send everything (another unit,
    bad syntax, several ranges)."""
    match = _RANGE.fullmatch(value.strip())
    if match is None:  # also "bytes=0-1,5-6": several ranges are answered in full
        return None
    first, last = match.groups()
    if not first:
        if not last:
            return None  # "bytes=-"
        suffix = int(last)  # the last `suffix` bytes
        if suffix == 0 or size == 0:
            return UNSATISFIABLE
        return max(0, size - suffix), size
    start = int(first)
    if last and int(last) < start:
        return None  # invalid (RFC 9110 §14.1.1): ignored
    if start >= size:
        return UNSATISFIABLE
    stop = min(int(last) + 1, size) if last else size
    return start, stop


def _http_date(value: Any) -> float | None:
    """An HTTP date header as a timestamp, or None if absent or malformed."""
    if not isinstance(value, str):
        return None
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # "-0000": UTC, by RFC 5322
        when = when.replace(tzinfo=datetime.timezone.utc)
    return when.timestamp()


def _opaque(tag: str) -> str:
    """An entity tag for weak comparison (``W/"x"`` matches ``"x"``)."""
    tag = tag.strip()
    return tag[2:] if tag.startswith("W/") else tag


def _not_modified(headers: Mapping[str, Any], etag: str, mtime: int) -> bool:
    """RFC 9110 §13.2.2: If-None-Match first; If-Modified-Since only without it."""
    none_match = headers.get("if-none-match")
    if isinstance(none_match, str):
        tags = {_opaque(tag) for tag in none_match.split(",")}
        return "*" in tags or etag in tags
    since = _http_date(headers.get("if-modified-since"))
    return since is not None and mtime <= since


def _range_applies(if_range: Any, etag: str, mtime: int) -> bool:
    """If-Range (RFC 9110 §13.1.5): the range only if the file is still the one the
    client has part of (strong comparison: a weak tag never matches)."""
    if if_range is None:
        return True
    if not isinstance(if_range, str):
        return False
    if if_range.startswith(('"', "W/")):
        return if_range.strip() == etag
    return _http_date(if_range) == mtime


def _split_target(target: str) -> tuple[str, str] | None:
    """The request target's (path, query), still percent-encoded; None if it has no path."""
    if target.startswith("/"):
        path, _, query = target.partition("?")
        return path, query
    if "://" in target:  # absolute-form (a client talking to us as a proxy)
        parts = urlsplit(target)
        return parts.path or "/", parts.query
    return None  # "*" (OPTIONS) or garbage


class StaticFiles:
    """Serve the files under ``root`` (Node has no built-in one; cf. ``npx http-server``)."""

    def __init__(self, root: str | os.PathLike[str], *, chunk_size: int = CHUNK_SIZE) -> None:
        #: The directory served, symlinks resolved (what "inside" is measured against).
        self.root = os.path.realpath(root)
        if not os.path.isdir(self.root):
            raise NotADirectoryError(f"not a directory: {os.fspath(root)}")
        self.chunk_size = chunk_size

    def __repr__(self) -> str:
        return f"<greenhttps StaticFiles {self.root!r}>"

    def __call__(self, req: Any, res: Any) -> None:
        if req.method not in ("GET", "HEAD"):
            return _reply(res, 405, {"Allow": "GET, HEAD"})
        target = _split_target(req.url)
        if target is None:
            return _reply(res, 400)
        raw_path, query = target
        path = unquote_to_bytes(raw_path)  # decoded before splitting: %2e%2e, %2f
        if b"\0" in path:
            return _reply(res, 400)
        parts = [part for part in path.split(b"/") if part not in (b"", b".")]
        if b".." in parts:
            return _reply(res, 404)  # never resolved, so never above the root
        local = os.path.join(self.root, *map(os.fsdecode, parts))
        real = self._inside(local)
        if real is None:
            return _reply(res, 403)  # a symlink out of the root
        try:
            info = os.stat(real)
        except PermissionError:
            return _reply(res, 403)
        except (OSError, ValueError):  # missing, "file/x", a symlink loop, too long
            return _reply(res, 404)
        if stat.S_ISDIR(info.st_mode):
            if not raw_path.endswith("/"):
                # Leading slashes collapsed: "//evil.example" must not become a
                # protocol-relative Location pointing at another host.
                location = "/" + raw_path.lstrip("/") + "/" + (f"?{query}" if query else "")
                return _reply(res, 301, {"Location": location})
            index = self._inside(os.path.join(real, "index.html"))
            if index is not None and os.path.isfile(index):
                return self._send_file(req, res, index)
            return self._send_listing(req, res, real, parts)
        if path.endswith(b"/"):
            return _reply(res, 404)  # "file.txt/" names a directory that is not there
        return self._send_file(req, res, real)

    def _inside(self, path: str) -> str | None:
        """``path`` with symlinks resolved, or None if that is outside the root."""
        real = os.path.realpath(path)
        return real if os.path.commonpath([self.root, real]) == self.root else None

    # ----------------------------------------------------------------- files

    def _send_file(self, req: Any, res: Any, path: str) -> None:
        try:
            # O_NONBLOCK: opening a FIFO would otherwise wait for a writer.
            # O_NOFOLLOW: `path` is resolved; a symlink here now was swapped in since.
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW)
        except PermissionError:
            return _reply(res, 403)
        except OSError:
            return _reply(res, 404)
        with open(fd, "rb", buffering=0) as file:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                return _reply(res, 404)  # FIFO, socket, device: not a file to serve
            size, mtime = info.st_size, int(info.st_mtime)
            etag = f'"{size:x}-{info.st_mtime_ns:x}"'
            headers: dict[str, Any] = {
                "Last-Modified": email.utils.formatdate(mtime, usegmt=True),
                "ETag": etag,
                "Accept-Ranges": "bytes",
            }
            if _not_modified(req.headers, etag, mtime):
                res.write_head(304, headers)
                res.end()
                return None
            start, stop, status = 0, size, 200
            requested = req.headers.get("range")
            # Range is defined for GET only (RFC 9110 §14.2): HEAD shows the whole.
            if (
                isinstance(requested, str)
                and req.method == "GET"
                and _range_applies(req.headers.get("if-range"), etag, mtime)
            ):
                chosen = parse_range(requested, size)
                if chosen == UNSATISFIABLE:
                    return _reply(res, 416, {"Content-Range": f"bytes */{size}"})
                if isinstance(chosen, tuple):
                    start, stop = chosen
                    status = 206
                    headers["Content-Range"] = f"bytes {start}-{stop - 1}/{size}"
            headers["Content-Type"] = content_type(path)
            headers["Content-Length"] = stop - start
            res.write_head(status, headers)
            if req.method == "HEAD":
                res.end()
                return None
            file.seek(start)
            left = stop - start
            while left:
                chunk = file.read(min(self.chunk_size, left))
                if not chunk:
                    # The file shrank under us: the promised length cannot be kept,
                    # and a short body must not look complete.
                    res.destroy()
                    return None
                if not res.write(chunk):  # blocks until the kernel took it
                    return None  # the response was destroyed (client gone)
                left -= len(chunk)
            res.end()
        return None

    # ------------------------------------------------------------ listings

    def _send_listing(self, req: Any, res: Any, directory: str, parts: list[bytes]) -> None:
        try:
            with os.scandir(directory) as scan:
                entries = [(entry.name, _is_dir(entry)) for entry in scan]
        except PermissionError:
            return _reply(res, 403)
        except OSError:
            return _reply(res, 404)
        entries.sort(key=lambda item: (item[0].casefold(), item[0]))
        shown = "/" + "".join(_display(part) + "/" for part in parts)
        title = html.escape(f"Index of {shown}")
        rows = ['<li><a href="../">../</a></li>'] if parts else []
        for name, is_dir in entries:
            slash = "/" if is_dir else ""
            href = quote(os.fsencode(name), safe="") + slash  # relative: the URL ends in /
            rows.append(f'<li><a href="{href}">{html.escape(_display(name))}{slash}</a></li>')
        page = (
            '<!DOCTYPE html>\n<html>\n<head><meta charset="utf-8">'
            f"<title>{title}</title></head>\n<body>\n<h1>{title}</h1>\n<ul>\n"
            + "\n".join(rows)
            + "\n</ul>\n</body>\n</html>\n"
        ).encode()
        res.write_head(
            200, {"Content-Type": "text/html; charset=utf-8", "Content-Length": len(page)}
        )
        res.end(page)
        return None


def _is_dir(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_dir()  # follows symlinks, as a request for it would
    except OSError:
        return False


def _display(name: str | bytes) -> str:
    """A file name as text (names that are not UTF-8 show U+FFFD)."""
    raw = name if isinstance(name, bytes) else os.fsencode(name)
    return raw.decode("utf-8", "replace")


def _reply(res: Any, status: int, headers: Mapping[str, Any] | None = None) -> None:
    """A short plain-text answer (the status line again) with ``headers``."""
    body = f"{status} {STATUS_CODES[status]}\n".encode()
    res.write_head(
        status,
        {
            "Content-Type": "text/plain; charset=utf-8",
            "Content-Length": len(body),
            **(headers or {}),
        },
    )
    res.end(body)
