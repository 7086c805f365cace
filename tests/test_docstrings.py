"""Every public name has a docstring that says what it is, its arguments, and its Node twin.

Public names: ``__all__`` of ``greenhttps``, ``greenhttps.http``, ``greenhttps.errors`` and
``greenhttps.wsgi``, ``greenhttps.gunicorn.Worker``, and the public methods and properties
of those classes that greenhttps defines (inherited ones from a greenhttps base class
included; ones inherited from the stdlib, gunicorn or ``object`` are not ours to document).

What is checked, per name:

* a non-empty docstring (a plain value, which cannot carry one, needs a ``#:`` doc
  comment above its assignment instead, the Sphinx convention);
* each parameter (but ``self``/``cls``) is named in the docstring, by its snake_case or
  Node camelCase spelling; ``*args``/``**kwargs`` may be described as "arguments" or
  "options" instead;
* a time parameter (``msecs``, ``timeout``...) states its unit;
* a name that mirrors a Node API mentions "Node" in its own docstring or its class's.

camelCase aliases made by ``node_aliases``/``attribute_aliases`` (or ``createServer =
create_server``) are the same objects as, or thin forwards to, a documented name and are
skipped.  Justified exemptions are in :data:`EXEMPT`.
"""

from __future__ import annotations

import inspect
import pathlib
import re
from types import ModuleType
from typing import Any, Iterator

import pytest

import greenhttps
import greenhttps.errors
import greenhttps.http
import greenhttps.wsgi
from greenhttps._options import camel_case

pytestmark = pytest.mark.timeout(20)

MODULES: list[ModuleType] = [greenhttps, greenhttps.http, greenhttps.errors, greenhttps.wsgi]

#: Names that need no docstring of their own, each with the reason.
EXEMPT: dict[str, str] = {}

#: Classes the library constructs for the user (Node's are not constructed by users either:
#: ``request()`` makes the ClientRequest, the server the IncomingMessage/ServerResponse and
#: Socket, the WSGI handler the Input): their ``__init__`` parameters are internal wiring.
INTERNAL_CONSTRUCTORS = {"ClientRequest", "IncomingMessage", "ServerResponse", "Socket", "Input"}

#: Classes that are not Node APIs (Python integrations): no "Node" mention needed.
NOT_NODE_CLASSES = {"WSGIHandler", "FileWrapper", "Input", "Worker"}

#: Functions that are Python-only (no Node counterpart): no "Node" mention needed.
NOT_NODE_FUNCTIONS = {"greenhttps.errors.from_os_error"}

#: Parameter names that carry a time, and the words that state a unit.
_TIME_PARAMS = re.compile(r"^(msecs|timeout|initial_delay|.*_timeout|.*_msecs)$")
_UNIT = re.compile(r"millisecond|\bms\b|second", re.IGNORECASE)

_ALIAS_DOC = re.compile(r"^(Alias of|Node's spelling of) ``\w+``\.$")


def _public_classes() -> dict[str, type]:
    classes: dict[str, type] = {}
    for module in MODULES:
        for name in module.__all__:
            value = getattr(module, name)
            if inspect.isclass(value):
                classes.setdefault(f"{module.__name__}.{name}", value)
    gunicorn = pytest.importorskip("greenhttps.gunicorn")
    classes["greenhttps.gunicorn.Worker"] = gunicorn.Worker
    return classes


def _is_alias(cls: type, name: str, value: Any) -> bool:
    """True for a camelCase alias of a snake_case attribute (the same object or a forward)."""
    if isinstance(value, property) and value.__doc__ and _ALIAS_DOC.match(value.__doc__):
        return True
    if "_" in name or name == name.lower():
        return False  # not a camelCase spelling
    for snake in dir(cls):
        if camel_case(snake) == name and snake != name:
            return inspect.getattr_static(cls, snake) is value
    return False


def _members(cls: type) -> Iterator[tuple[str, type, Any]]:
    """(name, defining class, raw attribute) for each public method/property greenhttps defines."""
    seen: set[str] = set()
    for klass in cls.__mro__:
        for name, value in vars(klass).items():
            if name in seen:
                continue
            seen.add(name)
            if name.startswith("_") or not klass.__module__.startswith("greenhttps"):
                continue
            if not isinstance(value, (property, staticmethod, classmethod)) and not inspect.isfunction(value):
                continue  # plain class values (``secure = True``, ``code = ...``)
            if _is_alias(cls, name, value):
                continue
            yield name, klass, value


def _targets() -> list[tuple[str, Any, type | None]]:
    """(qualified name, object, owning class or None) for every public name."""
    out: list[tuple[str, Any, type | None]] = []
    seen: set[int] = set()
    for module in MODULES:
        for name in module.__all__:
            value = getattr(module, name)
            qualified = f"{module.__name__}.{name}"
            # Module-level camelCase aliases (createServer = create_server) are the same object.
            if any(other != name and getattr(module, other) is value and camel_case(other) == name
                   for other in module.__all__):
                continue
            out.append((qualified, value, None))
    for qualified, cls in _public_classes().items():
        for name, klass, value in _members(cls):
            key = id(value)
            if key in seen:
                continue  # the same method reached through another public class
            seen.add(key)
            out.append((f"{klass.__module__}.{klass.__qualname__}.{name}", value, klass))
    return out


TARGETS = _targets()
_IDS = [qualified for qualified, _, _ in TARGETS]


def _doc(value: Any) -> str:
    if isinstance(value, property):
        return (value.__doc__ or "").strip()
    if isinstance(value, (staticmethod, classmethod)):
        value = value.__func__
    return (getattr(value, "__doc__", None) or "").strip()


def _doc_comment(source: str, name: str) -> bool:
    """True when ``name = ...`` (or a bare ``name: T`` declaration) in ``source`` has a
    ``#:`` comment line right above it."""
    lines = source.splitlines()
    pattern = re.compile(rf"^\s*{re.escape(name)}\s*(:[^=]*)?(=|$)")
    for index, line in enumerate(lines):
        if pattern.match(line) and index and lines[index - 1].strip().startswith("#:"):
            return True
    return False


def _package_sources() -> str:
    root = pathlib.Path(greenhttps.__file__).parent
    return "\n".join(path.read_text() for path in sorted(root.glob("*.py")))


@pytest.mark.parametrize(("qualified", "value", "owner"), TARGETS, ids=_IDS)
def test_has_docstring(qualified: str, value: Any, owner: type | None) -> None:
    if qualified in EXEMPT:
        pytest.skip(EXEMPT[qualified])
    name = qualified.rsplit(".", 1)[1]
    if isinstance(value, ModuleType):
        assert (value.__doc__ or "").strip(), f"module {qualified} has no docstring"
        return
    if isinstance(value, property) and value.fget is not None and value.fget.__name__ == "<lambda>":
        # ``connection = property(lambda self: self.socket)``: documented by a ``#:`` comment.
        source = pathlib.Path(value.fget.__code__.co_filename).read_text()
        assert _doc_comment(source, name), \
            f"{qualified}: a lambda property needs a '#:' doc comment above it"
        return
    if not (callable(value) or isinstance(value, (property, staticmethod, classmethod))):
        assert _doc_comment(_package_sources(), name), f"{qualified}: a value needs a '#:' doc comment"
        return
    assert _doc(value), f"{qualified} has no docstring"


def _signature_params(value: Any) -> list[inspect.Parameter]:
    func = value.__func__ if isinstance(value, (staticmethod, classmethod)) else value
    if inspect.isclass(func):
        # A constructor is checked where it is defined (Error's, not again per subclass).
        if func.__name__ in INTERNAL_CONSTRUCTORS or "__init__" not in vars(func):
            return []
        func = func.__init__
    if not inspect.isfunction(func):
        return []
    params = list(inspect.signature(func).parameters.values())
    return [p for p in params if p.name not in ("self", "cls")]


_CALLABLE_TARGETS = [t for t in TARGETS if not isinstance(t[1], (property, ModuleType)) and callable(t[1])]


@pytest.mark.parametrize(("qualified", "value", "owner"), _CALLABLE_TARGETS,
                         ids=[t[0] for t in _CALLABLE_TARGETS])
def test_docstring_names_parameters(qualified: str, value: Any, owner: type | None) -> None:
    if qualified in EXEMPT:
        pytest.skip(EXEMPT[qualified])
    doc = _doc(value)
    if inspect.isclass(value):
        doc += "\n" + (value.__init__.__doc__ or "")
    missing = []
    for param in _signature_params(value):
        spellings = {param.name, camel_case(param.name)}
        if param.kind is inspect.Parameter.VAR_POSITIONAL:
            spellings |= {"arguments", "args"}
        elif param.kind is inspect.Parameter.VAR_KEYWORD:
            spellings |= {"options", "keyword", "kwargs"}
        if not any(re.search(rf"\b{re.escape(word)}\b", doc) for word in spellings):
            missing.append(param.name)
        elif _TIME_PARAMS.match(param.name) and not _UNIT.search(doc):
            missing.append(f"{param.name} (its unit)")
    assert not missing, f"{qualified}: docstring does not describe {missing}"


def _is_node_api(qualified: str, value: Any, owner: type | None) -> bool:
    if qualified in NOT_NODE_FUNCTIONS:
        return False
    cls = owner if owner is not None else (value if inspect.isclass(value) else None)
    if cls is not None:
        return not any(k.__name__ in NOT_NODE_CLASSES for k in cls.__mro__)
    return callable(value) and not isinstance(value, ModuleType)


_NODE_TARGETS = [t for t in TARGETS if _is_node_api(*t)]


@pytest.mark.parametrize(("qualified", "value", "owner"), _NODE_TARGETS, ids=[t[0] for t in _NODE_TARGETS])
def test_node_counterpart_is_named(qualified: str, value: Any, owner: type | None) -> None:
    if qualified in EXEMPT:
        pytest.skip(EXEMPT[qualified])
    docs = _doc(value) + (inspect.getdoc(owner) or "" if owner is not None else "")
    assert "Node" in docs, f"{qualified}: neither it nor its class mentions its Node counterpart"


def test_walk_covers_the_public_classes() -> None:
    """The walk is not vacuous: it reaches the methods people call most."""
    names = set(_IDS)
    for expected in (
        "greenhttps.Server.set_timeout",
        "greenhttps.ServerResponse.write_head",
        "greenhttps._outgoing.OutgoingMessage.set_header",
        "greenhttps.ClientRequest.getresponse",
        "greenhttps.IncomingMessage.read",
        "greenhttps.Socket.set_no_delay",
        "greenhttps.Agent.get_name",
        "greenhttps._events.EventEmitter.on",
        "greenhttps.wsgi.WSGIHandler.serve",
        "greenhttps.gunicorn.Worker.run",
        "greenhttps.errors.from_os_error",
        "greenhttps.errors.TimeoutError",
    ):
        assert expected in names, expected
    assert not any(name.endswith((".setTimeout", ".writeHead", ".createServer")) for name in names)
