"""Every option greenhttps accepts is read somewhere (issue 16, item 5).

An option that is accepted and then ignored is worse than one that is refused: the
user believes it works.  The accepted names are the tables in ``_options.py``:
``SERVER_OPTIONS`` (TLS server keys included), ``REQUEST_OPTIONS`` (TLS client keys
included) and ``AGENT_OPTIONS`` (the agent's own, plus request options as defaults).

The check is dynamic: a TLS server and a client request go over loopback through the
real entry points (``Server(...)``, ``greenhttps.request(...)``, ``Agent(...)``) while
every read of an option is recorded -- on the server and agent as attribute reads
(``server.no_delay``), on request options and TLS options as reads of the options
dict (``opts.get("lookup")``), and in ``_tls`` on the dict a context is built from.
A read counts only when package code does it and the code object doing it names the
option (``"ca"`` as a constant or ``.no_delay`` as a name): a loop that copies a whole
list of names along (``for key in CLIENT_TLS_KEYS``) passes options on, it does not use
them.  Only the agent's ``proxy`` and ``proxy_ca`` are left to the static list (see ``STATIC_ONLY``).

Options accepted and ignored today are listed in :data:`KNOWN_UNREAD` with the reason;
an entry fails the test once its option is read, so the list only shrinks.
"""

from __future__ import annotations

import sys
import types
from typing import Any, Iterator

import pytest
from gevent import socket as gsocket

import greenhttps
from greenhttps import _agent, _options, _tls, _url

pytestmark = pytest.mark.timeout(30)

PACKAGE_DIR = greenhttps.__file__.rsplit("/", 1)[0] + "/"

#: (table, option) -> why it is accepted and not read today.
KNOWN_UNREAD: dict[tuple[str, str], str] = {
}

#: Options the dynamic run cannot reach (each is exercised elsewhere, named here);
#: each entry says why and where.
STATIC_ONLY: dict[tuple[str, str], str] = {
    ("agent", "proxy"): "Agent(proxy=...) needs a running proxy, which this run has none of: _dial "
    "reads opts['proxy'] to tunnel; tests/test_fetch_proxy.py runs it through pproxy",
    ("request", "proxy_ca"): "read only to reach an https:// proxy, which this run has none of: _dial's "
    "_proxy_handshake; tests/test_fetch_proxy.py runs it through pproxy and HAProxy",
}

_TLS_SERVER = frozenset(_options.SERVER_TLS_KEYS)
_TLS_CLIENT = frozenset(_options.CLIENT_TLS_KEYS)
_AGENT_OWN = frozenset(_options.AGENT_OPTIONS) - frozenset(_options.REQUEST_OPTIONS) | {"timeout"}


def accepted() -> set[tuple[str, str]]:
    """(table, option) for every option name the package accepts."""
    names = {("server", name) for name in _options.SERVER_OPTIONS}
    names |= {("request", name) for name in _options.REQUEST_OPTIONS}
    names |= {("agent", name) for name in _AGENT_OWN}
    return names


# ------------------------------------------------------------------ recording


def _names(code: types.CodeType, name: str) -> bool:
    """Does ``code`` name ``name`` (an attribute/global name or a string constant)?"""
    if name in code.co_names:
        return True
    stack: list[Any] = list(code.co_consts)
    while stack:
        const = stack.pop()
        if const == name:
            return True
        if isinstance(const, (tuple, frozenset)):
            stack.extend(const)
    return False


class Recording:
    def __init__(self) -> None:
        self.reads: set[tuple[str, str]] = set()

    def note(self, table: str, name: str, depth: int) -> None:
        frame = sys._getframe(depth + 1)
        if frame.f_code.co_filename.startswith(PACKAGE_DIR) and _names(frame.f_code, name):
            self.reads.add((table, name))


def recording_dict(rec: Recording, table: str, names: frozenset[str] | set[str]) -> type[dict]:
    class RecordingDict(dict):  # type: ignore[type-arg]
        """A dict that notes which option names package code looks up."""

        def _note(self, key: Any) -> None:
            if key in names:
                rec.note(table, key, 2)

        def __getitem__(self, key: Any) -> Any:
            self._note(key)
            return dict.__getitem__(self, key)

        def get(self, key: Any, default: Any = None) -> Any:
            self._note(key)
            return dict.get(self, key, default)

        def __contains__(self, key: Any) -> bool:
            self._note(key)
            return dict.__contains__(self, key)

        def pop(self, key: Any, *default: Any) -> Any:
            self._note(key)
            return dict.pop(self, key, *default)

        def setdefault(self, key: Any, default: Any = None) -> Any:
            self._note(key)
            return dict.setdefault(self, key, default)

    return RecordingDict


def recording_class(base: type, rec: Recording, table: str, names: frozenset[str] | set[str]) -> type:
    """A subclass of ``base`` whose instances note reads of the attributes ``names``."""

    def __getattribute__(self: Any, attr: str) -> Any:
        if attr in names:
            rec.note(table, attr, 1)
        return base.__getattribute__(self, attr)

    return type(base.__name__, (base,), {"__getattribute__": __getattribute__, "__module__": base.__module__})


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch, ca_pem: bytes, tls_options: dict[str, bytes],
          client_cert: dict[str, bytes]) -> Iterator[set[tuple[str, str]]]:
    """Run a server and two requests with every read recorded; yield what was read."""
    rec = Recording()
    request_dict = recording_dict(rec, "request", set(_options.REQUEST_OPTIONS))
    real_merge = _options.merge_options

    def merge(table: Any, *sources: Any, **kwargs: Any) -> dict[str, Any]:
        merged = real_merge(table, *sources, **kwargs)
        return request_dict(merged) if table is _options.REQUEST_OPTIONS else merged

    monkeypatch.setattr(_url, "merge_options", merge)
    monkeypatch.setattr(_agent, "merge_options", merge)

    # The TLS options as _tls builds a context from them (server and client tables;
    # the client build bypasses the context cache, or a cached context would hide it).
    server_tls = recording_dict(rec, "server", _TLS_SERVER)
    client_tls = recording_dict(rec, "request", _TLS_CLIENT)
    real_options = _tls._options

    def tls_options_(tls: Any, allowed: frozenset[str], role: str) -> dict[str, Any]:
        return (server_tls if role == "server" else client_tls)(real_options(tls, allowed, role))

    monkeypatch.setattr(_tls, "_options", tls_options_)
    monkeypatch.setattr(_tls, "_client_context", lambda key: _tls._build_client_context(client_tls(key)))

    server_class = recording_class(greenhttps.Server, rec, "server", set(_options.SERVER_OPTIONS) - _TLS_SERVER)
    agent_class = recording_class(greenhttps.Agent, rec, "agent", set(_AGENT_OWN))

    def handler(req: Any, res: Any) -> None:
        body = req.read()
        res.write_head(200, {"content-type": "text/plain"})
        res.end(b"got " + body)

    # request_cert without reject_unauthorized: a client certificate is asked for and
    # checked, as Node does (the client below sends one).
    server = server_class({**tls_options, "request_cert": True, "ca": ca_pem, "reject_unauthorized": False,
                           "keep_alive": True, "keep_alive_initial_delay": 30000}, handler)
    server.listen(0, "127.0.0.1")
    port = server.address()["port"]
    agent = agent_class(keep_alive=True, max_sockets=4, max_free_sockets=4, pace=1)

    def lookup(host: str, port_: int, family: int, kind: int) -> Any:
        return gsocket.getaddrinfo(host, port_, family, kind)

    try:
        for path in ("/one", "/two"):  # the second one reuses the pooled connection
            req = greenhttps.request({
                "hostname": "localhost", "port": port, "method": "POST", "path": path,
                "headers": {"x-test": "1"}, "auth": "user:pw", "agent": agent, "timeout": 5000,
                "servername": "localhost", "ca": ca_pem, "check_server_identity": lambda host, cert: None,
                "connect_timeout": 5000, "deadline": 10000, "family": 4, "lookup": lookup,
                "local_address": "127.0.0.1", "min_version": "TLSv1.2", **client_cert,
            })
            req.end(b"hi")
            res = req.getresponse()
            assert res.status_code == 200
            assert res.read() == b"got hi"
        yield rec.reads
    finally:
        agent.destroy()
        server.close()
        server.close_all_connections()


# ---------------------------------------------------------------------- tests


def test_every_accepted_option_is_read(reads: set[tuple[str, str]]) -> None:
    unread = accepted() - reads - set(KNOWN_UNREAD) - set(STATIC_ONLY)
    assert not unread, f"accepted but never read (read it, or refuse it): {sorted(unread)}"


def test_known_unread_options_are_still_unread(reads: set[tuple[str, str]]) -> None:
    now_read = sorted(set(KNOWN_UNREAD) & reads)
    assert not now_read, f"read now: remove from KNOWN_UNREAD: {now_read}"
    assert set(KNOWN_UNREAD) <= accepted(), "KNOWN_UNREAD names an option that is not accepted"


def test_the_recorder_sees_a_read() -> None:
    """The instruments work: a read by package code that names the option counts; a
    read by code that does not name it (a copying loop), or by a test, does not."""
    rec = Recording()
    opts = recording_dict(rec, "request", {"ca", "ciphers"})({"ca": b"x", "ciphers": None})
    _options.given(opts, ["ca", "ciphers"])  # package code, names passed in: no read
    assert opts.get("ca") == b"x"  # a test's own read: none either
    assert rec.reads == set()
    code = compile('def f(o):\n    return o.get("ca")\n', PACKAGE_DIR + "fake.py", "exec")
    namespace: dict[str, Any] = {}
    exec(code, namespace)  # noqa: S102  (a stand-in for package code)
    namespace["f"](opts)
    assert rec.reads == {("request", "ca")}


def test_one_list_of_tls_keys() -> None:
    """``_options`` holds the TLS option names; ``_tls`` uses the same objects."""
    assert _tls.CLIENT_TLS_KEYS is _options.CLIENT_TLS_KEYS
    assert _tls.SERVER_TLS_KEYS is _options.SERVER_TLS_KEYS
    assert _TLS_SERVER <= set(_options.SERVER_OPTIONS)
    assert _TLS_CLIENT <= set(_options.REQUEST_OPTIONS)


def test_durations_in_snake_case_options_are_converted_or_refused() -> None:
    """merge_options' shortcut for options all in snake_case still converts a
    timedelta duration to ms, keeps a number as given, refuses a bool or a string
    (TypeError naming it), and with several bad durations names the first given."""
    import datetime

    from greenhttps._options import REQUEST_OPTIONS, merge_options

    merged = merge_options(REQUEST_OPTIONS, {"method": "GET", "timeout": datetime.timedelta(seconds=1.5)},
                           what="request")
    assert merged["timeout"] == 1500.0 and merged["method"] == "GET"
    assert merge_options(REQUEST_OPTIONS, {"timeout": 7}, what="request")["timeout"] == 7
    assert merge_options(REQUEST_OPTIONS, {"timeout": 7.5, "deadline": None}, what="request")["deadline"] is None
    for bad in (True, "10s"):
        with pytest.raises(TypeError, match="timeout must be"):
            merge_options(REQUEST_OPTIONS, {"method": "GET", "timeout": bad}, what="request")
    with pytest.raises(TypeError, match="deadline must be"):
        merge_options(REQUEST_OPTIONS, {"deadline": "1s", "timeout": "2s"}, what="request")
    with pytest.raises(TypeError, match="timeout must be"):
        merge_options(REQUEST_OPTIONS, {"timeout": "2s", "deadline": "1s"}, what="request")
