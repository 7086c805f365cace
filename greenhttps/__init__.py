"""greenhttps: Node.js's ``https`` module for gevent.

An HTTPS server where each connection is a greenlet running plain blocking code,
and a client with a connection-pooling :class:`Agent`::

    import greenhttps

    def hello(req, res):
        res.write_head(200, {"Content-Type": "text/plain"})
        res.end("hello world\\n")

    greenhttps.create_server({"key": key_pem, "cert": cert_pem}, hello).listen(8443)

    res = greenhttps.get("https://example.org/")   # in any greenlet: blocks, returns
    body = res.read()

``greenhttps.http`` is the same API without TLS.  Every camelCase name Node uses
(``createServer``, ``writeHead``, ``globalAgent``...) is an alias of the snake_case one.

The adapters built on this API are imported by name and are not names of this
module: ``greenhttps.wsgi`` (PEP 3333 applications) and ``greenhttps.gunicorn``.
The modules' layers, and the rules their imports keep, are in ``docs/architecture.md``
(held by ``tests/test_layering.py``).
"""

from __future__ import annotations

from . import _agent, errors
from ._agent import Agent
from ._client import ClientRequest, get, request
from ._incoming import IncomingMessage
from ._net_socket import Socket
from ._outgoing import STATUS_CODES
from ._response import ServerResponse
from ._server import Server, create_server
from ._types import AgentOptions, FetchOptions, ListenOptions, RequestOptions, ServerOptions
from .errors import Error

__version__ = "0.1.0"

# Node's spellings of the module-level names.
createServer = create_server
# global_agent / globalAgent (Node 20's: keep-alive, 5 s idle): properties of this
# module's class, kept in _agent's table so that assigning either one takes effect.
__import__("sys").modules[__name__].__class__ = _agent.package_face(Agent.protocol)
#: The agent requests use when they name none (declared here; the value is in _agent).
global_agent: Agent
#: Node's spelling of ``global_agent`` (assigning either takes effect).
globalAgent: Agent

from . import http  # noqa: E402  (need the classes above)
from ._fetch import Response, Retry, fetch  # noqa: E402  (fetch() builds on both faces' requests)

__all__ = [
    "Agent",
    "AgentOptions",
    "ClientRequest",
    "Error",
    "FetchOptions",
    "IncomingMessage",
    "ListenOptions",
    "RequestOptions",
    "Response",
    "Retry",
    "STATUS_CODES",
    "Server",
    "ServerOptions",
    "ServerResponse",
    "Socket",
    "create_server",
    "createServer",
    "errors",
    "fetch",
    "get",
    "global_agent",
    "globalAgent",
    "http",
    "request",
]

# Show the public names where users import them from (reprs, help(), docs, pickle).
for _obj in (Agent, ClientRequest, IncomingMessage, Server, ServerResponse, Socket, Error,
             create_server, get, request,
             AgentOptions, FetchOptions, ListenOptions, RequestOptions, ServerOptions):
    _obj.__module__ = __name__
del _obj
