"""greenhttps.fetch(): the response object, request bodies and headers, redirects, retries.

Every test talks to a real greenhttps server (TLS with trustme certificates, or plain
``greenhttps.http`` where the test is about http:) on 127.0.0.1.  The redirect rules
are compared with Node 20's own ``fetch()`` (undici) on the same server
(``test_redirect_methods_match_node_fetch``); WHATWG Fetch §4.4 is the rule book.
"""

from __future__ import annotations

import datetime
import gzip
import json
import time
from typing import Any, Callable

import gevent
import gevent.socket
import hypothesis
import pytest
from hypothesis import strategies as st

import greenhttps
import helpers
from greenhttps import errors

pytestmark = pytest.mark.timeout(30)


class Recorder:
    """A handler that records each request it gets (method, url, headers, body)
    and answers with ``route(req, body) -> (status, headers, body)``."""

    def __init__(self, route: Callable[[Any, bytes], tuple[int, dict[str, Any], bytes]]) -> None:
        self.route = route
        self.seen: list[dict[str, Any]] = []

    def __call__(self, req: Any, res: Any) -> None:
        body = req.read()
        self.seen.append({"method": req.method, "url": req.url, "headers": dict(req.headers), "body": body})
        status, headers, out = self.route(req, body)
        res.write_head(status, headers)
        res.end(out)


@pytest.fixture
def origin(serve: Callable[..., int], ca_pem: bytes) -> Callable[..., tuple[str, Recorder]]:
    """``origin(route) -> (base URL, recorder)`` of a TLS server; fetch trusts its CA via ``ca``."""

    def start(route: Callable[[Any, bytes], tuple[int, dict[str, Any], bytes]]) -> tuple[str, Recorder]:
        rec = Recorder(route)
        return f"https://127.0.0.1:{serve(rec)}", rec

    return start


# ------------------------------------------------------------------ the response


def test_response_fields_and_a_body_read_twice(origin: Any, ca_pem: bytes) -> None:
    """status, status_text, ok, url, headers (case-insensitive, lowercase when
    iterated, repeated fields joined), content kept, text() and json() twice."""
    base, rec = origin(lambda req, body: (201, {"Content-Type": "application/json; charset=utf-8",
                                                "X-Many": ["a", "b"], "Set-Cookie": ["s=1", "t=2"]},
                                          b'{"hello": "w\xc3\xb6rld"}'))
    res = greenhttps.fetch(base + "/x?q=1", ca=ca_pem)
    assert (res.status, res.status_text, res.ok, res.redirected) == (201, "Created", True, False)
    assert res.url == base + "/x?q=1"
    assert res.headers["CONTENT-TYPE"] == res.headers["content-type"] == "application/json; charset=utf-8"
    assert "Content-Type" in res.headers and "x-none" not in res.headers
    assert list(res.headers)[:3] == ["content-type", "x-many", "set-cookie"]
    assert all(name == name.lower() for name in res.headers)
    assert res.headers["x-many"] == "a, b" and res.headers.get_all("X-Many") == ["a", "b"]
    assert res.headers.get_set_cookie() == ["s=1", "t=2"]
    assert res.json() == {"hello": "wörld"} and res.json() == {"hello": "wörld"}
    assert res.text() == '{"hello": "wörld"}' and res.text() == res.text()
    assert res.content is res.content
    assert res.timings.total is not None and res.timings.total >= res.timings.headers > 0
    assert res.read() == res.content  # served from the kept bytes
    assert rec.seen[0]["url"] == "/x?q=1"


def test_headers_are_built_when_read_and_apart_from_the_messages(origin: Any, ca_pem: bytes) -> None:
    """Response.headers is made on first use: with no repeated field, a copy of the
    IncomingMessage's (the two rules agree); one Set-Cookie is a str (Fetch), not
    Node's list; writing to one leaves the other alone."""
    base, _ = origin(lambda req, body: (200, {"Content-Type": "text/plain", "X-One": "1"}, b"hi"))
    res = greenhttps.fetch(base, ca=ca_pem)
    assert res._headers is None  # not built yet: nothing asked for it
    assert res.headers == res.raw.headers and res.headers is not res.raw.headers
    assert res.headers["X-ONE"] == "1" and res.headers.get_all("x-one") == ["1"]
    assert ("X-One", "1") in res.headers.raw
    res.headers["x-added"] = "y"
    assert "x-added" not in res.raw.headers
    base, _ = origin(lambda req, body: (200, {"Set-Cookie": "s=1"}, b""))
    res = greenhttps.fetch(base, ca=ca_pem)
    assert res.headers["set-cookie"] == "s=1" and res.raw.headers["set-cookie"] == ["s=1"]
    assert res.headers.get_set_cookie() == ["s=1"]


def test_not_ok_and_status_text(origin: Any, ca_pem: bytes) -> None:
    base, _ = origin(lambda req, body: (404, {}, b"nope"))
    res = greenhttps.fetch(base, ca=ca_pem)
    assert (res.status, res.ok, res.status_text, res.content) == (404, False, "Not Found", b"nope")


def test_streaming_read_and_iteration(origin: Any, ca_pem: bytes) -> None:
    """read(n) and iteration hand out the body in order; content refuses afterwards."""
    payload = bytes(range(256)) * 1000
    base, _ = origin(lambda req, body: (200, {}, payload))
    res = greenhttps.fetch(base, ca=ca_pem)
    first = res.read(10)
    rest = b"".join(res)
    assert first + rest == payload and res.read(5) == b""
    with pytest.raises(errors.Error) as info:
        res.content
    assert info.value.code == "ERR_GREENHTTPS_BODY_USED"
    res2 = greenhttps.fetch(base, ca=ca_pem)
    assert res2.read(0) == b"" and res2.read(300) == payload[:300] and res2.read() == payload[300:]


def test_default_headers_and_user_agent_override(origin: Any, ca_pem: bytes) -> None:
    """User-Agent greenhttps/<version>, Accept */*, Accept-Encoding: what decodes; a
    caller's value (any case) wins."""
    base, rec = origin(lambda req, body: (200, {}, b""))
    greenhttps.fetch(base, ca=ca_pem).content
    greenhttps.fetch(base, ca=ca_pem, headers={"user-agent": "crawler/1", "ACCEPT": "text/html"}).content
    first, second = rec.seen[0]["headers"], rec.seen[1]["headers"]
    assert first["user-agent"] == f"greenhttps/{greenhttps.__version__}"
    assert first["accept"] == "*/*"
    assert first["accept-encoding"] == "gzip, deflate, br, zstd"
    assert second["user-agent"] == "crawler/1" and second["accept"] == "text/html"


def test_request_bodies_json_str_form_and_stream(origin: Any, ca_pem: bytes) -> None:
    base, rec = origin(lambda req, body: (200, {}, body))
    assert greenhttps.fetch(base, method="post", json={"a": [1, "é"]}, ca=ca_pem).json() == {"a": [1, "é"]}
    greenhttps.fetch(base, method="PUT", body="héllo", ca=ca_pem).content
    greenhttps.fetch(base, method="POST", body={"q": "a b", "n": ["1", "2"]}, ca=ca_pem).content
    greenhttps.fetch(base, method="POST", body=iter([b"ab", b"cd"]), ca=ca_pem).content
    greenhttps.fetch(base, method="POST", json={}, headers={"Content-Type": "application/vnd.x+json"}, ca=ca_pem)
    json_req, text_req, form_req, stream_req, own_type = rec.seen
    assert json_req["method"] == "POST" and json_req["headers"]["content-type"] == "application/json"
    assert json.loads(json_req["body"]) == {"a": [1, "é"]}
    assert json_req["headers"]["content-length"] == str(len(json_req["body"]))
    assert text_req["body"] == "héllo".encode() and text_req["headers"]["content-type"] == "text/plain;charset=UTF-8"
    assert form_req["body"] == b"q=a+b&n=1&n=2"
    assert form_req["headers"]["content-type"] == "application/x-www-form-urlencoded;charset=UTF-8"
    assert stream_req["body"] == b"abcd" and stream_req["headers"]["transfer-encoding"] == "chunked"
    assert own_type["headers"]["content-type"] == "application/vnd.x+json"
    with pytest.raises(errors.InvalidArgumentError):
        greenhttps.fetch(base, body=b"x", json=1, ca=ca_pem)


def test_user_info_becomes_basic_authorization(origin: Any, ca_pem: bytes) -> None:
    base, rec = origin(lambda req, body: (200, {}, b""))
    res = greenhttps.fetch(base.replace("https://", "https://us%40r:p%3Ass@") + "/a", ca=ca_pem)
    assert rec.seen[0]["headers"]["authorization"] == "Basic dXNAcjpwOnNz"  # us@r:p:ss
    assert "@" not in res.url


def test_non_ascii_path_is_percent_encoded(origin: Any, ca_pem: bytes) -> None:
    """The WHATWG URL parser's encoding: what request() refuses as unescaped, fetch sends encoded."""
    base, rec = origin(lambda req, body: (200, {}, b""))
    res = greenhttps.fetch(base + "/caf\u00e9 x?q=\u00e9#frag", ca=ca_pem)
    assert rec.seen[0]["url"] == "/caf%C3%A9%20x?q=%C3%A9"
    assert res.url == base + "/caf%C3%A9%20x?q=%C3%A9"


@hypothesis.settings(max_examples=400, deadline=None)
@hypothesis.given(
    path=st.text(alphabet=st.characters(codec="utf-8", exclude_characters="#?\t\n\r"), max_size=30),
    query=st.one_of(st.none(), st.text(alphabet=st.characters(codec="utf-8", exclude_characters="#\t\n\r"),
                                       max_size=30)),
    port=st.sampled_from(["", ":443", ":8443"]),
)
def test_url_normalisation_matches_quote_and_urlunsplit(path: str, query: str | None, port: str) -> None:
    """fetch() skips quote() for a path or query it would leave as is and builds the
    URL itself: the result is still exactly quote() + urlunsplit() on every input."""
    from urllib.parse import quote, urlsplit, urlunsplit

    from greenhttps._fetch import _normalise_url

    url = f"https://Example.COM{port}/{path}" + ("" if query is None else f"?{query}")
    parts = urlsplit(url.strip())  # fetch() strips the URL first, as the URL parser does
    want = urlunsplit(("https", "example.com" + ("" if port in ("", ":443") else port),
                       quote(parts.path or "/", safe="/%:@!$&'()*+,;=-._~"),
                       quote(parts.query, safe="/?%:@!$&'()*+,;=-._~"), ""))
    assert _normalise_url(url) == (want, None)


@hypothesis.settings(max_examples=400, deadline=None)
@hypothesis.given(
    scheme=st.sampled_from(["http", "https", "HTTPS"]),
    host=st.sampled_from(["example.com", "Example.com", "127.0.0.1", "[::1]", "a-b.c", "xn--bcher-kva.example",
                          "b\u00fccher.example", "u:p@example.com", "@example.com"]),
    port=st.sampled_from(["", ":80", ":443", ":0443", ":8443", ":65535", ":65536", ":99999", ":x"]),
    path=st.text(alphabet="abc/%:@!$&'()*+,;=-._~ \u00e9", max_size=12),
    query=st.one_of(st.none(), st.text(alphabet="ab=&/?%:\u00e9", max_size=8)),
    fragment=st.one_of(st.none(), st.just("frag")),
)
def test_the_plain_url_shortcut_agrees_with_urlsplit(scheme: str, host: str, port: str, path: str,
                                                      query: str | None, fragment: str | None) -> None:
    """fetch() splits the usual URL with one regex match; on every URL the result (or
    the error) is what the urlsplit path gives, and so is what request() would take
    from the normalised URL string."""
    from greenhttps import _url
    from greenhttps._fetch import _parse_url, _parse_url_slowly

    url = f"{scheme}://{host}{port}{'/' if path else ''}{path}"
    url += ("" if query is None else f"?{query}") + ("" if fragment is None else f"#{fragment}")
    try:
        want = _parse_url_slowly(url)
    except errors.Error as exc:
        with pytest.raises(type(exc)):
            _parse_url(url)
        return
    assert _parse_url(url) == want
    normal, _, target = want
    assert _url._from_url(normal) == target


def test_bad_arguments_fail_before_sending() -> None:
    for kwargs, exc in [
        ({"redirect": "sometimes"}, errors.InvalidArgumentError),
        ({"max_redirects": -1}, errors.InvalidArgumentError),
        ({"timeout": -5}, errors.InvalidArgumentError),
        ({"retry": "3"}, errors.InvalidArgumentError),
        ({"path": "/x"}, TypeError),
        ({"bogus_option": 1}, TypeError),
        ({"body": 12}, errors.InvalidArgumentError),
    ]:
        with pytest.raises(exc):
            greenhttps.fetch("https://127.0.0.1:1/", **kwargs)
    with pytest.raises(errors.InvalidURLError):
        greenhttps.fetch("ftp://example.org/")
    with pytest.raises(errors.InvalidURLError):
        greenhttps.fetch("https:///nohost")


# ------------------------------------------------------------------ timeouts


def test_timeout_and_deadline_in_ms_or_timedelta(serve: Callable[..., int], ca_pem: bytes) -> None:
    """``timeout`` (idle) and ``deadline`` (everything, body included) take ms or a timedelta."""

    def slow_head(req: Any, res: Any) -> None:
        gevent.sleep(2)
        res.end("late")

    def slow_body(req: Any, res: Any) -> None:
        res.write_head(200, {"Content-Length": "10"})
        for _ in range(10):
            res.write(b"x")
            gevent.sleep(0.15)
        res.end()

    head_url = f"https://127.0.0.1:{serve(slow_head)}/"
    body_url = f"https://127.0.0.1:{serve(slow_body)}/"
    for timeout in (200, datetime.timedelta(milliseconds=200)):
        started = time.monotonic()
        with pytest.raises(errors.TimeoutError):
            greenhttps.fetch(head_url, timeout=timeout, ca=ca_pem)
        assert time.monotonic() - started < 1.5
    started = time.monotonic()
    with pytest.raises(errors.TimeoutError):
        greenhttps.fetch(head_url, deadline=datetime.timedelta(milliseconds=300), ca=ca_pem)
    assert time.monotonic() - started < 1.5
    # The head comes at once; the deadline still bounds the body, which trickles.
    res = greenhttps.fetch(body_url, deadline=500, ca=ca_pem)
    assert res.status == 200
    with pytest.raises(errors.TimeoutError):
        res.content
    # Idle timeout is per read: a body that keeps moving is not cut.
    assert greenhttps.fetch(body_url, timeout=1000, ca=ca_pem).content == b"x" * 10


def test_close_gives_up_an_unread_body_without_leaks(serve: Callable[..., int], ca_pem: bytes) -> None:
    port = serve(lambda req, res: res.end(b"y" * 500_000))
    url = f"https://127.0.0.1:{port}/"
    greenhttps.fetch(url, ca=ca_pem).content  # warm up the pool and the resolver
    helpers.settle()
    fds, greenlets = helpers.open_fds(), helpers.live_greenlets()
    for _ in range(5):
        with greenhttps.fetch(url, ca=ca_pem) as res:
            assert res.read(10) == b"yyyyyyyyyy"
    helpers.settle(0.2)
    assert helpers.open_fds() <= fds
    assert helpers.live_greenlets() <= greenlets
    assert greenhttps.fetch(url, ca=ca_pem).content == b"y" * 500_000


# ------------------------------------------------------------------ redirects


def _redirector(final: bytes = b"done") -> Callable[[Any, bytes], tuple[int, dict[str, Any], bytes]]:
    """/<status>/<n> redirects with <status> n times (to /<status>/<n-1>), then /end answers."""

    def route(req: Any, body: bytes) -> tuple[int, dict[str, Any], bytes]:
        parts = req.url.strip("/").split("/")
        if parts[0] == "end":
            return 200, {}, final
        status, left = int(parts[0]), int(parts[1])
        target = "/end" if left <= 1 else f"/{status}/{left - 1}"
        return status, {"Location": target}, b"moved"

    return route


@pytest.mark.parametrize("status, method, after", [
    (301, "POST", "GET"), (302, "POST", "GET"), (303, "POST", "GET"), (303, "PUT", "GET"),
    (301, "PUT", "PUT"), (302, "DELETE", "DELETE"), (307, "POST", "POST"), (308, "PUT", "PUT"),
    (303, "HEAD", "HEAD"),
])
def test_redirect_method_and_body_rules(origin: Any, ca_pem: bytes, status: int, method: str, after: str) -> None:
    """Fetch §4.4 step 12: 303 (but GET/HEAD), and 301/302 for POST, become a GET
    without body or body headers; anything else keeps method and body."""
    base, rec = origin(_redirector())
    res = greenhttps.fetch(f"{base}/{status}/1", method=method, body=None if method == "HEAD" else b"payload",
                           headers={"Content-Type": "text/x-mine", "Content-Language": "fr"}, ca=ca_pem)
    assert res.status == 200 and res.redirected and res.url == base + "/end"
    assert res.timings.redirects == 1
    second = rec.seen[1]
    assert second["method"] == after
    if after == method:  # unchanged, headers and all (HEAD had no body to keep)
        assert second["body"] == (b"" if method == "HEAD" else b"payload")
        assert second["headers"]["content-type"] == "text/x-mine"
    else:
        assert second["body"] == b"" and "content-type" not in second["headers"]
        assert "content-language" not in second["headers"] and "content-length" not in second["headers"]


@pytest.mark.needs_node
def test_redirect_methods_match_node_fetch(origin: Any, ca_pem: bytes, ca_file: str) -> None:
    """The same redirects through Node 20's fetch() (undici): the methods and bodies
    the server sees after each redirect are the same.  Mirrors undici's
    test/fetch/redirect.js and WPT fetch/api/redirect/redirect-method.any.js."""
    base, rec = origin(_redirector())
    cases = [(301, "POST"), (302, "POST"), (303, "PUT"), (307, "POST"), (308, "PUT"), (302, "PUT")]
    script = "const [base, ...cases] = process.argv.slice(1);\n" \
        "(async () => { for (const c of cases) { const [s, m] = c.split(':');\n" \
        "  const r = await fetch(`${base}/${s}/1`, {method: m, body: 'payload'}); await r.text(); } })()\n" \
        ".catch(e => { console.error(e); process.exit(1); });\n"
    done = helpers.run_command(["node", "-e", script, base, *(f"{s}:{m}" for s, m in cases)],
                               env={"NODE_EXTRA_CA_CERTS": ca_file})
    assert done.returncode == 0, done.stderr
    node_seen = [(r["method"], r["body"]) for r in rec.seen]
    rec.seen.clear()
    for status, method in cases:
        greenhttps.fetch(f"{base}/{status}/1", method=method, body="payload", ca=ca_pem).content
    ours = [(r["method"], r["body"]) for r in rec.seen]
    assert ours == node_seen
    assert ours[1] == ("GET", b"")  # 301 POST -> GET
    assert ours[7] == ("POST", b"payload")  # 307 keeps it


def test_redirect_modes_and_limits(origin: Any, ca_pem: bytes) -> None:
    base, rec = origin(_redirector())
    manual = greenhttps.fetch(f"{base}/302/1", redirect="manual", ca=ca_pem)
    assert (manual.status, manual.headers["location"], manual.redirected) == (302, "/end", False)
    assert manual.content == b"moved"
    with pytest.raises(errors.RedirectError) as info:
        greenhttps.fetch(f"{base}/302/1", redirect="error", ca=ca_pem)
    assert info.value.code == "ERR_GREENHTTPS_REDIRECT" and info.value.location == "/end"
    assert greenhttps.fetch(f"{base}/301/20", ca=ca_pem).content == b"done"  # 20 hops: Fetch's limit
    rec.seen.clear()
    with pytest.raises(errors.RedirectError) as info:
        greenhttps.fetch(f"{base}/301/21", ca=ca_pem)
    assert info.value.code == "ERR_TOO_MANY_REDIRECTS" and len(rec.seen) == 21
    with pytest.raises(errors.RedirectError) as info:
        greenhttps.fetch(f"{base}/307/3", max_redirects=2, ca=ca_pem)
    assert info.value.code == "ERR_TOO_MANY_REDIRECTS"


def test_redirect_loop_fails_clearly(origin: Any, ca_pem: bytes) -> None:
    base, rec = origin(lambda req, body: (302, {"Location": req.url}, b""))
    with pytest.raises(errors.RedirectError) as info:
        greenhttps.fetch(base + "/loop", ca=ca_pem)
    assert info.value.code == "ERR_TOO_MANY_REDIRECTS" and "more than 20 redirects" in str(info.value)
    assert len(rec.seen) == 21


def test_credentials_dropped_across_origins_only(origin: Any, make_server: Any, ca_pem: bytes) -> None:
    """Authorization, Cookie and Proxy-Authorization go to the same origin after a
    redirect, never to another one (another port is another origin)."""
    other_base, other = origin(lambda req, body: (200, {}, b"other"))
    base, rec = origin(lambda req, body: (
        (302, {"Location": "/same"}, b"") if req.url == "/start" else
        (302, {"Location": other_base + "/x"}, b"") if req.url == "/same" else (200, {}, b"")))
    secrets = {"Authorization": "Bearer t", "Cookie": "a=b", "Proxy-Authorization": "Basic x", "X-Keep": "1",
               "Host": base.split("//")[1]}
    res = greenhttps.fetch(base + "/start", headers=secrets, ca=ca_pem)
    assert res.content == b"other" and res.url == other_base + "/x"
    same = rec.seen[1]["headers"]
    assert same["authorization"] == "Bearer t" and same["cookie"] == "a=b"
    moved = other.seen[0]["headers"]
    assert "authorization" not in moved and "cookie" not in moved and "proxy-authorization" not in moved
    assert moved["x-keep"] == "1"
    assert moved["host"] == other_base.split("//")[1]  # the caller's Host named the first origin


@pytest.mark.needs_node
def test_cross_origin_headers_match_node_fetch(make_server: Any) -> None:
    """What reaches each origin after same- and cross-origin redirects, through
    Node 20's fetch and ours, from the same servers: the same fields (mirrors undici's
    test/fetch/redirect-cross-origin-header.js)."""
    seen: list[dict[str, Any]] = []
    keep = ("authorization", "cookie", "proxy-authorization", "x-keep")
    other = make_server(lambda req, res: (seen.append(dict(req.headers)), res.end("o")), tls=False)
    other_port = other.address()["port"]

    def first(req: Any, res: Any) -> None:
        seen.append(dict(req.headers))
        res.write_head(302, {"Location": "/same" if req.url == "/start" else f"http://localhost:{other_port}/x"})
        res.end()

    start = f"http://127.0.0.1:{make_server(first, tls=False).address()['port']}/start"
    headers = {"Authorization": "Bearer t", "Cookie": "a=b", "Proxy-Authorization": "Basic x", "X-Keep": "1"}
    script = ("fetch(process.argv[1], {headers: JSON.parse(process.argv[2])}).then(r => r.text())"
              ".then(t => console.log(t), e => { console.error(e); process.exit(1); })")
    done = helpers.run_command(["node", "-e", script, start, json.dumps(headers)])
    assert done.returncode == 0, done.stderr
    node_seen = [{k: v for k, v in h.items() if k in keep} for h in seen]
    seen.clear()
    assert greenhttps.fetch(start, headers=headers).text() == "o"
    ours = [{k: v for k, v in h.items() if k in keep} for h in seen]
    assert ours == node_seen
    assert len(ours) == 3 and ours[1] == {k.lower(): v for k, v in headers.items()} and ours[2] == {"x-keep": "1"}


def test_https_to_http_redirect_is_refused_unless_allowed(origin: Any, make_server: Any, ca_pem: bytes) -> None:
    plain = make_server(lambda req, res: res.end("plain"), tls=False)
    plain_url = f"http://127.0.0.1:{plain.address()['port']}/p"
    base, _ = origin(lambda req, body: (301, {"Location": plain_url}, b""))
    with pytest.raises(errors.RedirectError) as info:
        greenhttps.fetch(base, ca=ca_pem)
    assert info.value.code == "ERR_UNSAFE_REDIRECT" and plain_url in str(info.value)
    res = greenhttps.fetch(base, ca=ca_pem, allow_downgrade=True)
    assert res.content == b"plain" and res.url == plain_url


def test_http_to_https_redirect_and_bad_location(origin: Any, make_server: Any, ca_pem: bytes) -> None:
    base, _ = origin(lambda req, body: (200, {}, b"secure"))
    plain = make_server(lambda req, res: (res.write_head(301, {"Location": base + "/s"}), res.end()), tls=False)
    res = greenhttps.fetch(f"http://127.0.0.1:{plain.address()['port']}/", ca=ca_pem)
    assert res.content == b"secure" and res.url == base + "/s"
    bad, _ = origin(lambda req, body: (302, {"Location": "ftp://example.org/x"}, b""))
    with pytest.raises(errors.RedirectError) as info:
        greenhttps.fetch(bad, ca=ca_pem)
    assert info.value.code == "ERR_INVALID_REDIRECT"


def test_streamed_body_cannot_follow_307(origin: Any, ca_pem: bytes) -> None:
    base, _ = origin(_redirector())
    with pytest.raises(errors.RedirectError, match="streamed body"):
        greenhttps.fetch(f"{base}/307/1", method="POST", body=iter([b"a"]), ca=ca_pem)


def test_redirects_reuse_the_pooled_connection(origin: Any, ca_pem: bytes) -> None:
    """A redirect's short body is read, so the next hop reuses the connection."""
    base, _ = origin(_redirector())
    res = greenhttps.fetch(f"{base}/302/3", ca=ca_pem)
    assert res.content == b"done" and res.timings.reused
    assert greenhttps.global_agent.total_socket_count == 1


# ------------------------------------------------------------------ retries


def test_retry_503_with_retry_after_then_success(origin: Any, ca_pem: bytes) -> None:
    """429/503 are retried, waiting the Retry-After the server asks for."""
    answers = iter([(503, {"Retry-After": "0"}, b"busy"), (429, {"Retry-After": "1"}, b"slow down"),
                    (200, {}, b"ok")])
    base, rec = origin(lambda req, body: next(answers))
    started = time.monotonic()
    res = greenhttps.fetch(base, retry=3, ca=ca_pem)
    assert res.content == b"ok" and len(rec.seen) == 3 and res.timings.retries == 2
    assert 0.9 < time.monotonic() - started < 5


def test_retry_stops_at_total_and_returns_the_last_answer(origin: Any, ca_pem: bytes) -> None:
    base, rec = origin(lambda req, body: (503, {}, b"busy"))
    res = greenhttps.fetch(base, retry=greenhttps.Retry(total=2, backoff=10), ca=ca_pem)
    assert res.status == 503 and res.content == b"busy" and len(rec.seen) == 3


def test_retry_after_too_long_is_not_waited_for(origin: Any, ca_pem: bytes) -> None:
    base, rec = origin(lambda req, body: (503, {"Retry-After": "3600"}, b"later"))
    started = time.monotonic()
    res = greenhttps.fetch(base, retry=5, ca=ca_pem)
    assert res.status == 503 and len(rec.seen) == 1 and time.monotonic() - started < 2
    date = "Wed, 21 Oct 2015 07:28:00 GMT"  # in the past: retry at once
    assert greenhttps.Retry().retry_after(date) == 0.0
    assert greenhttps.Retry(max_retry_after=datetime.timedelta(seconds=2)).retry_after("3") is None


def test_post_is_not_retried_unless_asked(origin: Any, ca_pem: bytes) -> None:
    base, rec = origin(lambda req, body: (503, {"Retry-After": "0"}, b""))
    assert greenhttps.fetch(base, method="POST", body=b"x", retry=3, ca=ca_pem).status == 503
    assert len(rec.seen) == 1
    policy = greenhttps.Retry(total=2, methods=frozenset({"POST"}))
    assert greenhttps.fetch(base, method="POST", body=b"x", retry=policy, ca=ca_pem).status == 503
    assert len(rec.seen) == 4 and all(r["body"] == b"x" for r in rec.seen)


def test_retry_connection_refused_then_a_server_appears(make_server: Any, ca_pem: bytes) -> None:
    """ECONNREFUSED is retried with backoff: a server that starts listening during
    the backoff answers the retry."""
    port = helpers.free_port()
    count = []
    srv = make_server(lambda req, res: (count.append(1), res.end("up")), listen=False)
    gevent.spawn_later(0.3, srv.listen, port, "127.0.0.1")
    res = greenhttps.fetch(f"https://127.0.0.1:{port}/", retry=greenhttps.Retry(total=6, backoff=100),
                           ca=ca_pem)
    assert res.content == b"up" and res.timings.retries >= 1 and len(count) == 1
    with pytest.raises(errors.ConnectionRefusedError):
        greenhttps.fetch(f"https://127.0.0.1:{helpers.free_port()}/", ca=ca_pem)


def test_retry_reset_before_any_byte_counts_requests(script_server: Any, ca_pem: bytes) -> None:
    """A server that reads the request and hangs up (no response byte) is asked
    again; one that had sent part of its answer is not."""
    requests: list[bytes] = []

    def flaky(sock: Any) -> None:
        head = helpers.read_request_head(sock)
        requests.append(head)
        if len(requests) < 3:
            return  # closed before any response byte
        sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")

    port = script_server(flaky, tls=True)
    res = greenhttps.fetch(f"https://localhost:{port}/", retry=greenhttps.Retry(total=3, backoff=10), ca=ca_pem)
    assert res.content == b"ok" and len(requests) == 3 and res.timings.retries == 2

    cut: list[bytes] = []

    def cut_short(sock: Any) -> None:
        cut.append(helpers.read_request_head(sock))
        sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial")

    port = script_server(cut_short, tls=True)
    res = greenhttps.fetch(f"https://localhost:{port}/", retry=3, ca=ca_pem)
    with pytest.raises(errors.ConnectionResetError):
        res.content
    assert len(cut) == 1  # the body had started: never sent again


def test_retry_respects_the_deadline(origin: Any, ca_pem: bytes) -> None:
    base, rec = origin(lambda req, body: (503, {"Retry-After": "2"}, b""))
    started = time.monotonic()
    res = greenhttps.fetch(base, retry=5, deadline=1000, ca=ca_pem)
    assert res.status == 503 and len(rec.seen) == 1 and time.monotonic() - started < 1


def test_deadline_covers_connecting(ca_pem: bytes) -> None:
    """``deadline`` alone (no ``connect_timeout``) bounds the dial too: an origin that
    accepts and never answers the TLS hello ends at the deadline, fetch's error
    saying where it ran out, no fd left (before, fetch waited as long as the peer)."""
    silent = gevent.socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    held: list[Any] = []
    acceptor = gevent.spawn(lambda: [held.append(silent.accept()[0]) for _ in range(8)])
    fds = helpers.open_fds()
    try:
        start = time.monotonic()
        with pytest.raises(errors.TimeoutError) as info, gevent.Timeout(8):
            greenhttps.fetch(f"https://127.0.0.1:{silent.getsockname()[1]}/", ca=ca_pem, deadline=600, retry=2)
        assert 0.5 < time.monotonic() - start < 1.5
        assert str(info.value).startswith("fetch deadline of 600 ms exceeded: TLS handshake timed out after ")
        assert info.value.code == "ETIMEDOUT"
        helpers.settle()
        assert helpers.open_fds() <= fds + len(held)  # (the accepted ends the test holds)
    finally:
        acceptor.kill()
        for sock in held:
            sock.close()
        silent.close()


def test_deadline_covers_waiting_for_the_pool(make_server: Any) -> None:
    """A request waiting for a pool slot (``max_sockets=1``, the one socket busy for
    2 s) ends at its ``deadline`` too, withdrawn from ``agent.requests``: request()'s
    and fetch()'s deadline are the whole exchange, the wait included."""
    def slow(req: Any, res: Any) -> None:
        gevent.sleep(2)
        res.end("late")

    url = f"http://127.0.0.1:{make_server(slow, tls=False).address()['port']}/"
    agent = greenhttps.http.Agent(keep_alive=True, max_sockets=1)
    holder = gevent.spawn(greenhttps.http.get, url, agent=agent)
    try:
        gevent.sleep(0.2)
        assert agent.total_socket_count == 1
        start = time.monotonic()
        with pytest.raises(errors.TimeoutError, match="request deadline of 300 ms exceeded waiting for a connection"):
            greenhttps.http.get(url, agent=agent, deadline=300)
        assert 0.25 < time.monotonic() - start < 1.5 and agent.requests == {}
        start = time.monotonic()
        with pytest.raises(errors.TimeoutError, match="fetch deadline of 300 ms exceeded"):
            greenhttps.fetch(url, agent=agent, deadline=300)
        assert 0.25 < time.monotonic() - start < 1.5 and agent.requests == {}
        assert holder.get(timeout=5).read() == b"late"  # the holder was not disturbed
    finally:
        holder.kill()
        agent.destroy()


def test_backoff_grows_with_jitter() -> None:
    policy = greenhttps.Retry(backoff=100, max_backoff=datetime.timedelta(milliseconds=500))
    delays = [[policy.delay(n) for _ in range(50)] for n in range(5)]
    assert all(0.05 <= d <= 0.1 for d in delays[0]) and len(set(delays[0])) > 1
    assert all(0.2 <= d <= 0.4 for d in delays[2])
    assert all(0.25 <= d <= 0.5 for d in delays[4])  # capped


# ------------------------------------------------------------------ agents


def test_agent_is_used_for_its_protocol(origin: Any, ca_pem: bytes) -> None:
    base, _ = origin(lambda req, body: (200, {}, b"a"))
    agent = greenhttps.Agent(keep_alive=True, max_sockets=1)
    try:
        for _ in range(3):
            assert greenhttps.fetch(base, agent=agent, ca=ca_pem).content == b"a"
        assert agent.total_socket_count == 1 and greenhttps.global_agent.total_socket_count == 0
    finally:
        agent.destroy()


def test_version_constant_matches_the_package() -> None:
    from greenhttps import _fetch

    assert _fetch.USER_AGENT == f"greenhttps/{greenhttps.__version__}"


def test_gzip_json_the_issue_example(origin: Any, ca_pem: bytes) -> None:
    """The issue's first complaint: a gzip JSON body now decodes, ``headers`` takes any case."""
    base, _ = origin(lambda req, body: (200, {"Content-Encoding": "gzip", "Content-Type": "application/json"},
                                        gzip.compress(b'{"ok": true}')))
    res = greenhttps.fetch(base, ca=ca_pem)
    assert res.headers["Content-Type"] == "application/json"
    assert res.json() == {"ok": True} and res.json() == {"ok": True}
