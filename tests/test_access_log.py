"""The server's access log (``access_log`` option, logger ``greenhttps.access``).

Not a Node feature (Node leaves logging to the application), so there is no Node
test to mirror; the format is Apache's Common/Combined Log Format plus the duration
in seconds.  Real TLS clients over loopback; the lines are read from pytest's
``caplog``.
"""

from __future__ import annotations

import logging
import re
from typing import Any, Callable

import gevent
import pytest

import helpers
from greenhttps._access_log import LoggedResponse
from greenhttps._response import ServerResponse

pytestmark = pytest.mark.timeout(20)

CLF_TIME = r"\[\d\d/[A-Z][a-z]{2}/\d{4}:\d\d:\d\d:\d\d [+-]\d{4}\]"


@pytest.fixture
def access(caplog: pytest.LogCaptureFixture) -> Callable[[], list[logging.LogRecord]]:
    caplog.set_level(logging.INFO, logger="greenhttps.access")

    def records() -> list[logging.LogRecord]:
        helpers.settle()
        return [r for r in caplog.records if r.name == "greenhttps.access"]

    return records


def _exchange(port: int, *requests: bytes, methods: tuple[str, ...] = ()) -> list[Any]:
    sock = helpers.raw_connect(port, tls=True)
    try:
        answers = []
        for i, request in enumerate(requests):
            sock.sendall(request)
            answers.append(helpers.read_response(sock, methods[i] if i < len(methods) else "GET"))
        return answers
    finally:
        sock.close()


def test_off_by_default_and_costs_nothing(serve: Callable[..., int], access: Any) -> None:
    classes: list[type] = []

    def handler(req: Any, res: Any) -> None:
        classes.append(type(res))
        res.end("ok")

    _exchange(serve(handler), b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert access() == []
    assert classes == [ServerResponse]  # the plain class: nothing counts, nothing logs


def test_on_but_logger_quiet_costs_nothing(serve: Callable[..., int], caplog: pytest.LogCaptureFixture) -> None:
    """The option is on, but the logger would drop INFO: the connection does not log."""
    caplog.set_level(logging.WARNING, logger="greenhttps.access")
    classes: list[type] = []

    def handler(req: Any, res: Any) -> None:
        classes.append(type(res))
        res.end("ok")

    _exchange(serve(handler, access_log=True), b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert classes == [ServerResponse]


def test_combined_line(serve: Callable[..., int], access: Any) -> None:
    def handler(req: Any, res: Any) -> None:
        gevent.sleep(0.05)
        res.set_header("Content-Type", "text/plain")
        res.end("hello")

    port = serve(handler, access_log=True)
    sock = helpers.raw_connect(port, tls=True)
    client_port = sock.getsockname()[1]
    sock.sendall(b'GET /a?b=1 HTTP/1.1\r\nHost: x\r\nReferer: https://example.org/\r\n'
                 b'User-Agent: agent/1.0 "quoted"\r\nAuthorization: Basic YWxpY2U6c2VjcmV0\r\n\r\n')
    assert helpers.read_response(sock).body == b"hello"
    sock.close()
    [record] = access()
    line = record.getMessage()
    assert record.levelno == logging.INFO
    assert re.fullmatch(
        rf'127\.0\.0\.1 - alice {CLF_TIME} "GET /a\?b=1 HTTP/1\.1" 200 5 "https://example\.org/" '
        r'"agent/1\.0 \\"quoted\\"" 0\.\d{6}', line), line
    fields = record.access  # type: ignore[attr-defined]
    assert fields["client"] == "127.0.0.1" and fields["status"] == 200 and fields["bytes"] == 5
    assert fields["request_line"] == "GET /a?b=1 HTTP/1.1" and fields["aborted"] is False
    assert 0.05 <= fields["duration"] < 2 and float(line.rsplit(" ", 1)[1]) == pytest.approx(fields["duration"], abs=1e-6)
    assert client_port  # the port is not part of CLF


def test_common_line_and_one_per_response(serve: Callable[..., int], access: Any) -> None:
    """Keep-alive: one line per response, in order; HEAD, 204 and 304 send no body
    (``-``); a chunked body and a str body count their bytes on the wire."""

    def handler(req: Any, res: Any) -> None:
        if req.url == "/chunked":
            for piece in (b"x" * 10, "é" * 5, b""):
                res.write(piece)
            res.end(b"yz")
        elif req.url == "/204":
            res.status_code = 204
            res.end()
        else:
            res.end("héllo")  # 6 bytes

    port = serve(handler, access_log="common")
    req = b"%s %s HTTP/1.1\r\nHost: x\r\n\r\n"
    _exchange(port, req % (b"GET", b"/"), req % (b"HEAD", b"/"), req % (b"GET", b"/chunked"), req % (b"GET", b"/204"),
              methods=("GET", "HEAD"))
    lines = [r.getMessage() for r in access()]
    tails = [re.sub(rf"^127\.0\.0\.1 - - {CLF_TIME} ", "", line).rsplit(" ", 1)[0] for line in lines]
    assert tails == ['"GET / HTTP/1.1" 200 6', '"HEAD / HTTP/1.1" 200 -', '"GET /chunked HTTP/1.1" 200 22',
                     '"GET /204 HTTP/1.1" 204 -'], lines


def test_cut_short_responses_say_aborted(serve: Callable[..., int], access: Any) -> None:
    """A response destroyed mid-body keeps its status and the bytes sent; one never
    started shows ``-``; both lines end with ``aborted``."""

    def handler(req: Any, res: Any) -> None:
        if req.url == "/half":
            res.write_head(200, {"Content-Length": "100"})
            res.write(b"x" * 40)
            res.destroy()
        else:
            gevent.sleep(10)  # the client leaves first

    port = serve(handler, access_log=True)
    sock = helpers.raw_connect(port, tls=True)
    sock.sendall(b"GET /half HTTP/1.1\r\nHost: x\r\n\r\n")
    helpers.read_until_eof(sock, reset_ok=True)
    sock.close()
    sock = helpers.raw_connect(port, tls=True)
    sock.sendall(b"GET /never HTTP/1.1\r\nHost: x\r\n\r\n")
    gevent.sleep(0.2)
    sock.close()
    deadline = gevent.get_hub().loop.now() + 5
    while len(access()) < 2 and gevent.get_hub().loop.now() < deadline:
        gevent.sleep(0.05)
    lines = [r.getMessage() for r in access()]
    assert re.search(r'"GET /half HTTP/1\.1" 200 40 "-" "-" \d+\.\d{6} aborted$', lines[0]), lines
    assert re.search(r'"GET /never HTTP/1\.1" - - "-" "-" \d+\.\d{6} aborted$', lines[1]), lines


def test_dropped_requests_and_client_addresses(serve: Callable[..., int], access: Any) -> None:
    """Past ``max_requests_per_socket`` the 503s are logged too; a client behind the
    PROXY protocol is logged by its own address."""
    from test_proxy_protocol import V1

    port = serve(lambda req, res: res.end("ok"), access_log="common", max_requests_per_socket=1)
    sock = helpers.raw_connect(port, tls=True)
    sock.sendall(b"GET /1 HTTP/1.1\r\nHost: x\r\n\r\nGET /2 HTTP/1.1\r\nHost: x\r\n\r\n")
    assert [r.status for r in (helpers.read_response(sock), helpers.read_response(sock))] == [200, 503]
    sock.close()
    proxied = serve(lambda req, res: res.end("ok"), access_log="common", proxy_protocol=True)
    raw = gevent.socket.create_connection(("127.0.0.1", proxied), timeout=5)
    raw.sendall(V1)
    sock = helpers.wrap_client(raw, helpers.unverified_client_context(), "localhost")
    sock.sendall(b"GET /p HTTP/1.1\r\nHost: x\r\n\r\n")
    assert helpers.read_response(sock).status == 200
    sock.close()
    lines = [r.getMessage() for r in access()]
    assert [line.split(" ", 1)[0] for line in lines] == ["127.0.0.1", "127.0.0.1", "203.0.113.7"]
    assert ['"GET /1 HTTP/1.1" 200 2' in lines[0], '"GET /2 HTTP/1.1" 503 -' in lines[1]] == [True, True]


def test_a_failing_log_handler_does_not_hurt_the_response(serve: Callable[..., int], access: Any) -> None:
    class Broken(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            raise RuntimeError("disk full")

        def handleError(self, record: logging.LogRecord) -> None:  # noqa: N802 (logging's name)
            raise RuntimeError("and raising")

    log = logging.getLogger("greenhttps.access")
    broken = Broken()
    log.addHandler(broken)
    try:
        [resp] = _exchange(serve(lambda req, res: res.end("fine"), access_log=True), b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    finally:
        log.removeHandler(broken)
    assert resp.body == b"fine"


def test_bad_option(tls_options: dict[str, bytes]) -> None:
    import greenhttps

    with pytest.raises(ValueError, match="access_log must be"):
        greenhttps.create_server(tls_options, access_log="json")
    assert issubclass(LoggedResponse, ServerResponse)
