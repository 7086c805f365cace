"""The retry policy of ``fetch()``: which failures earn another try, and how long to wait.

Pure: it decides, the caller sends and sleeps.  ``Retry.delay(n)`` is exponential
backoff with jitter, ``Retry.retry_after(value)`` reads a ``Retry-After`` (RFC 9110
§10.2.3: seconds or an HTTP date) and refuses one longer than the policy's bound.
Durations are milliseconds, as everywhere in greenhttps, or ``datetime.timedelta``
(:func:`duration_ms`).
"""

from __future__ import annotations

import dataclasses
import datetime
import email.utils
import random
from typing import Any

from . import errors

__all__ = ["IDEMPOTENT_METHODS", "Retry", "duration_ms"]

#: RFC 9110 §9.2.2.
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})


def duration_ms(value: Any, name: str) -> float | None:
    """A duration in milliseconds: a number of ms or a ``datetime.timedelta``; None stays None."""
    if value is None:
        return None
    if isinstance(value, datetime.timedelta):
        value = value.total_seconds() * 1000.0
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
        raise errors.InvalidArgumentError(
            f"{name} must be a number of milliseconds >= 0 or a timedelta, not {value!r}", "ERR_INVALID_ARG_VALUE"
        )
    return float(value)


@dataclasses.dataclass(frozen=True)
class Retry:
    """How ``fetch(..., retry=...)`` tries again; ``retry=N`` is ``Retry(total=N)``.
    (Node's fetch does not retry; undici's ``RetryAgent`` is the nearest thing.)

    ``total``: attempts after the first.  What is retried: a connection refused
    (ECONNREFUSED), reset or closed before any response byte (ECONNRESET), and a
    response whose status is in ``statuses`` (429 and 503); only for ``methods``
    (the idempotent ones: GET, HEAD, OPTIONS, TRACE, PUT, DELETE -- name POST here
    to retry it) and only while the body can be sent again.  The wait before retry
    *n* (from 0) is ``backoff * 2**n`` milliseconds, at most ``max_backoff``, with
    jitter (a uniform draw from its upper half); a ``Retry-After`` (seconds or an
    HTTP date) replaces it, and one longer than ``max_retry_after`` milliseconds is
    not waited for: the 429/503 is returned as it is.  Timeouts are not retried
    (the server may be working on the request), nor is anything past the fetch's
    ``deadline``.  Times are milliseconds (or ``datetime.timedelta``).
    """

    total: int = 0
    backoff: float | datetime.timedelta = 100.0
    max_backoff: float | datetime.timedelta = 10_000.0
    max_retry_after: float | datetime.timedelta = 60_000.0
    statuses: frozenset[int] = frozenset({429, 503})
    methods: frozenset[str] = IDEMPOTENT_METHODS

    @classmethod
    def of(cls, retry: int | Retry | None) -> Retry:
        """``retry`` as a policy: an int is ``Retry(total=retry)``; None is no retry."""
        if retry is None:
            return cls()
        if isinstance(retry, Retry):
            return retry
        if isinstance(retry, bool) or not isinstance(retry, int) or retry < 0:
            raise errors.InvalidArgumentError(f"retry must be an int >= 0 or a Retry, not {retry!r}")
        return cls(total=retry)

    def allows(self, method: str) -> bool:
        """True if requests with ``method`` may be sent again under this policy."""
        return method.upper() in {m.upper() for m in self.methods}

    def delay(self, attempt: int) -> float:
        """Seconds to wait before retry number ``attempt`` (0 for the first)."""
        base = duration_ms(self.backoff, "backoff") or 0.0
        cap = duration_ms(self.max_backoff, "max_backoff") or 0.0
        wait = min(cap, base * 2**attempt)
        return random.uniform(wait / 2, wait) / 1000.0

    def retry_after(self, value: Any) -> float | None:
        """Seconds a ``Retry-After`` value asks for (0 for a past date), or None if it
        is missing, unreadable, or longer than ``max_retry_after``: then the caller
        gives up rather than wait."""
        if not isinstance(value, str) or not value.strip():
            return None
        value = value.strip()
        if value.isdigit():
            seconds = float(value)
        else:
            try:
                when = email.utils.parsedate_to_datetime(value)
            except (TypeError, ValueError):
                return None
            if when.tzinfo is None:
                when = when.replace(tzinfo=datetime.timezone.utc)
            seconds = max(0.0, (when - datetime.datetime.now(datetime.timezone.utc)).total_seconds())
        bound = duration_ms(self.max_retry_after, "max_retry_after") or 0.0
        return seconds if seconds * 1000.0 <= bound else None


# The public name lives in the package face (reprs, help(), pickle).
Retry.__module__ = "greenhttps"
