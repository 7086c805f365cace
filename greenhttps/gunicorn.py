"""A gunicorn worker that serves through greenhttps::

    gunicorn -k greenhttps.gunicorn.Worker -w 2 --certfile cert.pem --keyfile key.pem app:app

Theory of operation
-------------------
gunicorn's arbiter binds the listening sockets, forks the workers and watches them;
each worker here turns every listening socket into a greenhttps server (TLS when
gunicorn has ``--certfile``/``--keyfile``, plain HTTP otherwise) whose request
listener is :class:`greenhttps.wsgi.WSGIHandler`.  Like gunicorn's own ``gevent``
worker, :class:`Worker` monkey-patches the process first, so that the application's
blocking calls (``time.sleep``, database drivers, ``requests``) yield to the other
connections; :class:`UnpatchedWorker` leaves the process alone, for applications
written against gevent directly.

The arbiter's contract, and how it is kept:

* **Heartbeat.**  The worker's main greenlet calls ``notify()`` at least every
  ``timeout / 2`` seconds (and at most once a second); a worker whose event loop is
  blocked stops notifying and the arbiter kills it (``--timeout``).
* **SIGTERM** (graceful: also what the arbiter sends to old workers on SIGHUP reload
  and on ``max_requests``): stop accepting at once and close the worker's copies of
  the listening sockets (after the arbiter's TERM, new connections are then refused
  rather than queued and reset), close idle keep-alive connections, let requests in
  flight finish (their responses say ``Connection: close``) for up to
  ``--graceful-timeout`` seconds, then close what is left and exit.  Not idle, and
  so served: a connection that has not had its first request yet, and one whose
  next request has begun to arrive (see ``Server.close``).
* **SIGHUP** goes to the arbiter, which starts new workers and sends SIGTERM to the
  old ones; the listening sockets stay open, so connections wait in the backlog
  for the new workers.  The new workers read ``--certfile``/``--keyfile`` again: a
  certificate is rotated by replacing both files, then sending SIGHUP.  Tested
  under load (tests/test_gunicorn_reload.py): three reloads that rotate the
  certificate and a final SIGTERM, clients that never retry, nothing dropped.
* **SIGQUIT / SIGINT**: exit at once (gunicorn's ``handle_quit``).
* **max_requests** (+ jitter, drawn by gunicorn): after that many requests the worker
  shuts down gracefully as for SIGTERM and the arbiter starts a fresh one.
* A worker whose parent changed (the arbiter died) exits.

Mapped settings: ``keepalive`` (seconds) -> ``keep_alive_timeout`` (0: no
keep-alive), ``limit_request_fields`` -> ``max_headers_count``,
``limit_request_line`` (414) and ``limit_request_field_size`` (431) checked on each
request (the server's ``max_header_size``, 16 KiB, grows to fit them),
``worker_connections`` -> stop accepting while that many connections are open (per
listening socket; the rest wait in the backlog, as with gunicorn's gevent pool);
behind a proxy:
``forwarded_allow_ips`` and ``secure_scheme_headers`` -> the WSGI adapter's (which
also takes ``REMOTE_ADDR`` from a trusted proxy's ``X-Forwarded-For``, where gunicorn's
own workers leave the proxy's address), ``proxy_protocol`` (``v1``, ``v2``, ``auto``)
and ``proxy_allow_ips`` (``--proxy-allow-from``) -> the server's: the header is read
before TLS, and a peer in the list must send one (gunicorn's own workers read it
inside the HTTP stream and let it be absent); TLS: ``certfile``, ``keyfile``,
``ca_certs`` (client certificates: ``cert_reqs`` CERT_OPTIONAL/CERT_REQUIRED ->
``request_cert`` and ``reject_unauthorized``), ``ciphers``.  The access log uses
gunicorn's logger and ``access_log_format``.
"""

from __future__ import annotations

import datetime
import os
import ssl
import time
from typing import Any

import gevent
from gevent.event import Event
from gunicorn.http.wsgi import base_environ  # type: ignore[import-untyped]
from gunicorn.workers import base  # type: ignore[import-untyped]

from . import __version__, http
from ._server import create_server
from .wsgi import WSGIHandler
from .wsgi import _Response as _WSGIResponse

__all__ = ["Worker", "UnpatchedWorker"]

SERVER_SOFTWARE = f"greenhttps/{__version__} gunicorn"


def tls_options(cfg: Any) -> dict[str, Any] | None:
    """greenhttps TLS options from gunicorn's settings; None for plain HTTP."""
    if not cfg.is_ssl:
        return None
    opts: dict[str, Any] = {
        "cert": os.fspath(cfg.certfile),
        # A certfile holding the key too is how gunicorn works without --keyfile.
        "key": os.fspath(cfg.keyfile or cfg.certfile),
    }
    if cfg.ca_certs:
        opts["ca"] = os.fspath(cfg.ca_certs)
    if cfg.ciphers:
        opts["ciphers"] = cfg.ciphers
    if cfg.cert_reqs in (ssl.CERT_OPTIONAL, ssl.CERT_REQUIRED):
        opts["request_cert"] = True
        opts["reject_unauthorized"] = cfg.cert_reqs == ssl.CERT_REQUIRED
    return opts


class _Response:
    """What gunicorn's access logger reads from a response."""

    __slots__ = ("status", "headers", "sent")

    def __init__(self, status: str, headers: list[tuple[str, str]], sent: int) -> None:
        self.status, self.headers, self.sent = status, headers, sent


class _Handler(WSGIHandler):
    """WSGIHandler that counts requests for ``max_requests`` and writes the access log."""

    def __init__(self, worker: Worker, app: Any, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self.worker = worker
        self.access_log = bool(worker.log.access_log_enabled)
        cfg = worker.cfg
        #: gunicorn's limit_request_line and limit_request_field_size (0: none).
        self.line_limit = int(cfg.limit_request_line or 0)
        self.field_limit = int(cfg.limit_request_field_size or 0)
        # The fast path (WSGIHandler._serve_head) counts and limits as __call__ does;
        # the access log reads the ServerResponse, so it takes the general path.
        self.greenhttps_fast_path = None if self.access_log else self._serve_head

    def _count(self) -> None:
        """One more request: past ``max_requests`` the worker restarts after it."""
        worker = self.worker
        worker.nr += 1
        if worker.nr >= worker.max_requests and worker.alive:
            worker.log.info("Autorestarting worker after current request.")
            worker.stop()

    def _serve_head(self, conn: Any, wire: Any, head: Any) -> bool:
        """WSGIHandler's fast path, counted and limited as :meth:`__call__` does."""
        self._count()
        if self.line_limit or self.field_limit:
            status = self._limit_status(head.method, head.target, head.headers)
            if status:
                req, res = conn.materialize(wire, head)
                self._refuse(req, res, status)
                return False
        return super()._serve_head(conn, wire, head)

    def __call__(self, req: Any, res: Any) -> None:
        self._count()
        if self.line_limit or self.field_limit:
            status = self._limit_status(req.method, req.url, req._head.headers)
            if status:
                self._refuse(req, res, status)
                return
        env = self.environ_or_reject(req, res)
        if env is None:
            return
        if not self.access_log:
            self.serve(env, req, res)
            return
        started = datetime.datetime.now()
        out = _WSGIResponse(res)
        res.once("finish", lambda: self._log(req, res, env, started, out.sent))
        self.serve(env, req, res, out)

    def _limit_status(self, method: str, target: str, headers: Any) -> int:
        """gunicorn's request-line (414) and header-field (431) limits: the status a
        request over one of them gets, else 0."""
        # "METHOD SP target SP HTTP/x.y", as gunicorn measures the line.
        if self.line_limit and len(method) + len(target) + 10 > self.line_limit:
            return 414
        if self.field_limit:
            limit = self.field_limit - 2  # gunicorn counts "name: value" (CRLF excluded)
            if any(len(name) + len(value) > limit for name, value in headers):
                return 431
        return 0

    def _refuse(self, req: Any, res: Any, status: int) -> None:
        self.worker.log.debug("request from %s refused: %d", req.socket.remote_address, status)
        res.status_code = status
        res.set_header("Connection", "close")
        res.end()

    def _log(self, req: Any, res: Any, env: dict[str, Any], started: datetime.datetime, sent: int) -> None:
        # ``sent``: the body bytes that went out, as gunicorn's own ``resp.sent`` (its
        # ``%(b)s`` and ``%(B)s``): a chunked body's size too, 0 for HEAD, 204, 304.
        headers = [(name, str(value)) for name, value in res.get_headers().items()]
        status = f"{res.status_code} {res.status_message or ''}".rstrip()
        req_headers = [(name, str(value)) for name, value in req.headers.items()]
        self.worker.log.access(_Response(status, headers, sent), req_headers, env, datetime.datetime.now() - started)


class Worker(base.Worker):
    """gunicorn worker: greenhttps servers on the arbiter's sockets, gevent-patched."""

    #: Monkey-patch the worker process (as gunicorn's gevent worker does).
    monkey_patch = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._wake: Event | None = None
        self.servers: list[Any] = []

    def init_process(self) -> None:
        """gunicorn's hook in the new worker process: patch (unless unpatched), reinit
        the hub, then gunicorn's own setup, which calls :meth:`run`."""
        if self.monkey_patch:
            from gevent import monkey

            monkey.patch_all()
        # The arbiter's hub (if it made one) belongs to the parent: start afresh.
        gevent.reinit()
        super().init_process()

    # ---------------------------------------------------------------- signals

    def stop(self) -> None:
        """Begin a graceful shutdown (SIGTERM, max_requests)."""
        self.alive = False
        if self._wake is not None:
            self._wake.set()

    def handle_exit(self, sig: int, frame: Any) -> None:
        """SIGTERM handler (``sig``, ``frame`` as for any signal handler): :meth:`stop`."""
        # A signal handler runs in whatever greenlet was interrupted: only set flags
        # and wake the main greenlet, which does the work.
        self.stop()

    def handle_quit(self, sig: int, frame: Any) -> None:
        """SIGQUIT/SIGINT handler (``sig``, ``frame``): gunicorn's quick exit, in a greenlet."""
        # gunicorn's handle_quit sleeps and exits: do it in a greenlet of its own (the
        # SystemExit then reaches the main greenlet through the hub, and exits).
        gevent.spawn(super().handle_quit, sig, frame)

    def handle_usr1(self, sig: int, frame: Any) -> None:
        """SIGUSR1 handler (``sig``, ``frame``): gunicorn's log reopening, in a greenlet."""
        gevent.spawn(super().handle_usr1, sig, frame)

    def notify(self) -> None:
        """Heartbeat to the arbiter; shut down gracefully if the parent has changed."""
        super().notify()
        if self.ppid != os.getppid():
            self.log.info("Parent changed, shutting down: %s", self)
            self.stop()

    # ---------------------------------------------------------------- serving

    def _environ(self) -> dict[str, Any]:
        env = base_environ(self.cfg)
        env["SERVER_SOFTWARE"] = SERVER_SOFTWARE
        env.pop("wsgi.file_wrapper", None)  # ours streams through ServerResponse
        return env

    def run(self) -> None:
        """Serve on gunicorn's listening sockets until stopped, then close gracefully."""
        self._wake = Event()
        tls = tls_options(self.cfg)
        cfg = self.cfg
        handler = _Handler(self, self.wsgi, environ=self._environ(), forwarded_allow_ips=cfg.forwarded_allow_ips,
                           secure_scheme_headers=cfg.secure_scheme_headers)
        keepalive = int(cfg.keepalive)
        options: dict[str, Any] = {
            # gunicorn's keepalive 0 turns keep-alive off (Node's 0 would mean "no
            # timeout"): then every response says Connection: close.
            "keep_alive_timeout": max(0, keepalive) * 1000,
            "max_requests_per_socket": 0 if keepalive > 0 else 1,
            # gunicorn's "off"/"v1"/"v2"/"auto" (a bool before 23) are the server's spellings too.
            "proxy_protocol": cfg.proxy_protocol if cfg.proxy_protocol not in (None, "off") else False,
            "proxy_allow_ips": cfg.proxy_allow_ips,
        }
        if cfg.limit_request_fields:
            options["max_headers_count"] = int(cfg.limit_request_fields)
        # The server's own bound on a whole head (16 KiB, Node's) grows if one field
        # or line may be longer than that.
        longest = int(cfg.limit_request_line or 0) + int(cfg.limit_request_field_size or 0) + 4
        if longest > 16384:
            options["max_header_size"] = longest
        for sock in self.sockets:
            if tls is not None:
                server = create_server(handler, **tls, **options)
            else:
                server = http.create_server(handler, **options)
            server._accept_limit = max(0, int(cfg.worker_connections or 0))
            server.listen(sock.sock)  # a duplicate: gunicorn keeps and closes its own
            self.servers.append(server)
        if not self.alive:  # a signal came while starting
            self._wake.set()
        self.log.debug("greenhttps worker serving (pid: %s)", self.pid)

        interval = max(0.05, min(1.0, float(self.timeout or 1.0)))
        while self.alive:
            self.notify()
            self._wake.wait(interval)
        self._shutdown()

    def _shutdown(self) -> None:
        """Graceful: no new connections; in-flight requests get graceful_timeout."""
        servers = self.servers
        closed = Event()
        pending = [len(servers)]

        def one_closed(*_: Any) -> None:
            pending[0] -= 1
            if pending[0] <= 0:
                closed.set()

        for server in servers:
            server.close(one_closed)
        # The worker's own copies of the arbiter's sockets too (its server closed a
        # duplicate): the kernel keeps queueing connections for a listening socket
        # while any process holds it, and resets them when the last one closes it.
        # The arbiter closes its copy on SIGTERM; once the workers have closed theirs,
        # new connections are refused rather than queued and reset.  (On SIGHUP the
        # arbiter keeps its copy: the new workers accept from the same socket.)
        for sock in self.sockets:
            sock.close()
        deadline = time.monotonic() + float(self.cfg.graceful_timeout)
        interval = max(0.05, min(1.0, float(self.timeout or 1.0)))
        while not closed.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self.log.warning("Worker graceful timeout (pid:%s)", self.pid)
                for server in servers:
                    server.close_all_connections()
                closed.wait(1.0)
                break
            self.notify()
            closed.wait(min(interval, remaining))


class UnpatchedWorker(Worker):
    """The same worker without monkey-patching: the application must cooperate
    with gevent itself (``gevent.sleep``, gevent sockets)."""

    monkey_patch = False
