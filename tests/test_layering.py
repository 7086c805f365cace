"""The layer table of ``docs/architecture.md`` holds: imports point down, no cycles.

The table is read from the document, so the two cannot drift.  Every module under
``greenhttps/`` is parsed with :mod:`ast`; every import counts -- top level, inside a
function, under ``if TYPE_CHECKING:``, ``from . import x``, ``import greenhttps``,
``importlib.import_module("greenhttps.x")``.  A failure names the module and line.

Breaks that exist today and are being fixed elsewhere are listed in
:data:`KNOWN_BREAKS`, each with its reason.  An entry is tolerated while it is still a
break and fails the test once it is not, so the list only shrinks.
"""

from __future__ import annotations

import ast
import re
import sys
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "greenhttps"
DOC = ROOT / "docs" / "architecture.md"
PKG = "greenhttps"
FACE = "__init__"

#: (rule, importer, imported) -> why it is tolerated for now.  Rules: "up" (an import
#: of a higher layer), "cycle" (this edge closes an import cycle within a layer), and
#: the names of the static rules below ("pure-io", "parser", "message", "face").
KNOWN_BREAKS: dict[tuple[str, str, str], str] = {}

#: Static rules beyond the layer order (docs/architecture.md, "The rules").
PURE_FORBIDDEN = ("greenlet", "select", "selectors", "threading", "asyncio", "subprocess", "gevent")
PURE_ALLOWED = ("gevent.ssl",)
PURE_IO_CALLS = frozenset({
    "recv", "recv_into", "recvfrom", "send", "sendall", "sendto", "sendfile", "connect", "connect_ex",
    "accept", "do_handshake", "create_connection", "spawn", "spawn_later", "sleep", "getaddrinfo",
})
#: Calls of those names that are not I/O, each with the reason.
PURE_IO_NOT_IO = {
    ("_parse_h11", "send"): "h11.Connection.send() serialises an event to bytes (the parser primes a "
    "client-side h11 with the request it answers); no socket is involved",
}
PARSER_ENGINES = ("h11", "httptools")
#: The modules that may import a parser engine (``_parsers`` only to probe for one).
ENGINE_IMPORTERS = frozenset({"_parse_h11", "_parse_llhttp", "_parsers"})
PARSER_FORBIDDEN = ("socket", "ssl", "select", "selectors", "gevent", "greenlet")
PARSER_FORBIDDEN_LAYERS = ("transport", "wire")
MESSAGE_FORBIDDEN = ("socket", "ssl", "select", "selectors", "gevent.socket", *PARSER_ENGINES)


# --------------------------------------------------------------------- the table


@dataclass(frozen=True)
class Layer:
    name: str
    rank: int  # higher is further up


@lru_cache(maxsize=None)
def layer_table() -> dict[str, Layer]:
    """Module name (without ``.py``) -> its layer, from the table in the document."""
    text = DOC.read_text(encoding="utf-8")
    start, end = text.index("<!-- layer-table"), text.index("<!-- end layer-table -->")
    rows = []
    for line in text[start:end].splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        match = re.fullmatch(r"`([\w]+)\.py`", cells[1]) if len(cells) >= 3 else None
        if match:
            rows.append((cells[0], match.group(1)))
    order: list[str] = []
    for layer, _ in rows:
        if layer not in order:
            order.append(layer)
        elif order[-1] != layer:
            raise AssertionError(f"{DOC.name}: the rows of layer {layer!r} are not together")
    table: dict[str, Layer] = {}
    for layer, module in rows:
        assert module not in table, f"{DOC.name}: {module}.py is in the table twice"
        table[module] = Layer(layer, len(order) - order.index(layer))
    return table


# ------------------------------------------------------------------- the imports


@dataclass(frozen=True)
class Import:
    importer: str  # module of the package, without .py
    target: str  # a module of the package (without .py), or an outside dotted name
    internal: bool
    line: int
    where: str  # "top level", "in a function", "under TYPE_CHECKING"

    def __str__(self) -> str:
        return f"greenhttps/{self.importer}.py:{self.line}: imports {self.target} ({self.where})"


def package_modules() -> list[str]:
    return sorted(path.stem for path in PACKAGE.glob("*.py"))


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def collect_imports(importer: str, source: str, modules: set[str]) -> list[Import]:
    """Every import in ``source``, the module ``importer`` of the package.

    ``modules`` are the package's module names: ``from . import x`` imports module
    ``x`` if there is one, else it takes a name from the package face.
    """
    found: list[Import] = []

    def add(target: str, internal: bool, node: ast.AST, where: str) -> None:
        found.append(Import(importer, target, internal, node.lineno, where))

    def internal_name(dotted: str) -> str:
        """``greenhttps`` -> the face; ``greenhttps.x.y`` -> ``x``."""
        parts = dotted.split(".")
        return parts[1] if len(parts) > 1 else FACE

    def visit(node: ast.AST, where: str) -> None:
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == PKG or alias.name.startswith(PKG + "."):
                    add(internal_name(alias.name), True, node, where)
                else:
                    add(alias.name, False, node, where)
        elif isinstance(node, ast.ImportFrom):
            if node.level > 1:
                raise AssertionError(f"greenhttps/{importer}.py:{node.lineno}: relative import beyond the package")
            base = node.module or ""
            if node.level == 1 and base:  # from .x import y
                add(base.split(".")[0], True, node, where)
            elif node.level == 1 or base == PKG:  # from . import x / from greenhttps import x
                for alias in node.names:
                    add(alias.name if alias.name in modules else FACE, True, node, where)
            elif base.startswith(PKG + "."):  # from greenhttps.x import y
                add(internal_name(base), True, node, where)
            else:
                add(base, False, node, where)
        elif isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
            args = node.args
            if name in ("import_module", "__import__") and args and isinstance(args[0], ast.Constant):
                target = args[0].value
                if isinstance(target, str) and target.startswith("."):
                    target = PKG + target
                if isinstance(target, str) and (target == PKG or target.startswith(PKG + ".")):
                    add(internal_name(target), True, node, where)
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.body:
                visit(child, "under TYPE_CHECKING")
            for child in node.orelse:
                visit(child, where)
            return
        inner = "in a function" if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)) else where
        for child in ast.iter_child_nodes(node):
            visit(child, inner)

    visit(ast.parse(source), "top level")
    return found


@lru_cache(maxsize=None)
def all_imports() -> tuple[Import, ...]:
    modules = set(package_modules())
    found: list[Import] = []
    for module in sorted(modules):
        source = (PACKAGE / f"{module}.py").read_text(encoding="utf-8")
        found.extend(collect_imports(module, source, modules))
    return tuple(found)


def internal_edges() -> list[Import]:
    return [imp for imp in all_imports() if imp.internal and imp.target != imp.importer]


def _matches(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == prefix or name.startswith(prefix + ".") for prefix in prefixes)


# ----------------------------------------------------------------- the breaks


@dataclass(frozen=True)
class Break:
    rule: str
    imp: Import
    detail: str

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.rule, self.imp.importer, self.imp.target)

    def __str__(self) -> str:
        return f"{self.imp}: {self.detail}"


def _same_layer_cycles(edges: list[Import], table: dict[str, Layer], tolerated: frozenset[tuple[str, str, str]]) -> list[Break]:
    """Edges that close a cycle among modules of one layer (``tolerated`` cycle edges left out)."""
    graph: dict[str, set[str]] = {}
    for imp in edges:
        if ("cycle", imp.importer, imp.target) in tolerated:
            continue
        if imp.target in table and table[imp.importer].name == table[imp.target].name:
            graph.setdefault(imp.importer, set()).add(imp.target)

    def reaches(start: str, goal: str) -> bool:
        seen, stack = set(), [start]
        while stack:
            node = stack.pop()
            if node == goal:
                return True
            if node not in seen:
                seen.add(node)
                stack.extend(graph.get(node, ()))
        return False

    breaks = []
    for imp in edges:
        if imp.target in graph.get(imp.importer, ()) and reaches(imp.target, imp.importer):
            breaks.append(Break("cycle", imp, f"an import cycle within layer {table[imp.importer].name!r}"))
    return breaks


def find_breaks(tolerated: frozenset[tuple[str, str, str]] = frozenset()) -> list[Break]:
    """Every import that breaks a rule of docs/architecture.md, known ones included.

    A cycle is looked for without the ``tolerated`` cycle edges: one known edge in a
    cycle excuses the others of that cycle.
    """
    table = layer_table()
    breaks: list[Break] = []
    edges = [imp for imp in internal_edges() if imp.importer in table]
    for imp in edges:
        if imp.target not in table:
            breaks.append(Break("unknown", imp, f"{imp.target} is not a module in the layer table"))
            continue
        low, high = table[imp.importer], table[imp.target]
        if high.rank > low.rank:
            breaks.append(Break("up", imp, f"layer {low.name!r} imports the higher layer {high.name!r}"))
    breaks.extend(_same_layer_cycles(edges, table, tolerated))

    parsers = {imp.importer for imp in all_imports() if not imp.internal and _matches(imp.target, PARSER_ENGINES)}
    for imp in all_imports():
        if imp.importer not in table:
            continue
        layer = table[imp.importer].name
        if layer == "pure" and not imp.internal and _matches(imp.target, PURE_FORBIDDEN) \
                and not _matches(imp.target, PURE_ALLOWED):
            breaks.append(Break("pure-io", imp, "the pure layer imports an I/O or greenlet module"))
        if imp.importer in parsers and (
            (not imp.internal and _matches(imp.target, PARSER_FORBIDDEN))
            or (imp.internal and imp.target in table and table[imp.target].name in PARSER_FORBIDDEN_LAYERS)
        ):
            breaks.append(Break("parser", imp, "a parser module (it imports h11/httptools) is fed bytes: "
                                "no transport, no wire base, no socket/ssl/gevent"))
        if layer == "message" and (
            (not imp.internal and _matches(imp.target, MESSAGE_FORBIDDEN))
            or (imp.internal and imp.target in table and table[imp.target].name == "transport")
        ):
            breaks.append(Break("message", imp, "the message layer reaches a socket or a parser directly"))
        if imp.internal and imp.target == FACE and imp.importer.startswith("_") and not imp.importer.startswith("__"):
            breaks.append(Break("face", imp, "a private module imports the package face (STYLE §14b)"))
        if not imp.internal and _matches(imp.target, PARSER_ENGINES) and imp.importer not in ENGINE_IMPORTERS:
            breaks.append(Break("parser", imp, "only the parser modules import h11/httptools"))
    return breaks


def _pure_io_calls() -> list[str]:
    table = layer_table()
    found = []
    for module in package_modules():
        if module not in table or table[module].name != "pure":
            continue
        tree = ast.parse((PACKAGE / f"{module}.py").read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr in PURE_IO_CALLS and (module, node.func.attr) not in PURE_IO_NOT_IO):
                found.append(f"greenhttps/{module}.py:{node.lineno}: calls .{node.func.attr}() (I/O in the pure layer)")
    return found


# -------------------------------------------------------------------- the tests


def test_every_module_is_in_the_table() -> None:
    table = layer_table()
    missing = [f"greenhttps/{module}.py" for module in package_modules() if module not in table]
    assert not missing, f"not in the layer table of docs/architecture.md: {missing}"


def test_the_table_has_the_layers_in_order() -> None:
    layers = sorted({(layer.rank, layer.name) for layer in layer_table().values()}, reverse=True)
    assert [name for _, name in layers] == [
        "adapters", "face", "entry", "exchange", "message", "pool", "watch", "wire", "transport", "pure",
    ]


def test_imports_point_down_and_make_no_cycle() -> None:
    new = [str(b) for b in find_breaks(frozenset(KNOWN_BREAKS)) if b.key not in KNOWN_BREAKS]
    assert not new, "layering broken (docs/architecture.md):\n" + "\n".join(sorted(set(new)))


def test_known_breaks_are_still_breaks() -> None:
    present = {b.key for b in find_breaks()}
    gone = [f"{key}: {why}" for key, why in KNOWN_BREAKS.items() if key not in present]
    assert not gone, "no longer broken: remove it from KNOWN_BREAKS:\n" + "\n".join(gone)


def test_the_pure_layer_makes_no_io_calls() -> None:
    calls = _pure_io_calls()
    assert not calls, "\n".join(calls)


def test_the_package_docstring_points_to_the_table() -> None:
    import greenhttps

    assert "docs/architecture.md" in (greenhttps.__doc__ or "")


# ------------------------------------------------------- the reader reads it all


def test_the_reader_sees_every_kind_of_import() -> None:
    source = (
        "from __future__ import annotations\n"
        "import os\n"
        "from typing import TYPE_CHECKING\n"
        "import greenhttps\n"
        "import greenhttps._tls as t\n"
        "from greenhttps import errors, __version__\n"
        "from . import _url, global_agent\n"
        "from ._wire import Wire\n"
        "from greenhttps._headers import check_value\n"
        "if TYPE_CHECKING:\n"
        "    from ._agent import Agent\n"
        "def f():\n"
        "    from ._dial import dial\n"
        "    import importlib\n"
        "    importlib.import_module('greenhttps._net_socket')\n"
        "    return importlib.import_module('._events', 'greenhttps')\n"
    )
    modules = {"errors", "_url", "_wire", "_agent", "_dial", "_tls", "_headers", "_net_socket", "_events"}
    got = {(imp.target, imp.line, imp.where) for imp in collect_imports("x", source, modules) if imp.internal}
    assert got == {
        (FACE, 4, "top level"), ("_tls", 5, "top level"), ("errors", 6, "top level"), (FACE, 6, "top level"),
        ("_url", 7, "top level"), (FACE, 7, "top level"), ("_wire", 8, "top level"), ("_headers", 9, "top level"),
        ("_agent", 11, "under TYPE_CHECKING"), ("_dial", 13, "in a function"), ("_net_socket", 15, "in a function"),
        ("_events", 16, "in a function"),
    }


@pytest.mark.parametrize("rule", ["up", "cycle"])
def test_the_checker_catches_a_planted_break(rule: str, monkeypatch: pytest.MonkeyPatch) -> None:
    planted = (
        Import("_options", "_server", True, 1, "in a function")
        if rule == "up"
        else Import("_url", "_options", True, 1, "top level")
    )
    reverse = Import("_options", "_url", True, 2, "under TYPE_CHECKING")
    extra = (planted,) if rule == "up" else (planted, reverse)
    real = all_imports()
    monkeypatch.setitem(globals(), "all_imports", lambda: real + extra)
    keys = {b.key for b in find_breaks()}
    assert (rule, planted.importer, planted.target) in keys


#: Modules named like one of the standard library's, each with the reason it stays.
STDLIB_NAMES_KEPT = {
    "http": "the public greenhttps.http, Node's http module; only a script run from inside "
    "the package folder could import it as the standard library's",
}


def test_no_module_shadows_the_standard_library() -> None:
    """A module named like one of the standard library's breaks ``import greenhttps``
    (or any import of that name) run from inside the package folder: ``_socket.py``
    did, for ``socket`` imports ``_socket`` (issue 20)."""
    package = Path(__file__).resolve().parents[1] / "greenhttps"
    names = {path.stem for path in package.glob("*.py")}
    assert sorted(names & set(sys.stdlib_module_names) - set(STDLIB_NAMES_KEPT)) == []
