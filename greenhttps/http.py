"""``greenhttps.http``: the same API over plain TCP (``http:`` URLs), Node's ``http``.

It shares every class with the TLS module; only the server's ``secure`` flag, the
agent's protocol and default port, and the global agent differ.
"""

from __future__ import annotations

# Private names: the module's namespace is its public API (see __all__).
from typing import TYPE_CHECKING as _TYPE_CHECKING
from typing import Any as _Any
from typing import overload as _overload

from . import _agent, _client, _server
from ._client import ClientRequest
from ._incoming import IncomingMessage
from ._outgoing import STATUS_CODES
from ._response import ServerResponse

if _TYPE_CHECKING:
    from typing_extensions import Unpack

    from ._client import ResponseCallback
    from ._server import RequestListener
    from ._types import RequestOptions, ServerOptions, URLLike

__all__ = [
    "Agent",
    "ClientRequest",
    "IncomingMessage",
    "STATUS_CODES",
    "Server",
    "ServerResponse",
    "create_server",
    "createServer",
    "get",
    "global_agent",
    "globalAgent",
    "request",
]


class Agent(_agent.Agent):
    """Node's ``http.Agent``: the same pool for ``http:`` connections."""

    secure = False
    default_port = 80
    protocol = "http:"


Server = _server.PlainServer
Server.__name__ = Server.__qualname__ = "Server"
Server.__module__ = Agent.__module__ = __name__

# The agent plain requests use when they name none (global_agent / globalAgent):
# kept in _agent's table, read and assigned through this module's class (see
# _agent.package_face).
_agent.set_global_agent(Agent.protocol, Agent(keep_alive=True, timeout=5000))
#: The agent plain requests use when they name none (declared here; the value is in _agent).
global_agent: _agent.Agent
#: Node's spelling of ``global_agent`` (assigning either takes effect).
globalAgent: _agent.Agent
__import__("sys").modules[__name__].__class__ = _agent.package_face(Agent.protocol)


def create_server(
    options: ServerOptions | RequestListener | None = None,
    request_listener: RequestListener | None = None,
    **kwargs: Unpack[ServerOptions],
) -> _server.Server:
    """Node's ``http.createServer(options, requestListener)``."""
    return Server(options, request_listener, **kwargs)


def request(
    url_or_options: URLLike | RequestOptions | ResponseCallback | None = None,
    callback: ResponseCallback | RequestOptions | None = None,
    *more: ResponseCallback | None,
    **kwargs: Unpack[RequestOptions],
) -> ClientRequest:
    """Node's ``http.request``: ``http:`` URLs only.

    ``url_or_options``, ``callback`` (positional arguments: the ``options`` dict after a URL, then the callback) and the
    keyword options as in :func:`greenhttps.request` (``request(url, options,
    callback)`` too).
    """
    return _client._make_request(url_or_options, callback, kwargs, agent_class=Agent, more=more)


# The shapes as greenhttps.get's: the response without a callback, else the request.
@_overload
def get(
    url_or_options: URLLike | RequestOptions | None = None, /, **kwargs: Unpack[RequestOptions]
) -> IncomingMessage: ...
@_overload
def get(
    url_or_options: URLLike | RequestOptions | None, callback: ResponseCallback, /, **kwargs: Unpack[RequestOptions]
) -> ClientRequest: ...
@_overload
def get(
    url_or_options: URLLike | RequestOptions | None, options: RequestOptions, callback: None = None, /,
    **kwargs: Unpack[RequestOptions],
) -> IncomingMessage: ...
@_overload
def get(
    url_or_options: URLLike | RequestOptions | None, options: RequestOptions, callback: ResponseCallback, /,
    **kwargs: Unpack[RequestOptions],
) -> ClientRequest: ...
def get(
    url_or_options: _Any = None, callback: _Any = None, *more: _Any, **kwargs: _Any
) -> _Any:
    """Node's ``http.get``.  Without a callback: block and return the response.

    ``url_or_options``, ``callback`` (positional arguments: the ``options`` dict after a URL, then the callback) and the
    keyword options as in :func:`greenhttps.get`.
    """
    return _client.end_for_get(request(url_or_options, callback, *more, **kwargs))


createServer = create_server
