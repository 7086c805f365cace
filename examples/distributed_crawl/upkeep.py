"""What each worker does besides tasks, so that a killed worker loses no page.

Late acknowledgement leaves a killed worker's tasks with the broker, as
"unacknowledged"; two gaps remain with Celery on Redis, and each worker closes them:

1. **Returning unacknowledged tasks.**  kombu's Redis transport puts a task whose
   visibility timeout has passed back in the queue from its event loop (prefork,
   solo, threads pools).  A gevent worker has no such loop -- Celery runs its
   blocking loop -- and there kombu does it only when a worker starts
   (celery/celery#4976): with gevent workers only, a killed worker's tasks would
   wait for some worker to restart.  So every worker calls kombu's
   ``restore_visible`` every ``visibility_timeout / 4`` seconds (kombu's lock in
   Redis keeps two workers from returning the same task).

2. **Tasks in no queue at all.**  The transport takes a task from the queue
   (BRPOP) before it records it as unacknowledged: a worker killed between the
   two, or with a task still in its socket buffer, loses that task.  The frontier
   knows the page, though: claimed (in ``seen``) but not recorded.  When the
   broker holds no task -- none queued, none unacknowledged -- twice in a row
   while a crawl has pages pending, those pages are in no queue, and they are
   enqueued again.  (A duplicate costs little: a task returns at once when its
   URL is recorded already.)
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from celery import signals

from .app import VISIBILITY_TIMEOUT, app
from .tasks import crawl, frontier

log = logging.getLogger(__name__)

#: Seconds between two rounds of upkeep.
EVERY = max(1.0, VISIBILITY_TIMEOUT / 4)
#: The set of crawls with pages pending (``seed`` adds a crawl, upkeep removes it).
ACTIVE = "crawl:active"
_LOCK = "crawl:upkeep-lock"


def broker_idle(conn: Any) -> bool:
    """No task queued and none delivered but unacknowledged, on this broker."""
    channel = conn.default_channel
    queue = app.conf.task_default_queue
    waiting = channel.queue_declare(queue=queue).message_count  # (Redis: no-op, and its length)
    return waiting == 0 and channel.client.hlen(channel.unacked_key) == 0


def requeue_lost(idle_before: bool, idle_now: bool) -> int:
    """Enqueues again the pages of active crawls that are in no queue (see 2.);
    drops finished crawls from :data:`ACTIVE`.  Returns how many it enqueued."""
    client = frontier("-").client
    requeued = 0
    for raw in client.smembers(ACTIVE):
        front = frontier(raw.decode())
        lost = front.unrecorded()
        if not lost:
            client.srem(ACTIVE, raw)
        elif idle_before and idle_now:
            log.warning("crawl %s: %d pages in no queue; enqueueing them again",
                        front.crawl_id, len(lost))
            with app.producer_or_acquire() as producer:
                for url in lost:
                    crawl.apply_async((front.crawl_id, url), producer=producer)
            requeued += len(lost)
    return requeued


def upkeep_forever() -> None:
    idle_before = False
    while True:
        time.sleep(EVERY)
        try:
            with app.connection_for_write() as conn:
                channel = conn.default_channel
                channel.qos.restore_visible(num=channel.unacked_restore_limit, interval=1)
                idle_now = broker_idle(conn)
            # One worker at a time looks for lost pages (the lock expires by itself).
            client = frontier("-").client
            if client.set(_LOCK, "1", nx=True, ex=max(1, int(EVERY))):
                requeue_lost(idle_before, idle_now)
            idle_before = idle_now
        except Exception:  # the broker is down, say: the next round tries again
            log.exception("worker upkeep failed")


@signals.worker_ready.connect
def start_upkeep(sender: Any = None, **_: Any) -> None:
    # Under the gevent pool threading is patched and this "thread" is a greenlet.
    threading.Thread(target=upkeep_forever, name="crawl-upkeep", daemon=True).start()
