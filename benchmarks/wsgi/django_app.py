"""A real Django application in one file: the ORM reading a sqlite database.

``app`` is the WSGI application (``django_app:app`` for gunicorn).  Importing the
module configures Django in code (no settings module), creates a sqlite database in
a temporary directory of its own (removed at exit), creates the table of the model
:class:`Item` with the schema editor and fills it with :data:`ROWS` rows.  One view,
``/``, reads :data:`PAGE` rows through the ORM (a filtered, ordered query) and
answers them as JSON; ``/?offset=N`` pages on.  It runs the request/response cycle
of a production Django: the middleware stack of ``startproject`` minus the parts
that need sessions and users, URL resolution, a database connection opened for the
request and closed at its end (``CONN_MAX_AGE`` 0, Django's default).

Every process that imports it has its own database (a gunicorn worker too): the
rows are made the same way, so every one of them answers the same.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
from pathlib import Path

import django
from django.conf import settings

#: Rows in the table, and rows the view returns.
ROWS = 300
PAGE = 20

_DIR = Path(tempfile.mkdtemp(prefix="greenhttps-django-"))
atexit.register(shutil.rmtree, _DIR, ignore_errors=True)

if not settings.configured:
    settings.configure(
        DEBUG=False,
        SECRET_KEY="greenhttps-benchmark-only-not-a-secret",
        ALLOWED_HOSTS=["*"],
        ROOT_URLCONF=__name__,
        DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": str(_DIR / "db.sqlite3")}},
        INSTALLED_APPS=[],
        MIDDLEWARE=[
            "django.middleware.security.SecurityMiddleware",
            "django.middleware.common.CommonMiddleware",
            "django.middleware.clickjacking.XFrameOptionsMiddleware",
        ],
        USE_TZ=True,
        DEFAULT_AUTO_FIELD="django.db.models.AutoField",
        LOGGING_CONFIG=None,
    )
    django.setup()

from django.core.wsgi import get_wsgi_application  # noqa: E402  (after settings)
from django.db import connection, models  # noqa: E402
from django.http import HttpRequest, JsonResponse  # noqa: E402
from django.urls import path  # noqa: E402


class Item(models.Model):
    """One row of the catalogue the view reads."""

    name = models.CharField(max_length=64)
    price_cents = models.IntegerField()
    in_stock = models.BooleanField(default=True)

    class Meta:
        app_label = "greenhttps_bench"  # no installed app: the table is made below
        ordering = ["id"]


def _create_rows() -> None:
    with connection.schema_editor() as editor:
        editor.create_model(Item)
    Item.objects.bulk_create(
        Item(name=f"item {n:03d}", price_cents=100 + 7 * n % 900, in_stock=n % 5 != 0) for n in range(ROWS)
    )
    connection.close()  # each request opens its own, as Django does


_create_rows()


def items(request: HttpRequest) -> JsonResponse:
    """``PAGE`` items in stock from ``?offset=`` on, through the ORM."""
    try:
        offset = max(0, int(request.GET.get("offset", "0")))
    except ValueError:
        offset = 0
    rows = Item.objects.filter(in_stock=True).values("id", "name", "price_cents")[offset:offset + PAGE]
    return JsonResponse({"items": list(rows), "total": Item.objects.count()})


urlpatterns = [path("", items)]

app = get_wsgi_application()
