"""Fast in-memory tests of the pure modules: events, headers, options and errors.

No network here.  The TLS errors that ``from_os_error`` translates are real ones,
made by OpenSSL in memory (two ``ssl.MemoryBIO`` ends talking to each other), so the
attributes the translation reads are the ones a failed handshake really carries.
Node's behaviour (v20) is the reference where SPEC is silent; each such test says so.
"""

from __future__ import annotations

import builtins
import datetime
import errno
import logging
import math
import pickle
import socket
import ssl
from typing import Any

import pytest
import trustme

import greenhttps
from greenhttps import _headers, _options, errors
from greenhttps._events import EventEmitter

pytestmark = pytest.mark.timeout(10)


# ====================================================================== events


class Recorder:
    """Listeners that append (name, args) to one shared list, to check call order."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[Any, ...]]] = []

    def make(self, name: str) -> Any:
        def listener(*args: Any) -> None:
            self.calls.append((name, args))

        listener.__name__ = name
        return listener


@pytest.fixture
def rec() -> Recorder:
    return Recorder()


def test_emit_calls_listeners_in_order_with_args(rec: Recorder) -> None:
    em = EventEmitter()
    a, b = rec.make("a"), rec.make("b")
    assert em.on("x", a) is em  # chainable, as Node
    em.on("x", b).on("y", a)
    assert em.emit("x", 1, "two") is True
    assert rec.calls == [("a", (1, "two")), ("b", (1, "two"))]
    assert em.emit("y") is True
    assert rec.calls[-1] == ("a", ())


def test_emit_without_listeners_returns_false() -> None:
    em = EventEmitter()
    assert em.emit("x") is False
    em.on("y", lambda: None)
    assert em.emit("x") is False


def test_same_listener_twice_is_called_twice(rec: Recorder) -> None:
    em = EventEmitter()
    a = rec.make("a")
    em.on("x", a).on("x", a)
    em.emit("x")
    assert [name for name, _ in rec.calls] == ["a", "a"]
    assert em.listener_count("x") == 2


def test_once_fires_only_once(rec: Recorder) -> None:
    em = EventEmitter()
    a, b = rec.make("a"), rec.make("b")
    assert em.once("x", a) is em
    em.on("x", b)
    em.emit("x", 1)
    em.emit("x", 2)
    assert rec.calls == [("a", (1,)), ("b", (1,)), ("b", (2,))]
    assert em.listeners("x") == [b]


def test_once_is_removed_by_the_original_function(rec: Recorder) -> None:
    em = EventEmitter()
    a = rec.make("a")
    em.once("x", a)
    assert em.listeners("x") == [a]  # unwrapped, as Node's listeners()
    em.remove_listener("x", a)
    assert em.listener_count("x") == 0
    assert em.emit("x") is False
    assert rec.calls == []


def test_once_with_nested_emit_fires_once(rec: Recorder) -> None:
    # Node's onceWrapper has a `fired` flag: an outer emit's snapshot still holds the
    # wrapper after a nested emit (from an earlier listener) fired and removed it.
    em = EventEmitter()
    a = rec.make("once")
    nested = []

    def first(depth: int) -> None:
        if depth == 0:
            nested.append(True)
            em.emit("x", 1)

    em.on("x", first)
    em.once("x", a)
    em.emit("x", 0)
    assert nested == [True]
    assert rec.calls == [("once", (1,))]


def test_remove_listener_removes_the_most_recent_registration(rec: Recorder) -> None:
    # Node: "removeListener() will remove the most recently added instance".
    em = EventEmitter()
    a, b = rec.make("a"), rec.make("b")
    em.on("x", a).on("x", b).on("x", a)
    assert em.remove_listener("x", a) is em
    assert em.listeners("x") == [a, b]
    em.off("x", a)
    assert em.listeners("x") == [b]


def test_remove_listener_prefers_a_later_on_over_an_earlier_once(rec: Recorder) -> None:
    em = EventEmitter()
    a = rec.make("a")
    em.once("x", a)
    em.on("x", a)
    em.remove_listener("x", a)
    em.emit("x")
    em.emit("x")
    assert len(rec.calls) == 1  # what is left is the once registration


def test_remove_unknown_listener_is_a_no_op(rec: Recorder) -> None:
    em = EventEmitter()
    a, b = rec.make("a"), rec.make("b")
    em.remove_listener("x", a)  # no listeners at all
    em.on("x", a)
    em.remove_listener("x", b)
    em.remove_listener("other", a)
    assert em.listeners("x") == [a]


def test_listener_removing_itself_during_emit(rec: Recorder) -> None:
    em = EventEmitter()
    a, c = rec.make("a"), rec.make("c")

    def b() -> None:
        rec.calls.append(("b", ()))
        em.remove_listener("x", b)

    em.on("x", a).on("x", b).on("x", c)
    em.emit("x")
    assert [name for name, _ in rec.calls] == ["a", "b", "c"]  # nobody skipped
    rec.calls.clear()
    em.emit("x")
    assert [name for name, _ in rec.calls] == ["a", "c"]


def test_changes_during_emit_apply_to_the_next_emit(rec: Recorder) -> None:
    # Node clones the listener array: one removed during an emit is still called in
    # that emit, one added is not.
    em = EventEmitter()
    b, late = rec.make("b"), rec.make("late")

    def a() -> None:
        rec.calls.append(("a", ()))
        em.remove_listener("x", b)
        em.on("x", late)

    em.on("x", a).on("x", b)
    em.emit("x")
    assert [name for name, _ in rec.calls] == ["a", "b"]
    rec.calls.clear()
    em.remove_listener("x", a)
    em.emit("x")
    assert [name for name, _ in rec.calls] == ["late"]


def test_listeners_is_a_copy_and_listener_count(rec: Recorder) -> None:
    em = EventEmitter()
    a, b = rec.make("a"), rec.make("b")
    assert em.listeners("x") == [] and em.listener_count("x") == 0
    em.on("x", a).once("x", b)
    got = em.listeners("x")
    assert got == [a, b]
    got.clear()
    assert em.listener_count("x") == 2
    assert not em.has_listeners("y") and em.has_listeners("x")


def test_listener_object_with_a_listener_attribute_is_not_unwrapped() -> None:
    class Handler:
        listener = "not a function"

        def __call__(self) -> None:
            pass

    em = EventEmitter()
    handler = Handler()
    em.on("x", handler)
    assert em.listeners("x") == [handler]
    em.remove_listener("x", "not a function")  # type: ignore[arg-type]
    assert em.listener_count("x") == 1


def test_prepend_and_remove_all(rec: Recorder) -> None:
    em = EventEmitter()
    a, b = rec.make("a"), rec.make("b")
    em.on("x", a).prepend_listener("x", b).on("y", a)
    em.emit("x")
    assert [name for name, _ in rec.calls] == ["b", "a"]
    em.remove_all_listeners("x")
    assert em.listener_count("x") == 0 and em.listener_count("y") == 1
    em.remove_all_listeners()
    assert em.listener_count("y") == 0 and em.emit("y") is False


def test_decorator_forms(rec: Recorder) -> None:
    em = EventEmitter()

    @em.on("x")
    def handler(value: int) -> None:
        rec.calls.append(("on", (value,)))

    @em.once("x")
    def first(value: int) -> None:
        rec.calls.append(("once", (value,)))

    assert callable(handler) and handler.__name__ == "handler"  # the function itself
    assert em.listeners("x") == [handler, first]
    em.emit("x", 1)
    em.emit("x", 2)
    assert rec.calls == [("on", (1,)), ("once", (1,)), ("on", (2,))]


def test_camel_case_aliases_are_the_same_methods(rec: Recorder) -> None:
    assert EventEmitter.addListener is EventEmitter.on
    assert EventEmitter.removeListener is EventEmitter.remove_listener
    assert EventEmitter.off is EventEmitter.remove_listener
    assert EventEmitter.listenerCount is EventEmitter.listener_count
    assert EventEmitter.removeAllListeners is EventEmitter.remove_all_listeners
    em = EventEmitter()
    a = rec.make("a")
    em.addListener("x", a)
    assert em.listenerCount("x") == 1
    em.removeListener("x", a)
    assert em.listenerCount("x") == 0


def test_listener_exception_propagates_and_stops_emit(rec: Recorder) -> None:
    em = EventEmitter()

    def boom() -> None:
        raise RuntimeError("boom")

    em.on("x", boom).on("x", rec.make("after"))
    with pytest.raises(RuntimeError, match="boom"):
        em.emit("x")
    assert rec.calls == []  # as Node: a throwing listener ends the emit


def test_emit_error_without_listener_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    em = EventEmitter()
    err = errors.ConnectionResetError("socket hang up")
    with caplog.at_level(logging.DEBUG, logger="greenhttps"):
        em.emit_error(err)  # must not raise
    records = [r for r in caplog.records if r.name == "greenhttps"]
    assert len(records) == 1
    record = records[0]
    assert record.levelno == logging.ERROR
    assert "socket hang up" in record.getMessage()
    assert record.exc_info is not None and record.exc_info[1] is err


def test_emit_error_with_listener_calls_it_and_logs_nothing(
    caplog: pytest.LogCaptureFixture, rec: Recorder
) -> None:
    em = EventEmitter()
    em.on("error", rec.make("error"))
    err = errors.TimeoutError("too slow")
    with caplog.at_level(logging.DEBUG, logger="greenhttps"):
        em.emit_error(err)
    assert rec.calls == [("error", (err,))]
    assert [r for r in caplog.records if r.name == "greenhttps"] == []


# ===================================================================== headers


VALID_TOKENS = ["x", "Content-Type", "X-Custom_Header", "a!#$%&'*+-.^_`|~9", "ETag", "0"]


@pytest.mark.parametrize("name", VALID_TOKENS)
def test_check_name_accepts_tokens(name: str) -> None:
    assert _headers.check_name(name) == name


@pytest.mark.parametrize(
    "name",
    ["", "a b", "a:b", "a\r", "a\n", "a\x00", "a\x01", "a\x7f", "\u0100", "caf\xe9", 'a"', "(x)",
     "a\tb", "x/y", "a@b", "[x]", "{x}", "a,b", "a;b", "a=b"],
)
def test_check_name_rejects_non_tokens(name: str) -> None:
    with pytest.raises(errors.InvalidArgumentError) as info:
        _headers.check_name(name)
    assert info.value.code == "ERR_INVALID_HTTP_TOKEN"
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize("name", [None, 1, b"X-Bytes"])
def test_check_name_rejects_non_str(name: object) -> None:
    with pytest.raises(errors.InvalidArgumentError) as info:
        _headers.check_name(name)
    assert info.value.code == "ERR_INVALID_HTTP_TOKEN"


BAD_VALUE_CHARS = {
    "CR": "a\rb",
    "LF": "a\nb",
    "CRLF injection": "v\r\nX-Injected: 1",
    "NUL": "a\x00b",
    "SOH": "a\x01b",
    "US": "a\x1fb",
    "DEL": "a\x7fb",
    "U+0100": "a\u0100b",
    "euro sign": "\u20ac",
    "emoji": "\U0001f600",
}


@pytest.mark.parametrize("value", BAD_VALUE_CHARS.values(), ids=BAD_VALUE_CHARS.keys())
def test_check_value_rejects_invalid_characters(value: str) -> None:
    with pytest.raises(errors.InvalidArgumentError) as info:
        _headers.check_value("X-Test", value)
    assert info.value.code == "ERR_INVALID_CHAR"
    assert "X-Test" in str(info.value)


@pytest.mark.parametrize("value", BAD_VALUE_CHARS.values(), ids=BAD_VALUE_CHARS.keys())
def test_check_value_rejects_invalid_characters_in_list_items(value: str) -> None:
    with pytest.raises(errors.InvalidArgumentError) as info:
        _headers.check_value("X-Test", ["fine", value])
    assert info.value.code == "ERR_INVALID_CHAR"


@pytest.mark.parametrize(
    "value", ["", "plain", "a\tb", " spaced ", "obs-text \x80\xa0\xe9\xff", "~!@#$%^&*()"]
)
def test_check_value_accepts_visible_latin1_and_tab(value: str) -> None:
    assert _headers.check_value("X-Test", value) == value


@pytest.mark.parametrize(
    ("value", "expected"),
    [(5, "5"), (0, "0"), (-1, "-1"), (1.5, "1.5"), (10**20, str(10**20)), (b"caf\xe9", "caf\xe9")],
)
def test_check_value_converts_numbers_and_bytes(value: object, expected: str) -> None:
    assert _headers.check_value("X-Test", value) == expected


def test_check_value_bytes_with_control_characters_are_rejected() -> None:
    with pytest.raises(errors.InvalidArgumentError) as info:
        _headers.check_value("X-Test", b"a\r\nb")
    assert info.value.code == "ERR_INVALID_CHAR"


def test_check_value_lists_become_lists_of_str() -> None:
    assert _headers.check_value("Set-Cookie", ["a=1", 2, b"c=3"]) == ["a=1", "2", "c=3"]
    assert _headers.check_value("Set-Cookie", ("a=1", "b=2")) == ["a=1", "b=2"]
    assert _headers.check_value("Set-Cookie", []) == []


@pytest.mark.parametrize("value", [None, True, False, {"a": 1}, object(), [["nested"]]])
def test_check_value_rejects_other_types(value: object) -> None:
    with pytest.raises(errors.InvalidArgumentError) as info:
        _headers.check_value("X-Test", value)
    assert info.value.code == "ERR_HTTP_INVALID_HEADER_VALUE"


def test_outgoing_headers_case_insensitive_set_get_remove() -> None:
    h = _headers.OutgoingHeaders()
    h.set("Content-Type", "text/plain")
    h.set("X-Num", 42)
    assert h.get("content-type") == "text/plain"
    assert h.get("CONTENT-TYPE") == "text/plain"
    assert h.get("x-num") == "42"
    assert "content-type" in h and "x-missing" not in h
    assert h.get("x-missing") is None
    h.remove("CONTENT-type")
    assert h.get("Content-Type") is None and "content-type" not in h
    h.remove("never-set")  # no error
    assert h.names() == ["X-Num"]


def test_outgoing_headers_replacing_keeps_position_and_takes_the_new_spelling() -> None:
    # Node 20: setHeader('X-Foo', 'a'); setHeader('x-foo', 'b') -> getRawHeaderNames()
    # is ['x-foo']: the latest spelling goes on the wire, in the first one's position.
    h = _headers.OutgoingHeaders()
    h.set("X-Foo", "a")
    h.set("Accept", "*/*")
    h.set("x-foo", "b")
    assert h.names() == ["x-foo", "Accept"]
    assert h.as_dict() == {"x-foo": "b", "accept": "*/*"}
    assert h.pairs() == [(b"x-foo", b"b"), (b"Accept", b"*/*")]


def test_outgoing_headers_invalid_set_stores_nothing() -> None:
    h = _headers.OutgoingHeaders()
    h.set("X-Ok", "1")
    with pytest.raises(errors.InvalidArgumentError):
        h.set("X-Ok", "bad\r\nvalue")
    with pytest.raises(errors.InvalidArgumentError):
        h.set("Bad Name", "1")
    assert h.pairs() == [(b"X-Ok", b"1")]


def test_outgoing_headers_pairs_repeat_list_values_and_encode_latin1() -> None:
    h = _headers.OutgoingHeaders()
    h.update({"Set-Cookie": ["a=1", "b=2"], "X-Name": "caf\xe9"})
    h.update([("X-Empty-List", []), ("X-Int", 7)])
    assert h.pairs() == [
        (b"Set-Cookie", b"a=1"),
        (b"Set-Cookie", b"b=2"),
        (b"X-Name", b"caf\xe9"),
        (b"X-Int", b"7"),
    ]
    assert h.get("set-cookie") == ["a=1", "b=2"]


def test_set_default_does_not_override() -> None:
    h = _headers.OutgoingHeaders()
    h.set("date", "mine")
    h.set_default("date", "Date", "auto")
    h.set_default("server", "Server", "auto")
    assert h.pairs() == [(b"date", b"mine"), (b"Server", b"auto")]


def test_pairs_from_validates() -> None:
    assert _headers.pairs_from(None) == []
    assert _headers.pairs_from({}) == []
    assert _headers.pairs_from([("X-Trailer", 1)]) == [(b"X-Trailer", b"1")]
    with pytest.raises(errors.InvalidArgumentError):
        _headers.pairs_from({"X-Trailer": "a\nb"})


def wire(*pairs: tuple[str, str]) -> list[tuple[bytes, bytes]]:
    return [(n.encode("latin-1"), v.encode("latin-1")) for n, v in pairs]


# SPEC "Headers in": repeats of these keep the first value.
SINGLE_VALUED = [
    "age", "authorization", "content-length", "content-type", "etag", "expires", "from",
    "host", "if-modified-since", "if-unmodified-since", "last-modified", "location",
    "max-forwards", "proxy-authorization", "referer", "retry-after", "server", "user-agent",
]


def test_spec_list_has_18_names() -> None:
    assert len(set(SINGLE_VALUED)) == 18


@pytest.mark.parametrize("name", SINGLE_VALUED)
def test_node_headers_single_valued_keep_first(name: str) -> None:
    got = _headers.node_headers(wire((name.title(), "first"), (name.upper(), "second"), (name, "third")))
    assert got == {name: "first"}


@pytest.mark.parametrize(
    "name", ["accept", "x-custom", "cache-control", "content-disposition", "date", "via",
             "www-authenticate", "connection", "content-location", "warning"]
)
def test_node_headers_other_repeats_join_with_comma(name: str) -> None:
    # (content-disposition and date are joined too: checked against node 20.)
    got = _headers.node_headers(wire((name, "a"), (name.upper(), "b"), (name, "c")))
    assert got == {name: "a, b, c"}


def test_node_headers_set_cookie_always_a_list() -> None:
    assert _headers.node_headers(wire(("Set-Cookie", "a=1"))) == {"set-cookie": ["a=1"]}
    got = _headers.node_headers(wire(("Set-Cookie", "a=1"), ("X", "y"), ("SET-COOKIE", "b=2; Path=/")))
    assert got == {"set-cookie": ["a=1", "b=2; Path=/"], "x": "y"}


def test_node_headers_cookie_joined_with_semicolon() -> None:
    assert _headers.node_headers(wire(("Cookie", "a=1"))) == {"cookie": "a=1"}
    got = _headers.node_headers(wire(("Cookie", "a=1"), ("cookie", "b=2"), ("COOKIE", "c=3")))
    assert got == {"cookie": "a=1; b=2; c=3"}


def test_node_headers_lowercases_names_keeps_values_and_order() -> None:
    got = _headers.node_headers(
        wire(("Host", "example.org"), ("X-Name", "Caf\xe9 Value"), ("Accept", "*/*"), ("x-empty", ""))
    )
    assert got == {"host": "example.org", "x-name": "Caf\xe9 Value", "accept": "*/*", "x-empty": ""}
    assert list(got) == ["host", "x-name", "accept", "x-empty"]
    assert _headers.node_headers([]) == {}


def test_node_headers_mixed() -> None:
    got = _headers.node_headers(
        wire(("Content-Type", "text/html"), ("Content-Type", "text/plain"), ("Set-Cookie", "a=1"),
             ("Vary", "Accept"), ("Vary", "Origin"), ("Cookie", "x=1"), ("Cookie", "y=2"))
    )
    assert got == {
        "content-type": "text/html",
        "set-cookie": ["a=1"],
        "vary": "Accept, Origin",
        "cookie": "x=1; y=2",
    }


def test_raw_list_keeps_names_values_and_repeats_as_received() -> None:
    fields = wire(("Host", "h"), ("set-cookie", "a"), ("Set-Cookie", "b"), ("X-Latin", "\xe9"))
    assert _headers.raw_list(fields) == ["Host", "h", "set-cookie", "a", "Set-Cookie", "b", "X-Latin", "\xe9"]
    assert _headers.raw_list([]) == []


# ===================================================================== options


ALL_OPTION_KEYS = sorted(
    set(_options.SERVER_OPTIONS) | set(_options.REQUEST_OPTIONS) | set(_options.AGENT_OPTIONS)
)


@pytest.mark.parametrize("name", ALL_OPTION_KEYS)
def test_camel_snake_round_trip(name: str) -> None:
    camel = _options.camel_case(name)
    assert "_" not in camel
    assert _options.snake_case(camel) == name
    assert _options.snake_case(name) == name  # snake names pass through


@pytest.mark.parametrize(
    ("snake", "camel"),
    [
        ("sni_callback", "SNICallback"),
        ("alpn_protocols", "ALPNProtocols"),
        ("max_header_size", "maxHeaderSize"),
        ("insecure_http_parser", "insecureHTTPParser"),
        ("reject_unauthorized", "rejectUnauthorized"),
        ("keep_alive_msecs", "keepAliveMsecs"),
        ("max_free_sockets", "maxFreeSockets"),
        ("local_address", "localAddress"),
        ("socket_path", "socketPath"),
        ("set_host", "setHost"),
        ("check_server_identity", "checkServerIdentity"),
        ("honor_cipher_order", "honorCipherOrder"),
        ("secure_protocol", "secureProtocol"),
        ("headers_timeout", "headersTimeout"),
        ("max_headers_count", "maxHeadersCount"),
        ("keep_alive_timeout", "keepAliveTimeout"),
        ("request_timeout", "requestTimeout"),
        ("timeout", "timeout"),
    ],
)
def test_node_spellings(snake: str, camel: str) -> None:
    assert _options.camel_case(snake) == camel
    assert _options.snake_case(camel) == snake


def test_secure_context_is_ssl_context() -> None:
    assert _options.snake_case("secureContext") == "ssl_context"
    merged = _options.merge_options(_options.REQUEST_OPTIONS, {"secureContext": "ctx"}, what="request")
    assert merged["ssl_context"] == "ctx"


@pytest.mark.parametrize("table", ["SERVER_OPTIONS", "REQUEST_OPTIONS", "AGENT_OPTIONS"])
def test_every_camel_key_is_accepted(table: str) -> None:
    options = getattr(_options, table)
    source = {_options.camel_case(name): index for index, name in enumerate(options)}
    merged = _options.merge_options(options, source, what="x", defaults=False)
    assert merged == {name: index for index, name in enumerate(options)}


@pytest.mark.parametrize("key", ["rejectUnauthorised", "reject_unauthorised", "keepalive", "Host", "SNIcallback"])
def test_merge_options_unknown_key_names_it(key: str) -> None:
    with pytest.raises(TypeError, match=key):
        _options.merge_options(_options.REQUEST_OPTIONS, {key: 1}, what="request")


def test_merge_options_non_str_key_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="42"):
        _options.merge_options(_options.REQUEST_OPTIONS, {42: 1}, what="request")  # type: ignore[dict-item]


def test_merge_options_mixed_spellings_and_later_wins() -> None:
    table = _options.AGENT_OPTIONS
    merged = _options.merge_options(
        table,
        {"keepAlive": True, "max_sockets": 2, "maxFreeSockets": 1},
        None,
        {},
        {"keep_alive_msecs": 50, "maxSockets": 3},
        {"keepAliveMsecs": 70},
        what="Agent",
    )
    assert merged["keep_alive"] is True
    assert merged["max_sockets"] == 3
    assert merged["max_free_sockets"] == 1
    assert merged["keep_alive_msecs"] == 70
    assert merged["scheduling"] == "lifo"  # default kept
    assert set(merged) == set(table)  # snake_case keys only
    assert table["keep_alive"] is False  # the table is not modified


def test_merge_options_later_key_in_one_dict_wins() -> None:
    merged = _options.merge_options(
        _options.SERVER_OPTIONS, {"headersTimeout": 1, "headers_timeout": 2}, what="Server", defaults=False
    )
    assert merged == {"headers_timeout": 2}


def test_merge_options_defaults_false_returns_only_given() -> None:
    merged = _options.merge_options(_options.SERVER_OPTIONS, {"keepAliveTimeout": 10}, what="Server", defaults=False)
    assert merged == {"keep_alive_timeout": 10}
    full = _options.merge_options(_options.SERVER_OPTIONS, what="Server")
    assert full == _options.SERVER_OPTIONS and full is not _options.SERVER_OPTIONS


def test_server_defaults_are_nodes() -> None:
    table = _options.SERVER_OPTIONS
    assert table["timeout"] == 120_000
    assert table["headers_timeout"] == 60_000
    assert table["request_timeout"] == 300_000
    assert table["keep_alive_timeout"] == 5_000
    assert table["max_headers_count"] == 2000
    assert table["max_header_size"] == 16384
    agent = _options.AGENT_OPTIONS
    assert agent["keep_alive_msecs"] == 1000 and agent["max_free_sockets"] == 256
    assert agent["max_sockets"] == math.inf and agent["scheduling"] == "lifo"


@pytest.mark.parametrize(
    ("msecs", "seconds"), [(0, None), (None, None), (0.0, None), (math.inf, None), (1, 0.001), (1500, 1.5)]
)
def test_ms_to_seconds(msecs: float | None, seconds: float | None) -> None:
    assert _options.ms_to_seconds(msecs) == seconds


@pytest.mark.parametrize("msecs", [-1, -0.5, -math.inf, math.nan])
def test_ms_to_seconds_rejects_negative_and_nan(msecs: float) -> None:
    with pytest.raises(ValueError):
        _options.ms_to_seconds(msecs)


def test_node_aliases_methods_properties_and_values() -> None:
    class Base:
        plain_value = 1

        def set_header(self) -> str:
            return "base"

        def get_header(self) -> str:
            return "base"

        getHeader = get_header  # noqa: N815 (hand-written alias)

    @_options.node_aliases
    class Child(Base):
        send_date = True
        _private_thing = 1
        simple = 2

        def write_head(self) -> str:
            return "child"

        def get_header(self) -> str:  # an override: the alias must follow it
            return "child"

        @property
        def headers_sent(self) -> bool:
            return True

    assert Child.writeHead is Child.write_head
    assert Child.setHeader is Base.set_header  # inherited
    assert Child.getHeader is Child.get_header  # stale base alias replaced
    assert Base.getHeader is Base.get_header  # the base is untouched
    assert Child.headersSent is vars(Child)["headers_sent"]  # the property itself
    assert not hasattr(Child, "_privateThing") and not hasattr(Child, "privateThing")
    obj = Child()
    assert obj.headersSent is True
    # A plain value gets a read-write alias, not a copy.
    assert obj.sendDate is True and obj.plainValue == 1
    obj.sendDate = False
    assert obj.send_date is False
    obj.send_date = True
    assert obj.sendDate is True
    assert Child.send_date is True  # the class value itself is untouched


def test_node_aliases_keeps_hand_written_alias_in_same_class() -> None:
    @_options.node_aliases
    class Thing:
        def do_it(self) -> str:
            return "snake"

        def doIt(self) -> str:  # noqa: N802
            return "camel"

    assert Thing().doIt() == "camel"


# ====================================================================== errors


ERROR_CLASSES = [getattr(errors, name) for name in errors.__all__ if isinstance(getattr(errors, name), type)]
NETWORK_CLASSES = [cls for cls in ERROR_CLASSES if issubclass(cls, errors.NetworkError)]


def test_every_error_is_a_greenhttps_error() -> None:
    assert errors.Error is greenhttps.Error
    for cls in ERROR_CLASSES:
        assert issubclass(cls, greenhttps.Error), cls


@pytest.mark.parametrize("cls", NETWORK_CLASSES, ids=lambda c: c.__name__)
def test_network_errors_are_oserrors(cls: type[errors.Error]) -> None:
    assert issubclass(cls, OSError)
    err = cls("boom")
    with pytest.raises(OSError):
        raise err
    with pytest.raises(greenhttps.Error):
        raise err


@pytest.mark.parametrize(
    ("ours", "builtin"),
    [
        (errors.ConnectionRefusedError, builtins.ConnectionRefusedError),
        (errors.ConnectionResetError, builtins.ConnectionResetError),
        (errors.TimeoutError, builtins.TimeoutError),
        (errors.TLSError, ssl.SSLError),
        (errors.CertificateError, ssl.SSLCertVerificationError),
        (errors.CertificateError, ssl.CertificateError),
        (errors.InvalidArgumentError, ValueError),
        (errors.InvalidProtocolError, TypeError),
        (errors.InvalidProtocolError, ValueError),
        (errors.InvalidURLError, ValueError),
    ],
)
def test_error_tree_matches_stdlib(ours: type, builtin: type) -> None:
    assert issubclass(ours, builtin)
    assert issubclass(ours, errors.Error)


def test_non_network_errors_are_not_oserrors() -> None:
    for cls in (errors.Error, errors.InvalidArgumentError, errors.HeadersSentError, errors.ProtocolError):
        assert not issubclass(cls, OSError), cls


@pytest.mark.parametrize(
    ("cls", "code"),
    [
        (errors.InvalidProtocolError, "ERR_INVALID_PROTOCOL"),
        (errors.InvalidURLError, "ERR_INVALID_URL"),
        (errors.HeadersSentError, "ERR_HTTP_HEADERS_SENT"),
        (errors.ConnectionRefusedError, "ECONNREFUSED"),
        (errors.ConnectionResetError, "ECONNRESET"),
        (errors.TimeoutError, "ETIMEDOUT"),
        (errors.NameResolutionError, "ENOTFOUND"),
        (errors.AddressInUseError, "EADDRINUSE"),
    ],
)
def test_code_defaults(cls: type[errors.Error], code: str) -> None:
    assert cls.code == code
    err = cls("message")
    assert err.code == code
    assert str(err) == f"message [{code}]"


def test_code_override_is_per_instance() -> None:
    err = errors.InvalidURLError("bad path", "ERR_UNESCAPED_CHARACTERS")
    assert err.code == "ERR_UNESCAPED_CHARACTERS"
    assert errors.InvalidURLError.code == "ERR_INVALID_URL"
    assert errors.InvalidURLError("x").code == "ERR_INVALID_URL"


def test_str_shows_message_and_code() -> None:
    err = errors.ConnectionResetError("socket hang up")
    assert str(err) == "socket hang up [ECONNRESET]"
    assert err.message == "socket hang up"
    assert err.args == ("socket hang up",)
    assert str(errors.TimeoutError()) == "ETIMEDOUT"  # no message: the code alone
    assert "ERR_INVALID_CHAR" in str(errors.InvalidArgumentError("bad", "ERR_INVALID_CHAR"))


def test_extra_attributes() -> None:
    err = errors.ProtocolError("too big", "HPE_HEADER_OVERFLOW", status_hint=431)
    assert err.status_hint == 431
    assert errors.ProtocolError("x").status_hint == 400


@pytest.mark.parametrize(
    ("err", "number"),
    [
        (errors.ConnectionRefusedError("x"), errno.ECONNREFUSED),
        (errors.ConnectionResetError("x"), errno.ECONNRESET),
        (errors.ConnectionResetError("x", "EPIPE"), errno.EPIPE),
        (errors.TimeoutError("x"), errno.ETIMEDOUT),
        (errors.AddressInUseError("x"), errno.EADDRINUSE),
        (errors.NetworkError("x", "EHOSTUNREACH"), errno.EHOSTUNREACH),
        (errors.NameResolutionError("x"), None),  # ENOTFOUND is not an errno
        (errors.CertificateError("x", "CERT_HAS_EXPIRED"), None),
        (errors.TLSError("x"), None),
    ],
)
def test_network_error_errno_and_strerror(err: errors.NetworkError, number: int | None) -> None:
    assert err.errno == number
    assert err.strerror == "x"


def _sample_errors() -> list[errors.Error]:
    out: list[errors.Error] = [cls("some message") for cls in ERROR_CLASSES]
    out += [
        errors.Error(),
        errors.NetworkError(),
        errors.ConnectionResetError("broken pipe", "EPIPE"),
        errors.InvalidURLError("bad", "ERR_UNESCAPED_CHARACTERS"),
        errors.ProtocolError("too many", "HPE_HEADER_OVERFLOW", status_hint=431),
        errors.CertificateError("expired", "CERT_HAS_EXPIRED", verify_code=10, verify_message="expired"),
    ]
    return out


@pytest.mark.parametrize("err", _sample_errors(), ids=lambda e: f"{type(e).__name__}-{e.code}")
def test_pickle_round_trip(err: errors.Error) -> None:
    back = pickle.loads(pickle.dumps(err))
    assert type(back) is type(err)
    assert str(back) == str(err)
    assert back.code == err.code
    assert back.args == err.args
    assert getattr(back, "errno", None) == getattr(err, "errno", None)
    assert getattr(back, "strerror", None) == getattr(err, "strerror", None)
    for name in ("status_hint", "verify_code", "verify_message"):
        assert getattr(back, name, None) == getattr(err, name, None)


# ---------------------------------------------------------- from_os_error


def test_from_os_error_tls_codes_are_tokens() -> None:
    """Python invents some SSL reasons in prose; the code must still be a token."""
    exc = ssl.SSLError(1, "[SSL] closed before TLS handshake with data in recv buffer.")
    exc.reason, exc.library = "closed before TLS handshake with data in recv buffer.", "SSL"  # type: ignore[misc]
    err = errors.from_os_error(exc, during="TLS handshake")
    assert err.code == "ERR_SSL_CLOSED_BEFORE_TLS_HANDSHAKE_WITH_DATA_IN_RECV_BUFFER"
    exc.reason = "WRONG_VERSION_NUMBER"  # type: ignore[misc]
    assert errors.from_os_error(exc).code == "ERR_SSL_WRONG_VERSION_NUMBER"


def test_from_os_error_returns_our_errors_unchanged() -> None:
    err = errors.TimeoutError("x")
    assert errors.from_os_error(err) is err


@pytest.mark.parametrize(
    ("number", "cls"),
    [
        (errno.ECONNREFUSED, errors.ConnectionRefusedError),
        (errno.ECONNRESET, errors.ConnectionResetError),
        (errno.EPIPE, errors.ConnectionResetError),
        (errno.ECONNABORTED, errors.ConnectionResetError),
        (errno.ETIMEDOUT, errors.TimeoutError),
        (errno.EADDRINUSE, errors.AddressInUseError),
        (errno.EHOSTUNREACH, errors.NetworkError),
        (errno.ENETUNREACH, errors.NetworkError),
    ],
)
def test_from_os_error_errno(number: int, cls: type[errors.NetworkError]) -> None:
    exc = OSError(number, "the OS says no")
    got = errors.from_os_error(exc, during="connect")
    assert type(got) is cls
    assert got.code == errno.errorcode[number]
    assert got.errno == number
    assert "the OS says no" in str(got) and "during connect" in str(got)


def test_from_os_error_builtin_connection_refused() -> None:
    got = errors.from_os_error(builtins.ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused"))
    assert isinstance(got, errors.ConnectionRefusedError)
    assert isinstance(got, builtins.ConnectionRefusedError)
    assert got.code == "ECONNREFUSED"
    assert str(got) == "Connection refused [ECONNREFUSED]"


def test_from_os_error_without_errno_is_a_reset() -> None:
    got = errors.from_os_error(OSError("something odd"))
    assert isinstance(got, errors.ConnectionResetError)
    assert got.code == "ECONNRESET"


def test_from_os_error_gaierror() -> None:
    got = errors.from_os_error(socket.gaierror(socket.EAI_NONAME, "Name or service not known"))
    assert isinstance(got, errors.NameResolutionError)
    assert got.code == "ENOTFOUND"
    assert "Name or service not known" in str(got)


@pytest.mark.parametrize("exc", [socket.timeout("timed out"), builtins.TimeoutError()])
def test_from_os_error_timeout(exc: OSError) -> None:
    got = errors.from_os_error(exc, during="handshake")
    assert isinstance(got, errors.TimeoutError) and isinstance(got, builtins.TimeoutError)
    assert got.code == "ETIMEDOUT"
    assert "handshake" in str(got)


@pytest.mark.parametrize("cls", [ssl.SSLEOFError, ssl.SSLZeroReturnError])
def test_from_os_error_tls_eof_is_socket_hang_up(cls: type[ssl.SSLError]) -> None:
    got = errors.from_os_error(cls(8, "EOF occurred in violation of protocol"))
    assert isinstance(got, errors.ConnectionResetError)
    assert got.code == "ECONNRESET"
    assert str(got).startswith("socket hang up")


def test_from_os_error_other_exception() -> None:
    got = errors.from_os_error(RuntimeError("odd"))
    assert isinstance(got, errors.NetworkError)
    assert "odd" in str(got)


# SPEC: OpenSSL verify code -> Node's code.  20 ("unable to get local issuer
# certificate") is what Python's OpenSSL reports for a leaf-only server whose issuer
# is unknown; SPEC says to report Node's code for that case.
VERIFY_CODES = [
    (18, "DEPTH_ZERO_SELF_SIGNED_CERT"),
    (19, "SELF_SIGNED_CERT_IN_CHAIN"),
    (20, "UNABLE_TO_GET_ISSUER_CERT_LOCALLY"),  # a lone leaf: _verify.handshake_error makes it 21
    (21, "UNABLE_TO_VERIFY_LEAF_SIGNATURE"),
    (10, "CERT_HAS_EXPIRED"),
    (9, "CERT_NOT_YET_VALID"),
    (62, "ERR_TLS_CERT_ALTNAME_INVALID"),
    (64, "ERR_TLS_CERT_ALTNAME_INVALID"),
]


@pytest.mark.parametrize(("verify_code", "node_code"), VERIFY_CODES)
def test_from_os_error_verify_codes(verify_code: int, node_code: str) -> None:
    exc = ssl.SSLCertVerificationError(1, "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed")
    exc.verify_code = verify_code
    exc.verify_message = "some reason"
    got = errors.from_os_error(exc, during="TLS handshake")
    assert isinstance(got, errors.CertificateError)
    assert isinstance(got, ssl.SSLCertVerificationError) and isinstance(got, OSError)
    assert got.code == node_code
    assert got.verify_code == verify_code
    assert str(got) == f"some reason during TLS handshake [{node_code}]"


def test_from_os_error_verification_error_without_details() -> None:
    got = errors.from_os_error(ssl.SSLCertVerificationError(1, "failed"))
    assert isinstance(got, errors.CertificateError)
    assert got.code == errors.CertificateError.code
    assert got.verify_code is None


# ----------------------------------------------- real OpenSSL errors, in memory


def _memory_handshake(
    client_ctx: ssl.SSLContext, server_ctx: ssl.SSLContext | None, hostname: str, garbage: bytes = b""
) -> ssl.SSLError:
    """Run a client handshake against ``server_ctx`` (or ``garbage``) over memory BIOs."""
    c_in, c_out, s_in, s_out = ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO()
    client = client_ctx.wrap_bio(c_in, c_out, server_hostname=hostname)
    server = server_ctx.wrap_bio(s_in, s_out, server_side=True) if server_ctx else None
    for _ in range(10):
        try:
            client.do_handshake()
        except ssl.SSLWantReadError:
            pass
        except ssl.SSLError as exc:
            return exc
        if server is None:
            c_in.write(garbage)
            continue
        s_in.write(c_out.read())
        try:
            server.do_handshake()
        except ssl.SSLWantReadError:
            pass
        except ssl.SSLError:
            pass  # the client's alert; the client side error is what we want
        c_in.write(s_out.read())
    raise AssertionError("the handshake did not fail")


def _server_context(cert: trustme.LeafCert | trustme.CA) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    cert.configure_cert(ctx)
    return ctx


def _client_context(ca: trustme.CA) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ca.configure_trust(ctx)
    return ctx


class _SelfSigned:
    """A CA's own certificate served as a leaf: self-signed at depth 0."""

    def __init__(self, ca: trustme.CA) -> None:
        self.ca = ca

    def configure_cert(self, ctx: ssl.SSLContext) -> None:
        with self.ca.cert_pem.tempfile() as cert, self.ca.private_key_pem.tempfile() as key:
            ctx.load_cert_chain(cert, key)


def _expired_leaf(ca: trustme.CA) -> trustme.LeafCert:
    now = datetime.datetime.now(datetime.timezone.utc)
    return ca.issue_cert(
        "localhost", not_before=now - datetime.timedelta(days=10), not_after=now - datetime.timedelta(days=1)
    )


@pytest.mark.parametrize(
    ("case", "node_code"),
    [
        ("self-signed", "DEPTH_ZERO_SELF_SIGNED_CERT"),
        # OpenSSL's 20 by its name; a connection's handshake_error makes a lone leaf
        # UNABLE_TO_VERIFY_LEAF_SIGNATURE, as Node (tests/test_tls_parity.py).
        ("unknown issuer, leaf only", "UNABLE_TO_GET_ISSUER_CERT_LOCALLY"),
        ("wrong name", "ERR_TLS_CERT_ALTNAME_INVALID"),
        ("expired", "CERT_HAS_EXPIRED"),
    ],
)
def test_from_os_error_real_verification_failures(
    case: str, node_code: str, ca: trustme.CA, other_ca: trustme.CA
) -> None:
    hostname = "localhost"
    if case == "self-signed":
        server: Any = _SelfSigned(other_ca)
    elif case == "unknown issuer, leaf only":
        server = other_ca.issue_cert("localhost")
    elif case == "wrong name":
        server = ca.issue_cert("example.org")
    else:
        server = _expired_leaf(ca)
    exc = _memory_handshake(_client_context(ca), _server_context(server), hostname)
    assert isinstance(exc, ssl.SSLCertVerificationError)
    got = errors.from_os_error(exc, during="TLS handshake")
    assert isinstance(got, errors.CertificateError)
    assert got.code == node_code, (exc.verify_code, exc.verify_message)
    assert got.verify_code == exc.verify_code
    assert exc.verify_message in str(got)
    assert pickle.loads(pickle.dumps(got)).code == node_code


def test_from_os_error_real_protocol_error(ca: trustme.CA) -> None:
    exc = _memory_handshake(_client_context(ca), None, "localhost", garbage=b"HTTP/1.1 400 Bad Request\r\n\r\n")
    assert type(exc) is ssl.SSLError and exc.reason
    got = errors.from_os_error(exc)
    assert type(got) is errors.TLSError
    assert got.code == f"ERR_SSL_{exc.reason}"
    assert got.reason == exc.reason and got.library == exc.library


def test_url_options_are_parsed_once_and_never_shared_out() -> None:
    """The per-URL cache of parsed options (a request per URL, again and again)
    gives each request its own merged options: one request's keywords never reach
    the next, and a bad URL is refused every time, never cached."""
    from greenhttps import _url

    url = "https://example.test:8443/a?b=1"
    first = _url.request_options(url, {"method": "post", "path": "/other"}, protocol="https:")
    again = _url.request_options(url, {}, protocol="https:")
    assert (first["method"], first["path"]) == ("POST", "/other")
    assert (again["method"], again["path"], again["port"]) == ("GET", "/a?b=1", 8443)
    assert again["host"] == "example.test" and again["auth"] is None
    assert first is not again
    # A URL with a query (a token, maybe) is parsed each time, never kept; nor its path.
    assert url not in _url._URL_CACHE and "/a?b=1" not in _url._GOOD_PATHS
    plain = "https://example.test:8443/a"
    assert _url.request_options(plain, {}, protocol="https:")["path"] == "/a"
    assert _url._URL_CACHE[plain] == _url._from_url(plain)
    # A URL with user-info (a password) is parsed each time, never kept.
    secret = "https://user:pa%20ss@example.test:8443/a"
    for _ in range(2):
        assert _url.request_options(secret, {}, protocol="https:")["auth"] == "user:pa ss"
    assert secret not in _url._URL_CACHE
    # Hosts and paths that passed are remembered; a bad one is refused every time.
    assert "example.test" in _url._GOOD_HOSTS and "/a" in _url._GOOD_PATHS
    for _ in range(2):
        with pytest.raises(errors.InvalidArgumentError):
            _url.request_options(url, {"host": "a b", "hostname": None}, protocol="https:")
        with pytest.raises(errors.InvalidURLError):
            _url.request_options(url, {"path": "/a b"}, protocol="https:")
    assert "a b" not in _url._GOOD_HOSTS and "/a b" not in _url._GOOD_PATHS
    for _ in range(2):
        with pytest.raises(errors.InvalidURLError):
            _url.request_options("https://exa mple.test:99999/", {}, protocol="https:")
    assert "https://exa mple.test:99999/" not in _url._URL_CACHE


def test_encoded_field_cache_gives_the_same_bytes_and_stays_bounded() -> None:
    """OutgoingHeaders.pairs() takes recurring fields' bytes from a cache: the same
    wire bytes as encoding them, list values (repeats) never cached, and at most
    _ENCODED_MAX entries however many different values go by."""
    def pairs(**fields: Any) -> list[tuple[bytes, bytes]]:
        out = _headers.OutgoingHeaders()
        for name, value in fields.items():
            out.set(name.replace("_", "-"), value)
        return out.pairs()

    expected = [(b"X-A", b"caf\xe9"), (b"Set-Cookie", b"a=1"), (b"Set-Cookie", b"b=2")]
    assert pairs(X_A="café", Set_Cookie=["a=1", "b=2"]) == expected
    assert pairs(X_A="café", Set_Cookie=["a=1", "b=2"]) == expected  # from the cache now
    for i in range(_headers._ENCODED_MAX + 50):
        assert pairs(X_Id=str(i)) == [(b"X-Id", str(i).encode())]
    assert len(_headers._ENCODED) <= _headers._ENCODED_MAX
    assert all(isinstance(field[1], str) for field in _headers._ENCODED)
    long_value = "v" * 500
    assert pairs(X_Long=long_value) == [(b"X-Long", long_value.encode())]
    assert ("X-Long", long_value) not in _headers._ENCODED
    # Credentials are encoded each time, never kept in the module-wide table.
    secret = [(b"Authorization", b"Basic dXNlcjpwdw=="), (b"Cookie", b"sid=1"), (b"Proxy-Authorization", b"x")]
    for _ in range(2):
        assert pairs(Authorization="Basic dXNlcjpwdw==", Cookie="sid=1", Proxy_Authorization="x") == secret
    assert not any(field[0].lower() in ("authorization", "cookie", "proxy-authorization")
                   for field in _headers._ENCODED)
