"""Shared fixtures: certificates from one session-scoped trustme CA, scripted peers, and
a check that fails any test during which an exception reached the gevent hub.

Nothing here monkey-patches (never ``gevent.monkey.patch_all()``: it would hide every
place where the library forgot to use a gevent primitive), and nothing imports
greenhttps, so these fixtures work whatever state the package is in.
"""

from __future__ import annotations

import os
import ssl
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol

import gevent
import gevent.server
import gevent.socket
import pytest
import trustme

import helpers

HubError = tuple[Any, "type[BaseException] | None", "BaseException | None"]
"""What ``hub_errors`` records: (context, exception type, exception value)."""

Handler = Callable[[gevent.socket.socket], None]

_NOT_HUB_ERRORS: tuple[type[BaseException], ...] = (
    pytest.fail.Exception,
    pytest.skip.Exception,
    KeyboardInterrupt,
)

_TOOL_MARKERS = {"needs_node": "node", "needs_curl": "curl", "needs_openssl": "openssl", "needs_haproxy": "haproxy"}
_TOOL_MARKERS["needs_redis"] = "redis-server"  # tests/test_distributed_crawl.py: a real broker


# ----------------------------------------------------------------------- hooks


def pytest_configure(config: pytest.Config) -> None:
    """Register markers when running without tox.ini (e.g. from another directory)."""
    known = {line.split(":", 1)[0].strip() for line in config.getini("markers")}
    for name, text in {
        "allow_hub_errors": "do not fail the test when an exception reaches the gevent hub",
        "slow": "a test that takes more than a couple of seconds",
        "needs_node": "talks to a node peer (skipped when node is not on PATH, fails in CI)",
        "needs_curl": "talks to a curl peer (skipped when curl is not on PATH, fails in CI)",
        "needs_openssl": "talks to an openssl peer (skipped when openssl is not on PATH, fails in CI)",
        "needs_haproxy": "runs behind a real HAProxy (skipped when haproxy is not on PATH, fails in CI)",
        "needs_redis": "starts a redis-server (skipped when it is not on PATH, fails in CI)",
    }.items():
        if name not in known:
            config.addinivalue_line("markers", f"{name}: {text}")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip ``needs_node``/``needs_curl``/``needs_openssl``/``needs_haproxy`` tests when the tool is
    missing -- except in CI (``CI`` set, as ``.ci/run`` does), where a missing peer
    must fail loudly rather than quietly shrink the run."""
    in_ci = bool(os.environ.get("CI"))
    for item in items:
        for marker, tool in _TOOL_MARKERS.items():
            if item.get_closest_marker(marker) and helpers.which(tool) is None and not in_ci:
                item.add_marker(pytest.mark.skip(reason=f"{tool} not found on PATH"))


def pytest_runtest_setup(item: pytest.Item) -> None:
    """In CI, a test whose peer tool is missing fails before it starts (see above)."""
    for marker, tool in _TOOL_MARKERS.items():
        if item.get_closest_marker(marker) and helpers.which(tool) is None:
            pytest.fail(f"{tool} not found on PATH: CI must have every peer the tests talk to")


def pytest_report_header(config: pytest.Config) -> list[str]:
    """Show the versions that matter for TLS and gevent behaviour (visible with -v)."""
    from importlib.metadata import version

    tools = ", ".join(f"{t}: {'yes' if helpers.which(t) else 'no'}" for t in _TOOL_MARKERS.values())
    return [
        f"gevent {version('gevent')}, greenlet {version('greenlet')}, h11 {version('h11')}",
        f"{ssl.OPENSSL_VERSION}; {tools}",
    ]


# --------------------------------------------------------------- hub errors


@pytest.fixture(autouse=True)
def hub_errors(request: pytest.FixtureRequest) -> Iterator[list[HubError]]:
    """Record every exception that reaches ``hub.handle_error`` during the test.

    (Except pytest's own outcomes, e.g. a pytest-timeout failure, and Ctrl-C.)

    Fails the test at teardown if any did, unless the test is marked
    ``@pytest.mark.allow_hub_errors``. Such a test can ask for this fixture to assert on
    the (context, type, value) triples itself. The hub's own handler still runs, so
    tracebacks are printed and system errors are still re-raised in the main greenlet.
    """
    hub = gevent.get_hub()
    recorded: list[HubError] = []
    had_own = "handle_error" in vars(hub)
    original = hub.handle_error

    def handle_error(
        context: Any,
        type_: type[BaseException] | None,
        value: BaseException | None,
        tb: TracebackType | None,
    ) -> Any:
        # pytest-timeout's SIGALRM often lands in the hub. That failure is already
        # reported, so it is not counted twice (nor is Ctrl-C).
        if type_ is None or not issubclass(type_, _NOT_HUB_ERRORS):
            recorded.append((context, type_, value))
        return original(context, type_, value, tb)

    hub.handle_error = handle_error  # type: ignore[method-assign,assignment]
    try:
        yield recorded
        gevent.sleep(0)  # let errors already scheduled surface within this test
    finally:
        if had_own:
            hub.handle_error = original  # type: ignore[method-assign]
        else:
            del hub.handle_error
    if recorded and request.node.get_closest_marker("allow_hub_errors") is None:
        lines = [f"  {getattr(t, '__name__', t)}: {v!r} (context: {c!r})" for c, t, v in recorded]
        pytest.fail(
            f"{len(recorded)} exception(s) reached the gevent hub during the test "
            "(mark it allow_hub_errors if that is expected):\n" + "\n".join(lines),
            pytrace=False,
        )


# ------------------------------------------------------------- certificates


@pytest.fixture(scope="session")
def ca() -> trustme.CA:
    """The test CA that issues the server and client certificates."""
    return trustme.CA()


@pytest.fixture(scope="session")
def other_ca() -> trustme.CA:
    """An unrelated CA, for negative controls (its certificates must be rejected)."""
    return trustme.CA()


@pytest.fixture(scope="session")
def ca_pem(ca: trustme.CA) -> bytes:
    """The CA certificate as PEM bytes (what a client's ``ca`` option takes)."""
    return ca.cert_pem.bytes()


@pytest.fixture(scope="session")
def ca_file(ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The path of a file holding the CA certificate (for curl, openssl and node)."""
    path = tmp_path_factory.mktemp("ca") / "ca.pem"
    ca.cert_pem.write_to_path(path)
    return str(path)


@pytest.fixture(scope="session")
def server_cert(ca: trustme.CA) -> trustme.LeafCert:
    """A server certificate from ``ca`` for localhost, 127.0.0.1 and ::1."""
    return ca.issue_cert("localhost", "127.0.0.1", "::1")


@pytest.fixture
def tls_options(server_cert: trustme.LeafCert) -> dict[str, bytes]:
    """``{'key': PEM, 'cert': chain PEM}``: the options ``greenhttps.create_server`` takes.

    A new dict for each test, so a test can add options to it.
    """
    return {
        "key": server_cert.private_key_pem.bytes(),
        "cert": b"".join(blob.bytes() for blob in server_cert.cert_chain_pems),
    }


@pytest.fixture(scope="session")
def server_cert_files(
    server_cert: trustme.LeafCert, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, str]:
    """``{'key': path, 'cert': path}`` for the server certificate (openssl, node peers)."""
    d = tmp_path_factory.mktemp("server-cert")
    key, cert = d / "key.pem", d / "cert.pem"
    server_cert.private_key_pem.write_to_path(key)
    cert.write_bytes(b"".join(blob.bytes() for blob in server_cert.cert_chain_pems))
    return {"key": str(key), "cert": str(cert)}


@pytest.fixture(scope="session")
def _client_leaf(ca: trustme.CA) -> trustme.LeafCert:
    return ca.issue_cert("client.example.org", "client@example.org")


@pytest.fixture
def client_cert(_client_leaf: trustme.LeafCert) -> dict[str, bytes]:
    """``{'key': PEM, 'cert': chain PEM}``: a client certificate issued by ``ca``.

    It names client.example.org (DNS) and client@example.org (email).
    """
    return {
        "key": _client_leaf.private_key_pem.bytes(),
        "cert": b"".join(blob.bytes() for blob in _client_leaf.cert_chain_pems),
    }


@pytest.fixture(scope="session")
def client_cert_files(
    _client_leaf: trustme.LeafCert, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, str]:
    """``{'key': path, 'cert': path}`` for the client certificate (curl --cert/--key)."""
    d = tmp_path_factory.mktemp("client-cert")
    key, cert = d / "key.pem", d / "cert.pem"
    _client_leaf.private_key_pem.write_to_path(key)
    cert.write_bytes(b"".join(blob.bytes() for blob in _client_leaf.cert_chain_pems))
    return {"key": str(key), "cert": str(cert)}


@pytest.fixture
def client_ssl_context(ca: trustme.CA) -> ssl.SSLContext:
    """A stdlib client context that trusts ``ca`` only, with hostname checking on."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ca.configure_trust(ctx)
    return ctx


@pytest.fixture
def server_ssl_context(server_cert: trustme.LeafCert) -> ssl.SSLContext:
    """A stdlib server context presenting ``server_cert`` (the default for ``script_server``)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_cert.configure_cert(ctx)
    return ctx


@pytest.fixture(params=["127.0.0.1", "::1"])
def loopback_host(request: pytest.FixtureRequest) -> str:
    """Each loopback address in turn; ::1 is skipped where IPv6 is unavailable."""
    host: str = request.param
    if ":" in host and not helpers.has_ipv6():
        pytest.skip("IPv6 loopback unavailable")
    return host


# ----------------------------------------------------------- scripted peers


class ScriptServer(Protocol):
    def __call__(
        self,
        handler: Handler,
        tls: bool = False,
        ssl_context: ssl.SSLContext | None = None,
        *,
        host: str = "127.0.0.1",
    ) -> int: ...


@pytest.fixture
def script_server(server_ssl_context: ssl.SSLContext) -> Iterator[ScriptServer]:
    """Factory: ``script_server(handler, tls=False, ssl_context=None) -> port``.

    It starts a gevent ``StreamServer`` on ``(host, 0)`` that calls ``handler(sock)``
    for each connection. With ``tls``, ``sock`` is already wrapped and handshaken,
    using ``ssl_context`` or else ``server_ssl_context``. The handler writes exact
    bytes, sleeps, closes or resets (``helpers.rst_close``) as the test needs.
    A failed handshake is dropped quietly (negative controls cause them), and so are
    ``BrokenPipeError``/``ConnectionResetError`` from a peer that went away. Any other
    handler exception reaches the hub and fails the test. The socket is closed when
    the handler returns. Every server is stopped at teardown.
    """
    servers: list[gevent.server.StreamServer] = []

    def start(
        handler: Handler,
        tls: bool = False,
        ssl_context: ssl.SSLContext | None = None,
        *,
        host: str = "127.0.0.1",
    ) -> int:
        ctx = ssl_context if ssl_context is not None else server_ssl_context

        def handle(sock: gevent.socket.socket, address: object) -> None:
            conn = sock
            try:
                if tls:
                    try:
                        conn = helpers.wrap_server(sock, ctx)
                    except (ssl.SSLError, OSError):
                        return
                handler(conn)
            except (BrokenPipeError, ConnectionResetError, ssl.SSLEOFError):
                pass
            finally:
                conn.close()

        server = gevent.server.StreamServer((host, 0), handle)
        server.start()
        servers.append(server)
        port = server.server_port
        assert port is not None
        return port

    yield start
    for server in servers:
        server.stop(timeout=1)


@pytest.fixture
def repo_root() -> Path:
    """The checkout root (for tests that run examples/ or scripts)."""
    return helpers.REPO_ROOT


@pytest.fixture(autouse=True)
def _fresh_global_agents() -> Iterator[None]:
    """Close the global agents' pooled sockets after each test, so no test inherits
    another's connections (or sees them close during its own fd/greenlet counts)."""
    yield
    module = sys.modules.get("greenhttps")
    if module is not None:
        module.global_agent.destroy()
        module.http.global_agent.destroy()


def _answer_ok(req: Any, res: Any) -> None:
    res.end("ok")


@pytest.fixture
def make_server(tls_options: dict[str, bytes]) -> Iterator[Callable[..., Any]]:
    """Factory: ``make_server(handler=<answers "ok">, *, tls=True, listen=True, **options)``.

    A greenhttps server on 127.0.0.1:0 (TLS with ``tls_options`` unless the options
    name their own key material; plain ``greenhttps.http`` with ``tls=False``).
    Every server is closed, connections too, at teardown.
    """
    import greenhttps  # lazily: the helpers' self-check runs without the package

    servers: list[Any] = []

    def make(handler: Any = _answer_ok, *, tls: bool = True, listen: bool = True, **opts: Any) -> Any:
        if tls:
            own_keys = {"pfx", "ssl_context", "key", "cert"} & set(opts)
            srv = greenhttps.create_server({**({} if own_keys else tls_options), **opts}, handler)
        else:
            srv = greenhttps.http.create_server(opts, handler)
        servers.append(srv)
        if listen:
            srv.listen(0, "127.0.0.1")
        return srv

    yield make
    for srv in servers:
        srv.close()
        srv.close_all_connections()
    helpers.settle()


@pytest.fixture
def serve(make_server: Callable[..., Any]) -> Callable[..., int]:
    """Factory: ``serve(handler, **server_options) -> port`` of a listening TLS server."""
    return lambda handler, **opts: int(make_server(handler, **opts).address()["port"])
