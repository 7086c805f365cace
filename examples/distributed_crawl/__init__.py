"""A distributed crawl: Celery workers on a gevent pool, a Redis frontier, greenhttps
fetching.  ``celery -A distributed_crawl worker -P gevent -c 500`` (run from
``examples/``) starts a worker; ``python -m distributed_crawl seed URL...`` starts a
crawl and ``python -m distributed_crawl report --wait`` follows it.  See the
README's "Beyond one machine".

Modules: :mod:`.app` (the Celery app and its settings), :mod:`.tasks` (the task,
the shared Agent, link extraction), :mod:`.frontier` (the Redis keys and scripts),
:mod:`.site` (a local site to crawl), ``__main__`` (the commands).
"""

from .app import app

__all__ = ["app"]
