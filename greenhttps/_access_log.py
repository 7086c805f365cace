"""The server's access log: one line per response to the ``greenhttps.access`` logger.

Opt-in (the server option ``access_log``: True or ``'combined'``, ``'common'``), and
free when off: a connection checks the option and the logger once, when it starts,
and only then makes its responses :class:`LoggedResponse`, which counts the body
bytes it sends and writes the line when the response closes -- finished, or cut
short (then the line ends with ``aborted``).  Nothing else on the request path
changes.

The line is Apache's Common or Combined Log Format followed by the time the response
took, in seconds (nginx's ``$request_time``)::

    127.0.0.1 - - [07/Dec/2026:21:55:01 +0000] "GET /a?b=1 HTTP/1.1" 200 1234 "-" "curl/8.0" 0.001532

client (IPv4-mapped addresses shown as IPv4), the Basic-auth user or ``-``, the time
the request arrived, the request line, the status (``-`` if no head was sent), the
body bytes (``-`` for none), then Combined's referer and user agent.  Quotes,
backslashes and control characters in the quoted fields are escaped as Apache does.
The record also carries the fields, unformatted, as ``record.access`` (a dict), for
structured handlers.  Messages go out at INFO: give the logger a handler and level
(``python -m greenhttps`` logs it to stderr).
"""

from __future__ import annotations

import base64
import logging
import time
from typing import Any

from ._proxy_protocol import unmapped
from ._response import ServerResponse

__all__ = ["logger", "log_format", "response_class", "LoggedResponse"]

logger = logging.getLogger("greenhttps.access")

_FORMATS = {"common", "combined"}
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def log_format(option: object) -> str | None:
    """The ``access_log`` option as a format name, None when off; ValueError if bad."""
    if option is None or option is False:
        return None
    if option is True:
        return "combined"
    if isinstance(option, str) and option.lower() in _FORMATS:
        return option.lower()
    raise ValueError(f"access_log must be True, False, 'common' or 'combined', not {option!r}")


def response_class(option: object) -> type[ServerResponse]:
    """The response class a new connection uses: :class:`ServerResponse` itself
    unless the access log is on and its logger would emit INFO."""
    fmt = log_format(option)
    if fmt is None or not logger.isEnabledFor(logging.INFO):
        return ServerResponse
    return _COMBINED if fmt == "combined" else _COMMON


class LoggedResponse(ServerResponse):
    """A :class:`ServerResponse` that counts its body bytes and logs itself on close."""

    combined = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._began = time.monotonic()
        self._began_wall = time.time()
        self._body_bytes = 0
        self._end_bytes = 0  # what end() was given, counted if there is a body
        self._logged = False

    def write(self, chunk: Any, encoding: str = "utf-8", callback: Any = None) -> bool:
        sent = super().write(chunk, encoding, callback)
        if sent and self._has_body and chunk:
            self._body_bytes += len(chunk.encode(encoding) if isinstance(chunk, str) else chunk)
        return sent

    def end(self, data: Any = None, encoding: str = "utf-8", callback: Any = None) -> Any:
        # Counted before: the line is written inside end() (its 'close'), which also
        # settles whether there is a body at all (HEAD, 204, 304: _has_body False).
        if not self.finished and data and not callable(data):
            self._end_bytes = len(data.encode(encoding) if isinstance(data, str) else data)
        return super().end(data, encoding, callback)

    def emit(self, event: str, *args: Any) -> bool:
        # 'close' comes once, for a finished response and for one cut short alike.
        if event == "close" and not self._logged:
            self._logged = True
            try:
                _log(self)
            except Exception:  # noqa: S110 -- a logging handler failed (and its handleError
                pass  # raised): never the response's problem, nor worth a second try
        return super().emit(event, *args)


class _Common(LoggedResponse):
    combined = False


_COMBINED: type[LoggedResponse] = LoggedResponse
_COMMON: type[LoggedResponse] = _Common


def _escape(text: str) -> str:
    """Apache's escaping of a quoted log field: ``"`` and ``\\`` backslashed, control
    and non-ASCII characters as ``\\xhh`` (of their UTF-8 bytes)."""
    if text.isascii() and text.isprintable() and '"' not in text and "\\" not in text:
        return text
    out = []
    for ch in text:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch.isascii() and ch.isprintable():
            out.append(ch)
        else:
            out.extend(f"\\x{b:02x}" for b in ch.encode("utf-8", "surrogateescape"))
    return "".join(out)


def _clf_time(wall: float) -> str:
    local = time.localtime(wall)
    offset = local.tm_gmtoff or 0
    sign = "-" if offset < 0 else "+"
    hours, minutes = divmod(abs(offset) // 60, 60)
    return (f"{local.tm_mday:02d}/{_MONTHS[local.tm_mon - 1]}/{local.tm_year}:"
            f"{local.tm_hour:02d}:{local.tm_min:02d}:{local.tm_sec:02d} {sign}{hours:02d}{minutes:02d}")


def _user(authorization: object) -> str:
    if not isinstance(authorization, str) or authorization[:6].lower() != "basic ":
        return "-"
    try:
        user = base64.b64decode(authorization[6:].strip(), validate=True).decode("utf-8").partition(":")[0]
    except ValueError:
        return "-"
    return _escape(user) or "-"


def _log(res: LoggedResponse) -> None:
    req = res.req
    took = time.monotonic() - res._began
    aborted = not res.writable_finished
    status = res.status_code if res._head_written else None
    if res._has_body and res._head_written:
        res._body_bytes += res._end_bytes
        res._end_bytes = 0
    headers = req.headers
    client = unmapped(req.socket.remote_address or "-")
    request_line = f"{req.method} {req.url} HTTP/{req.http_version}"
    fields = {
        "client": client, "user": _user(headers.get("authorization")), "time": res._began_wall,
        "request_line": request_line, "status": status, "bytes": res._body_bytes, "duration": took,
        "referer": headers.get("referer"), "user_agent": headers.get("user-agent"), "aborted": aborted,
    }
    line = (f'{client} - {fields["user"]} [{_clf_time(res._began_wall)}] "{_escape(request_line)}" '
            f'{"-" if status is None else status} {res._body_bytes or "-"}')
    if res.combined:
        referer, agent = fields["referer"], fields["user_agent"]
        line += f' "{_escape(str(referer)) if referer else "-"}" "{_escape(str(agent)) if agent else "-"}"'
    line += f" {took:.6f}" + (" aborted" if aborted else "")
    logger.info(line, extra={"access": fields})
