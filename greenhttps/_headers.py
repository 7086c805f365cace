"""Header rules: what may be sent, and the shapes Node gives received headers.

Outgoing names must be RFC 9110 tokens and values may not hold CR, LF, NUL or other
control characters, nor anything outside latin-1 (Node's ``ERR_INVALID_HTTP_TOKEN``
and ``ERR_INVALID_CHAR``); both are checked when the header is set, so nothing
malformed can reach the wire.

Incoming headers become Node's ``message.headers`` dict: lowercase names;
``set-cookie`` always a list; repeated ``cookie`` joined with ``'; '``; repeats of
the single-valued headers below keep the first; any other repeat joined with ``', '``.
That dict is a :class:`Headers`: a ``dict`` (so it iterates, prints, compares and
serialises as Node's plain object does) whose lookups ignore case.  ``fetch()``'s
``Response.headers`` is one too, built with Fetch's rule instead (every repeat
joined with ``', '``, ``Set-Cookie`` too): one class, two merge rules.
"""

from __future__ import annotations

import re
from collections.abc import Mapping  # isinstance() with it: typing's alias checks ~10x slower
from typing import Any, Dict, Iterable, Union

from .errors import InvalidArgumentError

__all__ = [
    "Headers",
    "HeaderValue",
    "OutgoingHeaders",
    "check_name",
    "check_value",
    "node_headers",
    "raw_list",
]

HeaderValue = Union[str, int, float, bytes, "list[str | int | bytes]", "tuple[str | int | bytes, ...]"]

_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+\Z")
_INVALID_VALUE_CHAR = re.compile(r"[^\t\x20-\x7e\x80-\xff]")

# Node's lib/_http_incoming.js matchKnownFields: these keep their first value.
_SINGLE_VALUED = frozenset(
    {
        "age",
        "authorization",
        "content-length",
        "content-type",
        "etag",
        "expires",
        "from",
        "host",
        "if-modified-since",
        "if-unmodified-since",
        "last-modified",
        "location",
        "max-forwards",
        "proxy-authorization",
        "referer",
        "retry-after",
        "server",
        "user-agent",
    }
)


def check_name(name: object) -> str:
    """Return ``name`` if it is a valid field name, else raise ERR_INVALID_HTTP_TOKEN."""
    if not isinstance(name, str) or not _TOKEN.match(name):
        raise InvalidArgumentError(f"Header name must be a valid HTTP token [{name!r}]", "ERR_INVALID_HTTP_TOKEN")
    return name


def _value_str(name: str, value: object) -> str:
    if isinstance(value, str):
        text = value
    elif isinstance(value, bytes):
        text = value.decode("latin-1")
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        text = str(value)
    else:
        raise InvalidArgumentError(
            f'Invalid value "{value!r}" for header "{name}"', "ERR_HTTP_INVALID_HEADER_VALUE"
        )
    if _INVALID_VALUE_CHAR.search(text):
        raise InvalidArgumentError(f'Invalid character in header content ["{name}"]', "ERR_INVALID_CHAR")
    return text


def check_value(name: str, value: object) -> str | list[str]:
    """Normalise a header value to ``str`` (or a list of them, one line each)."""
    if isinstance(value, (list, tuple)):
        return [_value_str(name, item) for item in value]
    return _value_str(name, value)


#: (name, value) fields already encoded for the wire -> their bytes: most fields of
#: most messages recur (Connection: keep-alive, Host, this second's Date...), and a
#: lookup costs half of two encode() calls.  Bounded: short fields only, and it
#: starts over when full (a peer's or handler's ever-new values just miss).
_ENCODED: dict[tuple[str, str | list[str]], tuple[bytes, bytes]] = {}
_ENCODED_MAX = 512
_ENCODED_FIELD_MAX = 128
#: Fields never kept in _ENCODED: credentials do not outlive their message in a
#: module-wide table.
_SECRET_FIELDS = frozenset({"authorization", "proxy-authorization", "cookie", "set-cookie"})


#: (name, value) str fields that passed check_name()/check_value() (which return a
#: str value unchanged): a client sends the same few fields on every request
#: (fetch()'s User-Agent, Accept, Accept-Encoding), and a set lookup is cheaper than
#: three Python calls and two regex searches.  Bounded as _ENCODED (short fields, no
#: credentials); starts over when full.
_CHECKED: set[tuple[str, str]] = set()


class OutgoingHeaders:
    """The headers of a message not yet sent: case-insensitive, order kept.

    Stored as Node's ``kOutHeaders``: lowercase name -> (name as given, value).
    """

    __slots__ = ("_fields",)

    def __init__(self) -> None:
        self._fields: dict[str, tuple[str, str | list[str]]] = {}

    def set(self, name: str, value: object) -> None:
        if type(value) is str and type(name) is str:
            field = (name, value)
            if field not in _CHECKED:
                check_name(name)
                _value_str(name, value)
                if len(name) + len(value) <= _ENCODED_FIELD_MAX and name.lower() not in _SECRET_FIELDS:
                    if len(_CHECKED) >= _ENCODED_MAX:
                        _CHECKED.clear()
                    _CHECKED.add(field)
            self._fields[name.lower()] = field
            return
        check_name(name)
        self._fields[name.lower()] = (name, check_value(name, value))

    def set_default(self, lname: str, name: str, value: str) -> None:
        """Set an automatic header (no validation: ours are valid) unless present."""
        if lname not in self._fields:
            self._fields[lname] = (name, value)

    def get(self, name: str) -> str | list[str] | None:
        field = self._fields.get(name.lower())
        return field[1] if field else None

    def value(self, lname: str) -> str | list[str] | None:
        """:meth:`get` for a name already in lowercase (the framing decision's lookups)."""
        field = self._fields.get(lname)
        return field[1] if field else None

    def remove(self, name: str) -> None:
        self._fields.pop(name.lower(), None)

    def __contains__(self, lname: str) -> bool:
        return lname in self._fields

    def names(self) -> list[str]:
        return [field[0] for field in self._fields.values()]

    def as_dict(self) -> dict[str, str | list[str]]:
        return {lname: field[1] for lname, field in self._fields.items()}

    def update(self, headers: Mapping[str, object] | Iterable[tuple[str, object]]) -> None:
        # A dict, the usual case, without the Mapping ABC's isinstance (a Python call).
        if type(headers) is dict:
            # A field checked before (fetch()'s defaults, on every request) is stored
            # as set() would store it, without the call.
            fields = self._fields
            for field in headers.items():
                name, value = field
                if type(name) is str and type(value) is str and field in _CHECKED:
                    fields[name.lower()] = field
                else:
                    self.set(name, value)
            return
        items = headers.items() if isinstance(headers, Mapping) else headers
        for name, value in items:
            self.set(name, value)

    def pairs(self) -> list[tuple[bytes, bytes]]:
        """The wire form: one (name, value) pair per line, a list value repeating."""
        out: list[tuple[bytes, bytes]] = []
        encoded = _ENCODED
        for field in self._fields.values():
            value = field[1]
            if type(value) is str:  # the usual case first: one line
                pair = encoded.get(field)
                if pair is None:
                    name = field[0]
                    pair = (name.encode("latin-1"), value.encode("latin-1"))
                    if len(name) + len(value) <= _ENCODED_FIELD_MAX and name.lower() not in _SECRET_FIELDS:
                        if len(encoded) >= _ENCODED_MAX:
                            encoded.clear()
                        encoded[field] = pair
                out.append(pair)
                continue
            name = field[0]
            bname = name.encode("latin-1")
            if isinstance(value, list):
                if len(value) > 1 and name.lower() == "cookie":
                    # Node's processHeader: a Cookie list is one line joined with
                    # '; ' (RFC 6265 §5.4: one Cookie header); others repeat.
                    out.append((bname, "; ".join(value).encode("latin-1")))
                    continue
                out.extend((bname, item.encode("latin-1")) for item in value)
            else:
                out.append((bname, value.encode("latin-1")))
        return out

    def pairs_with(self, override: Mapping[str, str | None]) -> list[tuple[bytes, bytes]]:
        """:meth:`pairs`, with the fields named (lowercase) in ``override`` given that
        value instead, or left out for None (the framing decision's rare edits,
        without changing the headers the user set)."""
        edited = OutgoingHeaders()
        fields = edited._fields = dict(self._fields)
        for lname, value in override.items():
            if lname in fields:
                if value is None:
                    del fields[lname]
                else:
                    fields[lname] = (fields[lname][0], value)
        return edited.pairs()


def pairs_from(headers: Mapping[str, object] | Iterable[tuple[str, object]] | None) -> list[tuple[bytes, bytes]]:
    """Validate a one-off header collection (trailers, 1xx) into wire pairs."""
    if not headers:
        return []
    store = OutgoingHeaders()
    store.update(headers)
    return store.pairs()


_ABSENT = object()
_dict_get = dict.get
_dict_contains = dict.__contains__
_dict_update = dict.update
_new_headers = dict.__new__


class Headers(Dict[str, Any]):
    """Received headers: a ``dict`` with lowercase names whose lookups ignore case.

    ``headers["Content-Type"]``, ``.get("content-type")`` and ``"CONTENT-TYPE" in
    headers`` find the same field; iteration, ``repr`` and ``==`` are the plain
    dict's (lowercase names, in the order received), so it still equals the dict
    Node's ``message.headers`` would be.  Writes lowercase the name too.  The values
    follow the merge rule of whoever built it (:func:`node_headers`: Node's;
    ``fetch()``'s Response: Fetch's).  :meth:`get_all` gives a field's lines one by
    one and :meth:`get_set_cookie` the ``Set-Cookie`` lines (Fetch's
    ``getSetCookie()``), from ``raw``: the ``(name, value)`` pairs as received.
    """

    __slots__ = ("_raw",)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__()
        self._raw: Iterable[tuple[Any, Any]] | None = None
        if args or kwargs:
            self.update(*args, **kwargs)

    @classmethod
    def _wrap(cls, fields: dict[str, Any], raw: Iterable[tuple[Any, Any]]) -> Headers:
        """A Headers holding ``fields`` (lowercase names already) as received in
        ``raw``: one C-level copy, no per-name Python call (the server's hot path)."""
        headers = cls.__new__(cls)
        dict.update(headers, fields)
        headers._raw = raw
        return headers

    # Lookups: the exact (lowercase) name first, as the dict does, then lowercased.
    def __missing__(self, name: Any) -> Any:
        if isinstance(name, str):
            lname = name.lower()
            if lname != name and dict.__contains__(self, lname):
                return dict.__getitem__(self, lname)
        raise KeyError(name)

    def __contains__(self, name: object) -> bool:
        return _dict_contains(self, name) or (isinstance(name, str) and _dict_contains(self, name.lower()))

    def get(self, name: Any, default: Any = None) -> Any:
        value = _dict_get(self, name, _ABSENT)
        if value is _ABSENT:
            value = _dict_get(self, name.lower(), default) if isinstance(name, str) else default
        return value

    # Writes: under the lowercase name, so that one field never has two keys.
    def __setitem__(self, name: Any, value: Any) -> None:
        dict.__setitem__(self, name.lower() if isinstance(name, str) else name, value)

    def __delitem__(self, name: Any) -> None:
        dict.__delitem__(self, name.lower() if isinstance(name, str) else name)

    def pop(self, name: Any, *default: Any) -> Any:
        return dict.pop(self, name.lower() if isinstance(name, str) else name, *default)

    def setdefault(self, name: Any, default: Any = None) -> Any:
        return dict.setdefault(self, name.lower() if isinstance(name, str) else name, default)

    def update(self, *args: Any, **kwargs: Any) -> None:  # type: ignore[override]
        for name, value in dict(*args, **kwargs).items():
            self[name] = value

    def copy(self) -> Headers:
        return Headers._wrap(self, self._raw or ())

    @property
    def raw(self) -> list[tuple[str, str]]:
        """The fields as received, ``(name, value)`` pairs in order (``[]`` for a
        Headers made by hand)."""
        return [(_text(name), _text(value)) for name, value in self._raw or ()]

    def get_all(self, name: str) -> list[str]:
        """Every value received for field ``name`` (any case), one per line, in
        order; ``[]`` if absent.  (A Headers made by hand: its value, as a list.)"""
        if self._raw is None:
            value = self.get(name)
            return [] if value is None else list(value) if isinstance(value, list) else [value]
        lname = name.lower()
        return [value for field, value in self.raw if field.lower() == lname]

    def get_set_cookie(self) -> list[str]:
        """The ``Set-Cookie`` values, one per line received (Fetch's ``getSetCookie()``)."""
        return self.get_all("set-cookie")


def _text(value: str | bytes) -> str:
    return value.decode("latin-1") if isinstance(value, bytes) else value


def fetch_headers(fields: Iterable[tuple[str, str]]) -> Headers:
    """Fetch's ``response.headers`` rule: every repeat (``Set-Cookie`` too) joined
    with ``', '``, as Fetch's ``Headers.get()`` reads it."""
    raw = list(fields)
    joined: dict[str, str] = {}
    for name, value in raw:
        lname = name.lower()
        joined[lname] = f"{joined[lname]}, {value}" if lname in joined else value
    return Headers._wrap(joined, raw)


#: Field names as received -> their lowercase text: the few names real traffic uses
#: recur on every request, and a lookup is cheaper than decode() and lower().  Bounded
#: (512 names of at most 64 bytes): past that (a peer inventing names), each is
#: converted every time instead.
_LOWER_NAMES: dict[bytes, str] = {}
_LOWER_NAMES_MAX = 512


def node_headers(fields: Iterable[tuple[bytes, bytes]]) -> Headers:
    """Node's ``message.headers`` from wire pairs (see the module docstring), as a
    case-insensitive :class:`Headers`."""
    if not isinstance(fields, (list, tuple)):
        fields = list(fields)  # kept as the Headers' raw pairs: read once here
    headers: dict[str, str | list[str]] = {}
    names = _LOWER_NAMES
    for bname, bvalue in fields:
        name = names.get(bname)
        if name is None:
            name = bname.decode("latin-1").lower()
            if len(names) < _LOWER_NAMES_MAX and len(bname) <= 64:
                names[bname] = name
        value = bvalue.decode("latin-1")
        if name not in headers:
            headers[name] = [value] if name == "set-cookie" else value
        elif name == "set-cookie":
            headers[name].append(value)  # type: ignore[union-attr]
        elif name in _SINGLE_VALUED:
            continue
        else:
            sep = "; " if name == "cookie" else ", "
            headers[name] = f"{headers[name]}{sep}{value}"
    # Inline Headers._wrap: one C-level copy of the few fields (the server's hot path).
    out = _new_headers(Headers)
    _dict_update(out, headers)
    out._raw = fields
    return out


def raw_list(fields: Iterable[tuple[bytes, bytes]]) -> list[str]:
    """Node's ``message.rawHeaders``: [name, value, name, value, ...] as received."""
    out: list[str] = []
    for name, value in fields:
        out.append(name.decode("latin-1"))
        out.append(value.decode("latin-1"))
    return out
