"""EventEmitter: Node's listener API, run synchronously in the emitting greenlet.

Listeners may block cooperatively; that is the point of the library (blocking code,
callback concurrency).  The one rule Node adds on top of "call every listener" is
that an ``'error'`` nobody listens to must not vanish: :meth:`EventEmitter.emit`
returns False for it, and the object decides whether someone is waiting to have it
raised (``getresponse()``) or whether it is logged on the ``greenhttps`` logger.
"""

from __future__ import annotations

import logging
from typing import Any, Callable

__all__ = ["EventEmitter", "logger"]

logger = logging.getLogger("greenhttps")

Listener = Callable[..., Any]


class _Once:
    """Wraps a listener so it removes itself before its first call."""

    __slots__ = ("emitter", "event", "listener", "fired")

    def __init__(self, emitter: EventEmitter, event: str, listener: Listener) -> None:
        self.emitter, self.event, self.listener = emitter, event, listener
        self.fired = False

    def __call__(self, *args: Any) -> Any:
        # An emit snapshots its listeners, so a nested emit of the same event (from an
        # earlier listener) can reach this wrapper after it fired: call it once only,
        # as Node's onceWrapper does.
        if self.fired:
            return None
        self.fired = True
        self.emitter.remove_listener(self.event, self)
        return self.listener(*args)


def _unwrap(listener: Listener) -> Listener:
    return listener.listener if isinstance(listener, _Once) else listener


class EventEmitter:
    """Node's ``events.EventEmitter`` (the subset HTTP objects use)."""

    # Created lazily: most requests and responses never get a listener, and the
    # per-request hot path should not pay for an empty dict each.
    _listeners: dict[str, list[Listener]] | None = None

    def on(self, event: str, listener: Listener | None = None) -> Any:
        """Add ``listener`` for ``event``; returns self (chainable, as Node).

        Used bare as a decorator (``@server.on('request')``) it returns the function.
        """
        if listener is None:
            def decorator(fn: Listener) -> Listener:
                self.on(event, fn)
                return fn
            return decorator
        if self._listeners is None:
            self._listeners = {}
        self._listeners.setdefault(event, []).append(listener)
        return self

    def once(self, event: str, listener: Listener | None = None) -> Any:
        """Add ``listener`` for the next ``event`` only (a decorator when bare, as ``on``)."""
        if listener is None:
            def decorator(fn: Listener) -> Listener:
                self.once(event, fn)
                return fn
            return decorator
        return self.on(event, _Once(self, event, listener))

    def prepend_listener(self, event: str, listener: Listener) -> EventEmitter:
        """Add ``listener`` before the others of ``event``."""
        if self._listeners is None:
            self._listeners = {}
        self._listeners.setdefault(event, []).insert(0, listener)
        return self

    def remove_listener(self, event: str, listener: Listener) -> EventEmitter:
        """Remove one registration of ``listener`` (or of a ``once`` wrapping it) from ``event``.

        As Node, the most recently added one goes when it was added several times.
        """
        listeners = (self._listeners or {}).get(event)
        if listeners:
            for i in range(len(listeners) - 1, -1, -1):
                registered = listeners[i]
                if registered is listener or _unwrap(registered) is listener:
                    del listeners[i]
                    break
            if not listeners:
                del self._listeners[event]  # type: ignore[union-attr]
        return self

    off = remove_listener

    def remove_all_listeners(self, event: str | None = None) -> EventEmitter:
        """Remove every listener of ``event``, or of all events when None."""
        if self._listeners is not None:
            if event is None:
                self._listeners.clear()
            else:
                self._listeners.pop(event, None)
        return self

    def listeners(self, event: str) -> list[Listener]:
        """A copy of the listeners of ``event``, in call order (``once`` ones unwrapped)."""
        return [_unwrap(fn) for fn in (self._listeners or {}).get(event, ())]

    def listener_count(self, event: str) -> int:
        """How many listeners ``event`` has."""
        return len((self._listeners or {}).get(event, ()))

    def has_listeners(self, event: str) -> bool:
        """Whether ``event`` has any listener."""
        return bool(self._listeners and event in self._listeners)

    def emit(self, event: str, *args: Any) -> bool:
        """Call each listener of ``event`` in order with ``args``; True if there was any.

        A listener's exception propagates to the caller (Node's ``emit()`` too).
        """
        if not self._listeners:
            return False
        listeners = self._listeners.get(event)
        if not listeners:
            return False
        for listener in tuple(listeners):  # a listener may remove itself
            listener(*args)
        return True

    def emit_error(self, err: BaseException) -> None:
        """Emit ``err`` as ``'error'``; with no listener, log it rather than lose it.

        Unlike Node, an unhandled ``'error'`` is never raised (it would kill the greenlet).
        """
        if not self.emit("error", err):
            logger.error("unhandled 'error' on %r: %s", self, err, exc_info=err)

    # Node's camelCase spellings.
    addListener = on
    removeListener = remove_listener
    removeAllListeners = remove_all_listeners
    listenerCount = listener_count
    prependListener = prepend_listener
