"""The public surface: what ``greenhttps`` and ``greenhttps.http`` export, and how.

The namespace rule: a module's public names are the names in its namespace that do
not start with ``_``, except ``from __future__`` flags (compiler directives) and
modules from outside the package (``import ssl`` in errors.py is not an export).
``__all__`` must list exactly those, so adding a public name without exporting it,
or leaking an import, fails here.  Public submodules (no leading ``_``) must be in
``greenhttps.__all__`` too; ``_``-prefixed ones are implementation details.
"""

from __future__ import annotations
import __future__

import importlib
import inspect
import pkgutil
import textwrap
from types import ModuleType
from typing import Any

import pytest

import greenhttps
import greenhttps.errors
import greenhttps.http
import helpers
from greenhttps._options import camel_case

pytestmark = pytest.mark.timeout(20)

PUBLIC_MODULES = [greenhttps, greenhttps.http, greenhttps.errors]
_FUTURE_FLAG = type(__future__.annotations)
#: Adapters imported only by name (``import greenhttps.wsgi``, ``gunicorn -k
#: greenhttps.gunicorn.Worker``, ``from greenhttps.devcert import dev_certificate``):
#: they sit above the package face in docs/architecture.md, so the face neither imports
#: them nor lists them in ``__all__``.
OPTIONAL_SUBMODULES = {"devcert", "gunicorn", "wsgi"}


def _import_public_submodules() -> list[str]:
    names = []
    for info in pkgutil.iter_modules(greenhttps.__path__):
        if not info.name.startswith("_") and info.name not in OPTIONAL_SUBMODULES:
            importlib.import_module(f"greenhttps.{info.name}")
            names.append(info.name)
    return names


def public_names(module: ModuleType) -> set[str]:
    names = set()
    for name, value in vars(module).items():
        if name.startswith("_") or isinstance(value, _FUTURE_FLAG) or name in OPTIONAL_SUBMODULES:
            continue
        if isinstance(value, ModuleType) and not value.__name__.startswith("greenhttps."):
            continue
        names.add(name)
    # Module attributes that live on the module's class (greenhttps.global_agent: a
    # property, so that assigning it takes effect; see _agent.package_face).
    names.update(name for name, value in vars(type(module)).items()
                 if isinstance(value, property) and not name.startswith("_"))
    return names


def exported(module: ModuleType) -> list[tuple[str, Any]]:
    return [(name, getattr(module, name)) for name in module.__all__]


# ------------------------------------------------------------------- __all__


@pytest.mark.parametrize("module", PUBLIC_MODULES, ids=lambda m: m.__name__)
def test_all_is_exactly_the_public_namespace(module: ModuleType) -> None:
    _import_public_submodules()  # a public submodule, once imported, is a public name
    assert len(module.__all__) == len(set(module.__all__)), "duplicates in __all__"
    missing = public_names(module) - set(module.__all__)
    stale = set(module.__all__) - public_names(module)
    assert not missing, f"public but not in __all__: {sorted(missing)}"
    assert not stale, f"in __all__ but not defined: {sorted(stale)}"


def test_public_submodules_are_exported() -> None:
    submodules = _import_public_submodules()
    assert set(submodules) == {"errors", "http"}
    for name in submodules:
        assert name in greenhttps.__all__
        assert getattr(greenhttps, name) is importlib.import_module(f"greenhttps.{name}")


def test_star_import_gives_all() -> None:
    namespace: dict[str, Any] = {}
    exec("from greenhttps import *", namespace)  # noqa: S102
    assert set(namespace) - {"__builtins__"} == set(greenhttps.__all__)


def test_version() -> None:
    assert isinstance(greenhttps.__version__, str)
    assert greenhttps.__version__.count(".") >= 1


# ------------------------------------------------------------ where things live


@pytest.mark.parametrize("module", PUBLIC_MODULES, ids=lambda m: m.__name__)
def test_public_classes_and_functions_name_a_public_module(module: ModuleType) -> None:
    allowed = {module.__name__, "greenhttps"}
    for name, obj in exported(module):
        if not (inspect.isclass(obj) or inspect.isfunction(obj)):
            continue
        assert obj.__module__ in allowed, (name, obj.__module__)
        # ...and the object is found there under its own name (pickle, docs, repr).
        home = importlib.import_module(obj.__module__)
        assert getattr(home, obj.__qualname__) is obj, name


def test_greenhttps_classes_live_in_greenhttps() -> None:
    for name, obj in exported(greenhttps):
        if inspect.isclass(obj) or inspect.isfunction(obj):
            assert obj.__module__ == "greenhttps", name
    assert repr(greenhttps.Agent).startswith("<class 'greenhttps.Agent'")


def test_http_shares_the_message_classes() -> None:
    h = greenhttps.http
    assert h.ClientRequest is greenhttps.ClientRequest
    assert h.IncomingMessage is greenhttps.IncomingMessage
    assert h.ServerResponse is greenhttps.ServerResponse
    assert h.STATUS_CODES is greenhttps.STATUS_CODES
    assert issubclass(h.Server, greenhttps.Server) and h.Server is not greenhttps.Server
    assert issubclass(h.Agent, greenhttps.Agent) and h.Agent is not greenhttps.Agent
    assert h.Server.__name__ == "Server" and h.Server.__module__ == "greenhttps.http"
    assert h.Agent.__module__ == "greenhttps.http"
    assert greenhttps.Agent.default_port == 443 and h.Agent.default_port == 80


def test_status_codes() -> None:
    assert greenhttps.STATUS_CODES[200] == "OK"
    assert greenhttps.STATUS_CODES[404] == "Not Found"
    assert greenhttps.STATUS_CODES[418] == "I'm a Teapot"  # Node's spelling


# ---------------------------------------------------------------- docstrings


@pytest.mark.parametrize("module", PUBLIC_MODULES, ids=lambda m: m.__name__)
def test_everything_public_has_a_docstring(module: ModuleType) -> None:
    assert (module.__doc__ or "").strip(), module.__name__
    undocumented = [
        name
        for name, obj in exported(module)
        if (inspect.isclass(obj) or inspect.isfunction(obj))
        # a class's own docstring: inspect.getdoc would inherit the base's
        and not (obj.__doc__ or "").strip()
    ]
    assert not undocumented


# ------------------------------------------------------------------- aliases


def test_module_level_aliases() -> None:
    assert greenhttps.createServer is greenhttps.create_server
    assert greenhttps.globalAgent is greenhttps.global_agent
    assert greenhttps.http.createServer is greenhttps.http.create_server
    assert greenhttps.http.globalAgent is greenhttps.http.global_agent


def test_global_agents() -> None:
    agent = greenhttps.global_agent
    assert type(agent) is greenhttps.Agent
    assert agent.keep_alive is True and agent.timeout == 5000  # Node 20's
    plain = greenhttps.http.global_agent
    assert type(plain) is greenhttps.http.Agent
    assert plain is not agent
    assert plain.keep_alive is True and plain.timeout == 5000


EMITTERS = [
    greenhttps.Server,
    greenhttps.http.Server,
    greenhttps.ServerResponse,
    greenhttps.IncomingMessage,
    greenhttps.ClientRequest,
    greenhttps.Agent,
    greenhttps.http.Agent,
    greenhttps.Socket,
]


@pytest.mark.parametrize("cls", EMITTERS, ids=lambda c: f"{c.__module__}.{c.__name__}")
def test_emitters_have_the_listener_api(cls: type) -> None:
    for snake, camel in [
        ("on", "addListener"),
        ("remove_listener", "removeListener"),
        ("remove_listener", "off"),
        ("listener_count", "listenerCount"),
        ("remove_all_listeners", "removeAllListeners"),
    ]:
        assert getattr(cls, camel) is getattr(cls, snake), (cls, camel)
    for name in ("once", "emit", "listeners"):
        assert callable(getattr(cls, name))


# (class, camelCase, snake_case): methods and properties, the same object.
METHOD_ALIASES = [
    (greenhttps.ServerResponse, "writeHead", "write_head"),
    (greenhttps.ServerResponse, "setHeader", "set_header"),
    (greenhttps.ServerResponse, "getHeader", "get_header"),
    (greenhttps.ServerResponse, "getHeaders", "get_headers"),
    (greenhttps.ServerResponse, "getHeaderNames", "get_header_names"),
    (greenhttps.ServerResponse, "hasHeader", "has_header"),
    (greenhttps.ServerResponse, "removeHeader", "remove_header"),
    (greenhttps.ServerResponse, "addTrailers", "add_trailers"),
    (greenhttps.ServerResponse, "writeContinue", "write_continue"),
    (greenhttps.ServerResponse, "setTimeout", "set_timeout"),
    (greenhttps.ServerResponse, "flushHeaders", "flush_headers"),
    (greenhttps.ServerResponse, "writableEnded", "writable_ended"),
    (greenhttps.ClientRequest, "setHeader", "set_header"),
    (greenhttps.ClientRequest, "getHeader", "get_header"),
    (greenhttps.ClientRequest, "removeHeader", "remove_header"),
    (greenhttps.ClientRequest, "setTimeout", "set_timeout"),
    (greenhttps.ClientRequest, "setNoDelay", "set_no_delay"),
    (greenhttps.ClientRequest, "setSocketKeepAlive", "set_socket_keep_alive"),
    (greenhttps.ClientRequest, "flushHeaders", "flush_headers"),
    (greenhttps.IncomingMessage, "setTimeout", "set_timeout"),
    (greenhttps.IncomingMessage, "rawHeaders", "raw_headers"),
    (greenhttps.IncomingMessage, "rawTrailers", "raw_trailers"),
    (greenhttps.Server, "setTimeout", "set_timeout"),
    (greenhttps.http.Server, "setTimeout", "set_timeout"),
    (greenhttps.Agent, "getName", "get_name"),
    (greenhttps.http.Agent, "getName", "get_name"),
    (greenhttps.Agent, "createConnection", "create_connection"),
    (greenhttps.http.Agent, "createConnection", "create_connection"),
    (greenhttps.IncomingMessage, "isPaused", "is_paused"),
    (greenhttps.Socket, "setTimeout", "set_timeout"),
    (greenhttps.Socket, "getPeerCertificate", "get_peer_certificate"),
    (greenhttps.Socket, "getCipher", "get_cipher"),
    (greenhttps.Socket, "getProtocol", "get_protocol"),
    (greenhttps.Socket, "getSession", "get_session"),
    (greenhttps.Socket, "remoteAddress", "remote_address"),
    (greenhttps.Socket, "remotePort", "remote_port"),
    (greenhttps.Socket, "alpnProtocol", "alpn_protocol"),
]


@pytest.mark.parametrize(
    ("cls", "camel", "snake"), METHOD_ALIASES, ids=[f"{c.__name__}.{n}" for c, n, _ in METHOD_ALIASES]
)
def test_method_aliases_are_the_same_object(cls: type, camel: str, snake: str) -> None:
    assert camel_case(snake) == camel  # one rule, no hand-made names
    assert inspect.getattr_static(cls, camel) is inspect.getattr_static(cls, snake)


def _bare(cls: type) -> Any:
    """An instance without __init__ (the messages need a live connection)."""
    return object.__new__(cls)


def check_attribute_alias(obj: Any, snake: str) -> None:
    """``obj.camelCase`` reads and writes ``obj.snake_case`` (not a copy)."""
    camel = camel_case(snake)
    first, second = object(), object()
    setattr(obj, snake, first)
    assert getattr(obj, camel) is first, f"{type(obj).__name__}.{camel} does not read {snake}"
    setattr(obj, camel, second)
    assert getattr(obj, snake) is second, f"{type(obj).__name__}.{camel} does not write {snake}"


# (class, instance attribute): Node's spelling must read and write the same value.
ATTRIBUTE_ALIASES = [
    (greenhttps.ServerResponse, "status_code"),
    (greenhttps.ServerResponse, "status_message"),
    (greenhttps.ServerResponse, "headers_sent"),
    (greenhttps.ServerResponse, "send_date"),
    (greenhttps.ServerResponse, "writable_finished"),
    (greenhttps.IncomingMessage, "status_code"),
    (greenhttps.IncomingMessage, "status_message"),
    (greenhttps.IncomingMessage, "http_version"),
    (greenhttps.ClientRequest, "headers_sent"),
    (greenhttps.ClientRequest, "reused_socket"),
    (greenhttps.Socket, "authorization_error"),
    (greenhttps.Server, "headers_timeout"),
    (greenhttps.Server, "keep_alive_timeout"),
    (greenhttps.Server, "request_timeout"),
    (greenhttps.Server, "max_headers_count"),
    (greenhttps.Agent, "max_sockets"),
    (greenhttps.Agent, "max_free_sockets"),
    (greenhttps.Agent, "keep_alive"),
    (greenhttps.Agent, "default_port"),
    (greenhttps.http.Agent, "default_port"),
]


@pytest.mark.parametrize(
    ("cls", "snake"), ATTRIBUTE_ALIASES, ids=lambda v: v if isinstance(v, str) else v.__name__
)
def test_attribute_aliases_read_and_write(cls: type, snake: str) -> None:
    check_attribute_alias(_bare(cls), snake)


def test_send_date_alias_on_a_real_response_class_value() -> None:
    # send_date is a class default: the alias must not be a frozen copy of it.
    res = _bare(greenhttps.ServerResponse)
    assert res.sendDate is True
    res.sendDate = False
    assert res.send_date is False
    assert greenhttps.ServerResponse.send_date is True


# ----------------------------------------------------------- options & protocol


def test_unknown_options_raise_type_error_naming_them() -> None:
    with pytest.raises(TypeError, match="maxSocketz"):
        greenhttps.Agent({"maxSocketz": 1})
    with pytest.raises(TypeError, match="keep_alive_mses"):
        greenhttps.http.Agent(keep_alive_mses=1)
    with pytest.raises(TypeError, match="headersTimeOut"):
        greenhttps.http.create_server({"headersTimeOut": 1})


def test_camel_and_snake_options_are_the_same() -> None:
    a = greenhttps.Agent({"keepAlive": True, "maxSockets": 3}, keep_alive_msecs=250)
    assert (a.keep_alive, a.max_sockets, a.keep_alive_msecs) == (True, 3, 250)
    b = greenhttps.http.Agent(keepAlive=True, max_sockets=3)
    assert (b.keep_alive, b.max_sockets) == (True, 3)


def test_https_request_refuses_http_urls() -> None:
    # Node: https.request('http://...') throws ERR_INVALID_PROTOCOL, synchronously.
    with pytest.raises(greenhttps.errors.InvalidProtocolError) as info:
        greenhttps.request("http://127.0.0.1:9/")
    assert info.value.code == "ERR_INVALID_PROTOCOL"
    assert isinstance(info.value, TypeError)
    with pytest.raises(greenhttps.errors.InvalidProtocolError):
        greenhttps.http.request("https://127.0.0.1:9/")


# --------------------------------------------------------------- no patching


def test_import_does_not_monkey_patch() -> None:
    code = textwrap.dedent(
        """
        import os, queue, select, socket, ssl, subprocess, sys, threading, time
        watched = (os, queue, select, socket, ssl, subprocess, threading, time)
        before = {m.__name__: dict(vars(m)) for m in watched}
        threads = threading.active_count()
        import greenhttps, greenhttps.http, greenhttps.errors
        import gevent.monkey
        assert not gevent.monkey.is_anything_patched(), "gevent reports patching"
        changed = [
            f"{name}.{attr}"
            for name, attrs in before.items()
            for attr, value in attrs.items()
            if getattr(sys.modules[name], attr, None) is not value
        ]
        assert not changed, changed
        assert socket.socket.__module__ == "socket", socket.socket
        assert ssl.SSLContext.__module__ == "ssl", ssl.SSLContext
        assert threading.active_count() == threads, "import started a thread"
        print("OK")
        """
    )
    proc = helpers.run_python(code, timeout=30)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "OK"


def test_import_after_patch_all_works() -> None:
    code = textwrap.dedent(
        """
        import gevent.monkey
        gevent.monkey.patch_all()
        import greenhttps, greenhttps.http
        assert greenhttps.Agent().keep_alive is False
        print("OK")
        """
    )
    proc = helpers.run_python(code, timeout=30)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "OK"


@pytest.mark.parametrize("module", [greenhttps, greenhttps.http], ids=lambda m: m.__name__)
@pytest.mark.parametrize("spelling", ["global_agent", "globalAgent"])
def test_assigning_the_global_agent_takes_effect(module: ModuleType, spelling: str) -> None:
    """Either spelling, assigned on the package face, is the agent the next request
    without an ``agent`` option uses (issue 17: ``globalAgent = ...`` was ignored)."""
    before = module.global_agent
    replacement = module.Agent(keep_alive=True)
    setattr(module, spelling, replacement)
    try:
        assert module.global_agent is replacement and module.globalAgent is replacement
        req = module.request("https://localhost:1/" if module is greenhttps else "http://localhost:1/")
        assert req.agent is replacement
    finally:
        module.global_agent = before
    assert module.globalAgent is before
