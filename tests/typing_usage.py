"""Usages of the public API for mypy, never run: tests/test_typing.py checks them.

A line that must be an error ends with a comment ``E:`` and a part of mypy's
message; a ``reveal_type`` line ends with one ``R:`` and the revealed type.  Every
other line must pass.  The mistakes are the ones issue 20 found passing mypy and failing at run time.
"""

from __future__ import annotations

import datetime
from typing import Any

from typing_extensions import reveal_type

import greenhttps
import greenhttps.http
from greenhttps import Agent, ClientRequest, IncomingMessage, ServerResponse

URL = "https://localhost:8443/"


def on_response(res: IncomingMessage) -> None:
    res.resume()


def on_request(req: IncomingMessage, res: ServerResponse) -> None:
    res.end("ok")


# ----------------------------------------------------------------- correct

reveal_type(greenhttps.get(URL))  # R: greenhttps._incoming.IncomingMessage
reveal_type(greenhttps.get(URL, timeout=1500))  # R: greenhttps._incoming.IncomingMessage
reveal_type(greenhttps.get(URL, on_response))  # R: greenhttps._client.ClientRequest
reveal_type(greenhttps.get(URL, {"timeout": 1500}))  # R: greenhttps._incoming.IncomingMessage
reveal_type(greenhttps.get(URL, {"timeout": 1500}, on_response))  # R: greenhttps._client.ClientRequest
reveal_type(greenhttps.http.get("http://localhost/"))  # R: greenhttps._incoming.IncomingMessage
reveal_type(greenhttps.request(URL, method="POST"))  # R: greenhttps._client.ClientRequest
reveal_type(greenhttps.fetch(URL))  # R: greenhttps._fetch_response.Response
reveal_type(greenhttps.create_server(on_request))  # R: greenhttps._server.Server
reveal_type(greenhttps.create_server(on_request).listen(0, "127.0.0.1"))  # R: greenhttps._server.Server
reveal_type(Agent(keep_alive=True))  # R: greenhttps._agent.Agent

greenhttps.get(URL, timeout=datetime.timedelta(seconds=10))
greenhttps.get(URL, timeout=2.5, ca=b"-----BEGIN CERTIFICATE-----", rejectUnauthorized=True)
greenhttps.get({"hostname": "localhost", "port": 8443, "path": "/", "headers": {"X-A": "1"}})
greenhttps.request(URL, {"method": "PUT"}, on_response).end()
greenhttps.request(URL, agent=False)
greenhttps.request(URL, agent=Agent(maxSockets=10))
greenhttps.request(URL, agent=greenhttps.http.Agent())
greenhttps.fetch(URL, timeout=datetime.timedelta(seconds=5), deadline=30_000, ca="ca.pem")
Agent({"keepAlive": True, "maxSockets": 4}, timeout=datetime.timedelta(seconds=5), scheduling="fifo")
greenhttps.create_server({"key": b"k", "cert": b"c"}, on_request, keep_alive_timeout=datetime.timedelta(seconds=5))
greenhttps.create_server(on_request, requestTimeout=60_000, access_log="common").listen(port=0, host="127.0.0.1")
greenhttps.http.create_server(on_request).listen(8080, "127.0.0.1", 511, lambda: None)
greenhttps.request(URL).set_timeout(datetime.timedelta(seconds=1)).getresponse(timeout=datetime.timedelta(seconds=2))
greenhttps.create_server(on_request).set_timeout(datetime.timedelta(minutes=2))
options: dict[str, Any] = {"hostname": "localhost"}
greenhttps.request(**options)  # a dict of any values spreads as keywords

# --------------------------------------------------------------- mistakes

Agent(max_sokets=10)  # E: Unexpected keyword argument "max_sokets" for "Agent"
Agent(scheduling="random")  # E: Argument "scheduling" to "Agent" has incompatible type
greenhttps.get(URL, timeout="10s")  # E: No overload variant of "get" matches argument types "str", "str"
greenhttps.get(URL, timeot=1000)  # E: No overload variant of "get" matches argument types
greenhttps.request(URL, timeout="10s")  # E: Argument "timeout" to "request" has incompatible type "str"
greenhttps.request(URL, rejectUnauthorised=False)  # E: Unexpected keyword argument "rejectUnauthorised"
greenhttps.request(URL, {"hostnme": "x"})  # E: Argument 2 to "request" has incompatible type
greenhttps.request(URL, agent=True)  # E: Argument "agent" to "request" has incompatible type
greenhttps.fetch(URL, timeout="5s")  # E: Argument "timeout" to "fetch" has incompatible type "str"
greenhttps.fetch(URL, ca_file="ca.pem")  # E: Unexpected keyword argument "ca_file" for "fetch"
greenhttps.create_server(on_request, keepAliveTimout=5000)  # E: Unexpected keyword argument "keepAliveTimout"
greenhttps.create_server({"key": b"k", "crt": b"c"})  # E: Argument 1 to "create_server" has incompatible type
greenhttps.create_server(on_request, access_log="json")  # E: Argument "access_log" to "create_server" has incompatible type
greenhttps.create_server(on_request).listen(port=0, hots="x")  # E: Unexpected keyword argument "hots" for "listen"
greenhttps.create_server(on_request).listen(8443.5)  # E: Argument 1 to "listen" of "Server" has incompatible type "float"
greenhttps.http.create_server(on_request, timeout="2m")  # E: Argument "timeout" to "create_server" has incompatible type
greenhttps.request(URL).set_timeout("1s")  # E: Argument 1 to "set_timeout" of "ClientRequest" has incompatible type "str"
greenhttps.create_server(on_request).set_timeout("2m")  # E: Argument 1 to "set_timeout" of "Server" has incompatible type "str"
res: ClientRequest = greenhttps.get(URL)  # E: Incompatible types in assignment
