"""Header rules: what may be sent, and the shapes Node gives received headers.

Outgoing names must be RFC 9110 tokens and values may not hold CR, LF, NUL or other
control characters, nor anything outside latin-1 (Node's ``ERR_INVALID_HTTP_TOKEN``
and ``ERR_INVALID_CHAR``); both are checked when the header is set, so nothing
malformed can reach the wire.

Incoming headers become Node's ``message.headers`` dict: lowercase names;
``set-cookie`` always a list; repeated ``cookie`` joined with ``'; '``; repeats of
the single-valued headers below keep the first; any other repeat joined with ``', '``.
"""

from __future__ import annotations

import re
from typing import Iterable, Mapping, Union

from .errors import InvalidArgumentError

__all__ = [
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


class OutgoingHeaders:
    """The headers of a message not yet sent: case-insensitive, order kept.

    Stored as Node's ``kOutHeaders``: lowercase name -> (name as given, value).
    """

    __slots__ = ("_fields",)

    def __init__(self) -> None:
        self._fields: dict[str, tuple[str, str | list[str]]] = {}

    def set(self, name: str, value: object) -> None:
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
        items = headers.items() if isinstance(headers, Mapping) else headers
        for name, value in items:
            self.set(name, value)

    def pairs(self) -> list[tuple[bytes, bytes]]:
        """The wire form: one (name, value) pair per line, a list value repeating."""
        out: list[tuple[bytes, bytes]] = []
        for name, value in self._fields.values():
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


def node_headers(fields: Iterable[tuple[bytes, bytes]]) -> dict[str, str | list[str]]:
    """Node's ``message.headers`` from wire pairs (see the module docstring)."""
    headers: dict[str, str | list[str]] = {}
    for bname, bvalue in fields:
        name = bname.decode("latin-1").lower()
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
    return headers


def raw_list(fields: Iterable[tuple[bytes, bytes]]) -> list[str]:
    """Node's ``message.rawHeaders``: [name, value, name, value, ...] as received."""
    out: list[str] = []
    for name, value in fields:
        out.append(name.decode("latin-1"))
        out.append(value.decode("latin-1"))
    return out
