"""Types that catch mistakes (issue 20): mypy over tests/typing_usage.py, the typed
options held equal to the option tables, and durations (timedelta, and timeout
errors that say the value with its unit).

The mypy test runs the type checker in a subprocess, as a user's CI would, over a
file of correct and incorrect usages: each ``# E: text`` line must get an error that
contains the text, each ``# R: type`` line must reveal that type, and every other line
must pass.  mypy is in the ``test`` extra, so this runs in CI.
"""

from __future__ import annotations

import datetime
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import gevent
import pytest
from gevent import socket as gsocket

import greenhttps
import greenhttps.http
from greenhttps import _fetch, _options, _types, errors

pytestmark = pytest.mark.timeout(120)

ROOT = Path(__file__).resolve().parent.parent
USAGE = Path(__file__).resolve().parent / "typing_usage.py"
_LINE = re.compile(r"^(?P<file>[^:]+):(?P<line>\d+): (?P<kind>error|note): (?P<text>.*)$")


def _run_mypy(tmp_path: Path, python_version: str) -> list[tuple[int, str, str]]:
    # The checkout under test, not an installed copy, answers `import greenhttps`.
    env = {**os.environ, "MYPYPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "-m", "mypy", "--follow-imports=silent", "--python-version", python_version,
         "--cache-dir", str(tmp_path / "mypy-cache"), "--no-error-summary", "--hide-error-context",
         "--show-absolute-path", str(USAGE)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=110,
    )
    assert proc.returncode in (0, 1), proc.stdout + proc.stderr  # 2: mypy itself failed
    found = []
    for line in proc.stdout.splitlines():
        match = _LINE.match(line)
        if match and Path(match["file"]) == USAGE:
            found.append((int(match["line"]), match["kind"], match["text"]))
    return found


def _expectations() -> dict[int, tuple[str, str]]:
    wanted = {}
    for number, line in enumerate(USAGE.read_text().splitlines(), 1):
        match = re.search(r"# (E|R): (.*)$", line)
        if match:
            wanted[number] = (match[1], match[2].strip())
    return wanted


@pytest.mark.parametrize("python_version", ["3.10", "3.12"])
def test_mypy_accepts_the_right_usages_and_rejects_the_mistakes(tmp_path: Path, python_version: str) -> None:
    """Unknown options and wrong types are mypy errors for request, get, fetch, Agent,
    create_server and listen; get() without a callback is an IncomingMessage."""
    if not os.environ.get("CI"):  # in CI (.ci/run sets CI=1) a missing mypy fails, never skips
        pytest.importorskip("mypy")
    found = _run_mypy(tmp_path, python_version)
    wanted = _expectations()
    assert sum(kind == "E" for kind, _ in wanted.values()) >= 15
    errors_at: dict[int, list[str]] = {}
    reveals: dict[int, str] = {}
    for number, kind, text in found:
        if kind == "error":
            errors_at.setdefault(number, []).append(text)
        elif text.startswith("Revealed type is "):
            reveals[number] = text.removeprefix("Revealed type is ").strip('"')
    problems = []
    for number, (kind, text) in sorted(wanted.items()):
        if kind == "E" and not any(text in error for error in errors_at.get(number, [])):
            problems.append(f"line {number}: wanted an error with {text!r}, got {errors_at.get(number)}")
        if kind == "R" and reveals.get(number) != text:
            problems.append(f"line {number}: wanted reveal {text!r}, got {reveals.get(number)!r}")
    for number, texts in sorted(errors_at.items()):
        if wanted.get(number, ("",))[0] != "E":
            problems.append(f"line {number}: unexpected error(s) {texts}")
    assert not problems, "\n".join(problems)


# ----------------------------------------------------- options == the tables


def _spellings(table: Any) -> set[str]:
    """Every key merge_options accepts for the names of ``table``: snake, camel and the
    special Node spellings (``secureContext``)."""
    names = set(table)
    keys = names | {_options.camel_case(name) for name in names}
    keys |= {alias for alias, snake in _options._SPECIAL_SNAKE.items() if snake in names}
    return keys


def _keys(typed: Any) -> set[str]:
    return set(typed.__required_keys__) | set(typed.__optional_keys__)


def _fetch_own_parameters() -> set[str]:
    import inspect

    params = inspect.signature(_fetch.fetch).parameters.values()
    return {p.name for p in params if p.kind is p.KEYWORD_ONLY}


@pytest.mark.parametrize(
    ("typed", "table"),
    [
        (_types.RequestOptions, _options.REQUEST_OPTIONS),
        (_types.AgentOptions, _options.AGENT_OPTIONS),
        (_types.ServerOptions, _options.SERVER_OPTIONS),
    ],
    ids=["request", "agent", "server"],
)
def test_typed_options_are_the_option_tables(typed: Any, table: dict[str, Any]) -> None:
    """A new option in _options without its type here (or a typed one the table lacks)
    fails: the TypedDicts cannot drift from what merge_options accepts."""
    assert _keys(typed) == _spellings(table)
    for key in _keys(typed):  # and merge_options takes every one of them
        assert _options.merge_options(table, {key: None}, what="t", defaults=False)


def test_fetch_options_are_the_request_options_fetch_passes_on() -> None:
    """fetch()'s ``**tls_options``: the request options it neither manages nor names."""
    passed_on = set(_options.REQUEST_OPTIONS) - _fetch._MANAGED - _fetch_own_parameters()
    assert _keys(_types.FetchOptions) == _spellings(passed_on)


def test_every_duration_option_is_typed_as_a_duration() -> None:
    for typed in (_types.RequestOptions, _types.AgentOptions, _types.ServerOptions):
        for key, annotation in typed.__annotations__.items():
            annotation = getattr(annotation, "__forward_arg__", annotation)  # inherited: a ForwardRef
            is_duration = _options.snake_case(key) in _options.DURATION_OPTIONS
            assert (annotation == "Duration") == is_duration, (typed.__name__, key, annotation)


# ------------------------------------------------------------------ durations


def test_durations_take_a_timedelta_and_reject_strings() -> None:
    server = greenhttps.create_server(keep_alive_timeout=datetime.timedelta(seconds=1.5),
                                      headersTimeout=datetime.timedelta(milliseconds=250))
    assert server.keep_alive_timeout == 1500.0 and server.headers_timeout == 250.0
    agent = greenhttps.Agent(timeout=datetime.timedelta(seconds=2), keep_alive_msecs=datetime.timedelta(seconds=1))
    assert agent.timeout == 2000.0 and agent.keep_alive_msecs == 1000.0
    assert _options.ms_to_seconds(datetime.timedelta(milliseconds=250)) == 0.25
    with pytest.raises(TypeError, match=r"timeout must be a number of milliseconds or a datetime.timedelta, not '10s'"):
        greenhttps.request("https://localhost/", timeout="10s")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="keep_alive_timeout"):
        greenhttps.create_server(keepAliveTimeout="5s")  # type: ignore[arg-type]


@pytest.fixture
def silent_port() -> Any:
    """A TCP listener that accepts and never says a byte."""
    listener = gsocket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    held: list[Any] = []

    def accept() -> None:
        while True:
            conn, _ = listener.accept()
            held.append(conn)

    acceptor = gevent.spawn(accept)
    yield listener.getsockname()[1]
    acceptor.kill()
    for conn in held:
        conn.close()
    listener.close()


@pytest.mark.parametrize(
    ("timeout", "said"),
    [(1.5, "idle for 1.5 ms"), (datetime.timedelta(milliseconds=40), "idle for 40 ms")],
)
def test_idle_timeout_error_says_the_value_and_unit(silent_port: int, timeout: Any, said: str) -> None:
    """``get(url, timeout=1.5)`` is 1.5 milliseconds, and the error says so."""
    with pytest.raises(errors.TimeoutError) as caught:
        greenhttps.http.get(f"http://127.0.0.1:{silent_port}/", timeout=timeout)
    assert caught.value.code == "ETIMEDOUT"
    assert said in str(caught.value)


def test_set_timeout_takes_a_timedelta(silent_port: int) -> None:
    """``set_timeout`` (request, server, socket) takes a timedelta too; the value kept
    is milliseconds, as Node's ``timeout`` properties."""
    server = greenhttps.create_server().set_timeout(datetime.timedelta(seconds=2))
    assert server.timeout == 2000.0
    req = greenhttps.http.request(f"http://127.0.0.1:{silent_port}/")
    req.set_timeout(datetime.timedelta(milliseconds=40))
    req.end()
    with pytest.raises(errors.TimeoutError, match=r"idle for 40 ms"):
        req.getresponse()
    assert req.socket is not None
    req.socket.set_timeout(datetime.timedelta(seconds=1.5))
    assert req.socket.timeout == 1500.0


def test_deadline_and_response_wait_errors_say_the_value(silent_port: int) -> None:
    url = f"http://127.0.0.1:{silent_port}/"
    with pytest.raises(errors.TimeoutError, match=r"request deadline of 30 ms exceeded"):
        greenhttps.http.get(url, deadline=datetime.timedelta(milliseconds=30))
    req = greenhttps.http.request(url)
    req.end()
    with pytest.raises(errors.TimeoutError, match=r"no response within 30 ms"):
        req.getresponse(timeout=30)
    req.destroy()
    with pytest.raises(errors.TimeoutError, match=r"idle for 30 ms"):
        greenhttps.fetch(url, timeout=datetime.timedelta(milliseconds=30))


def test_tls_handshake_timeouts_say_the_value(silent_port: int) -> None:
    """Client side: a server that never answers the hello; server side: a client that
    never sends one (``handshake_timeout``)."""
    with pytest.raises(errors.TimeoutError, match=r"TLS handshake timed out after 50 ms"):
        greenhttps.get(f"https://127.0.0.1:{silent_port}/", timeout=datetime.timedelta(milliseconds=50))
    server = greenhttps.create_server(handshake_timeout=datetime.timedelta(milliseconds=50))
    seen: list[BaseException] = []
    server.on("tlsClientError", lambda err, sock: seen.append(err))
    server.listen(0, "127.0.0.1")
    try:
        client = gsocket.create_connection(("127.0.0.1", server.address()["port"]))  # type: ignore[index]
        with gevent.Timeout(5):
            while not seen:
                gevent.sleep(0.01)
        client.close()
    finally:
        server.close()
    assert "TLS handshake timeout after 50 ms" in str(seen[0])


def test_server_headers_timeout_error_says_the_value() -> None:
    """A head that does not arrive within ``headers_timeout`` (a timedelta here): the
    'clientError' says how long the server waited."""
    seen: list[BaseException] = []
    server = greenhttps.http.create_server(headers_timeout=datetime.timedelta(milliseconds=100))

    def on_client_error(err: BaseException, sock: Any) -> None:
        seen.append(err)
        sock.destroy()

    server.on("clientError", on_client_error)
    server.listen(0, "127.0.0.1")
    client = gsocket.create_connection(("127.0.0.1", server.address()["port"]))  # type: ignore[index]
    try:
        client.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")  # and never the blank line
        with gevent.Timeout(5):
            while not seen:
                gevent.sleep(0.01)
    finally:
        client.close()
        server.close()
    assert getattr(seen[0], "code", None) == "ERR_HTTP_REQUEST_TIMEOUT"
    assert "the head did not arrive within 100 ms" in str(seen[0])
