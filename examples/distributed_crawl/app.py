"""The Celery application: broker, result backend and the settings that make
tasks survive a worker dying.  Everything comes from the environment:

``CELERY_BROKER_URL``        the broker (default ``redis://127.0.0.1:6379/0``)
``CELERY_RESULT_BACKEND``    the result backend (default: the broker's URL)
``CRAWL_REDIS_URL``          where the frontier and results live (default: the broker's URL)
``CRAWL_VISIBILITY_TIMEOUT`` seconds before Redis hands an unacknowledged task to
                             another worker (default 600; see "Tasks survive a worker dying")
``CRAWL_MAX_SOCKETS``        connections per origin per worker (default 6)
``CRAWL_PACE_MS``            least milliseconds between two request starts to one origin,
                             per worker (``Agent(pace=)``; default 0: none)
``CRAWL_CA_FILE``            a PEM file of CAs to trust instead of the default roots
``CRAWL_TIMEOUT_MS``         the deadline of one fetch, redirects included (default 30000)
``CRAWL_REDIS_CONNECTIONS``  Redis connections per worker for the frontier (default 50)
``CRAWL_BROKER_CONNECTIONS`` the most broker connections one worker opens (default 1000)

Tasks survive a worker dying: ``acks_late`` acknowledges a task only once it has
returned, so the broker still holds a task whose worker was killed mid-fetch;
after ``visibility_timeout`` seconds the Redis transport gives it to another
worker (``task_reject_on_worker_lost`` does the same at once for a prefork child
that dies, the worker itself surviving).  The visibility timeout must be longer
than any task can wait in a live worker (prefetched, then fetching): a task still
unacknowledged after it is delivered again, a duplicate.  The prefetch multiplier
of 1 keeps that wait short: a worker holds at most its concurrency in tasks.
"""

from __future__ import annotations

import os

from celery import Celery

BROKER_URL = os.environ.get("CELERY_BROKER_URL", "redis://127.0.0.1:6379/0")
RESULT_BACKEND = os.environ.get("CELERY_RESULT_BACKEND", BROKER_URL)
VISIBILITY_TIMEOUT = float(os.environ.get("CRAWL_VISIBILITY_TIMEOUT", "600"))
BROKER_CONNECTIONS = int(os.environ.get("CRAWL_BROKER_CONNECTIONS", "1000"))

app = Celery("distributed_crawl", broker=BROKER_URL, backend=RESULT_BACKEND)
app.conf.update(
    task_default_queue="crawl",
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    # Late acknowledgement: a task a worker took but did not finish is delivered again.
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    # A worker reserves no more than it runs: a prefetched task waiting behind 500
    # others would count against the visibility timeout.
    worker_prefetch_multiplier=1,
    broker_transport_options={
        "visibility_timeout": VISIBILITY_TIMEOUT,
        # Look for timed-out tasks on every idle poll, not every tenth, so that a dead
        # worker's tasks come back about visibility_timeout after it died.
        "unacked_restore_throttle": 1,
        "unacked_restore_interval": max(1, int(VISIBILITY_TIMEOUT / 4)),
        # kombu's Redis connection pool does not block when it is empty: it raises, and
        # a task whose acknowledgement failed that way runs again after the visibility
        # timeout.  With 500 greenlets acknowledging at once, 10 (the default) is too
        # few; connections are opened only as they are needed.
        "max_connections": BROKER_CONNECTIONS,
    },
    result_backend_transport_options={"visibility_timeout": VISIBILITY_TIMEOUT},
    result_expires=3600,
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
)

# Registers the task and the workers' upkeep with the app (a worker started with
# ``-A distributed_crawl`` imports the package, which imports this module).
from . import tasks, upkeep  # noqa: E402,F401
