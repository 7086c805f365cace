"""A real Django application (benchmarks/wsgi/django_app.py: settings in code, a sqlite
database, a view reading rows through the ORM) served over real TLS, by
:class:`greenhttps.wsgi.WSGIHandler` in this process and by the gunicorn worker in a
gunicorn arbiter.  The rows in the JSON must be the ones the ORM reads here.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any, Callable

import pytest

from greenhttps.wsgi import WSGIHandler
from helpers import REPO_ROOT, raw_connect, read_response

pytest.importorskip("django")

pytestmark = pytest.mark.timeout(30)

APP_FILE = REPO_ROOT / "benchmarks" / "wsgi" / "django_app.py"


@pytest.fixture(scope="module")
def django_app() -> Any:
    """The module (importing it configures Django and fills its database, once per process)."""
    sys.path.insert(0, str(APP_FILE.parent))
    try:
        import django_app
    finally:
        sys.path.remove(str(APP_FILE.parent))
    return django_app


def expected(module: Any, offset: int = 0) -> dict[str, Any]:
    """What the view must answer, read through the ORM here."""
    rows = module.Item.objects.filter(in_stock=True).values("id", "name", "price_cents")[offset:offset + module.PAGE]
    return {"items": list(rows), "total": module.Item.objects.count()}


def get(path: str) -> bytes:
    return b"GET " + path.encode() + b" HTTP/1.1\r\nHost: localhost\r\n\r\n"


def test_rows_through_wsgi_handler(django_app: Any, serve: Callable[..., int], client_ssl_context: Any) -> None:
    """Two requests on one keep-alive connection (Django opens and closes its database
    connection for each): the first page and the next, as the ORM reads them."""
    port = serve(WSGIHandler(django_app.app))
    sock = raw_connect(port, tls=True, ssl_context=client_ssl_context)
    try:
        sock.sendall(get("/"))
        first = read_response(sock)
        sock.sendall(get("/?offset=20"))
        second = read_response(sock)
    finally:
        sock.close()
    for resp, offset in ((first, 0), (second, 20)):
        assert resp.status == 200
        assert resp.get("content-type") == b"application/json"
        assert resp.get("x-frame-options") == b"DENY"  # Django's middleware ran
        body = json.loads(resp.body)
        assert body == expected(django_app, offset)
        assert body["total"] == django_app.ROWS and len(body["items"]) == django_app.PAGE
    ids = [row["id"] for row in json.loads(first.body)["items"]]
    assert ids == sorted(ids) and all((i - 1) % 5 for i in ids)  # the filter: in stock only


@pytest.mark.slow
def test_rows_through_the_gunicorn_worker(django_app: Any, tmp_path: Path, server_cert_files: dict[str, str],
                                          client_ssl_context: Any) -> None:
    """The same app under ``gunicorn -k greenhttps.gunicorn.Worker`` (two workers, each
    with its own database made the same way), over TLS verified by the client."""
    pytest.importorskip("gunicorn")
    from test_gunicorn import Gunicorn

    shutil.copy(APP_FILE, tmp_path / "app.py")
    g = Gunicorn(tmp_path, ["-k", "greenhttps.gunicorn.Worker", "-w", "2", "--certfile", server_cert_files["cert"],
                            "--keyfile", server_cert_files["key"]], tls=True)
    try:
        g.port = int(g.wait_for(r"Listening at: https://127\.0\.0\.1:(\d+)")[0])
        g.wait_for(r"greenhttps worker serving", 2, timeout=20)
        for offset in (0, 40):
            sock = raw_connect(g.port, tls=True, ssl_context=client_ssl_context, timeout=10)
            try:
                sock.sendall(get(f"/?offset={offset}"))
                resp = read_response(sock, timeout=10)
            finally:
                sock.close()
            assert resp.status == 200
            assert json.loads(resp.body) == expected(django_app, offset)
    finally:
        g.stop()
