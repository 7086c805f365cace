"""A griffe extension: greenhttps's reST-ish docstrings, read as Markdown.

The docstrings are written for ``help()`` and Sphinx habits: ``double backticks``
(already a Markdown code span), roles such as :class:`Agent` or
:meth:`~greenhttps.ServerResponse.write_head`, and a paragraph ending in ``::``
before an indented block.  Rather than rewrite them, this extension changes the text
mkdocstrings renders (the source files are untouched):

- a role becomes a code span that links to the object when the site documents it
  (an *optional* autoref: an unknown or private target is plain code, never a broken
  reference, so ``mkdocs build --strict`` stays quiet);
- ``text::`` becomes ``text:`` and a line holding only ``::`` goes (the indented
  block after it is already a Markdown code block);
- an attribute with no docstring but Sphinx's ``#:`` comment above it (or after it,
  on the same line) gets that comment as its docstring, as Sphinx's autodoc would.

Loaded by mkdocs.yml (``extensions: - docs/_ext/rst_roles.py:ReSTRoles``).
"""

from __future__ import annotations

import html
import re
from typing import Any

import griffe

# :class:`Agent`, :meth:`~greenhttps.Agent.destroy`, :func:`get()` ...
_ROLE = re.compile(r":(?:class|func|meth|attr|mod|data|exc|obj|const):`(~?)([^`]+)`")
_TITLED = re.compile(r"(.+?)\s*<([^<>]+)>")
# reST's literal-block marker at the end of a paragraph line.
_LITERAL = re.compile(r"(\S)::[ \t]*$", re.MULTILINE)
_LITERAL_ALONE = re.compile(r"^[ \t]*::[ \t]*$", re.MULTILINE)


def _identifier(obj: griffe.Object, target: str) -> str:
    """The full dotted path ``target`` names, seen from ``obj``'s scope."""
    target = target.removeprefix("~").removesuffix("()")
    if target.startswith("greenhttps"):
        return target
    first, _, rest = target.partition(".")
    scope = obj if obj.is_class or obj.is_module else obj.parent
    try:
        base = scope.resolve(first) if scope is not None else first
    except griffe.NameResolutionError:
        return target
    return f"{base}.{rest}" if rest else base


def _markdown(obj: griffe.Object, text: str) -> str:
    def role(match: re.Match[str]) -> str:
        tilde, target = match.groups()
        shown = target.rsplit(".", 1)[-1] if tilde else target
        titled = _TITLED.fullmatch(target)  # :meth:`title <target>`
        if titled:
            shown, target = titled.groups()
        ident = html.escape(_identifier(obj, target), quote=True)
        return f'<autoref identifier="{ident}" optional><code>{html.escape(shown)}</code></autoref>'

    text = _ROLE.sub(role, text)
    text = _LITERAL.sub(r"\1:", text)
    return _LITERAL_ALONE.sub("", text)


def _comment_doc(attr: griffe.Object) -> str | None:
    """The ``#:`` comment lines just above ``attr``'s assignment, or after it."""
    if attr.lineno is None or attr.filepath is None:
        return None
    try:
        lines = attr.lines_collection[attr.filepath]  # type: ignore[index]
    except (KeyError, TypeError):
        return None
    here = lines[attr.lineno - 1]
    if "#: " in here:
        return here.split("#: ", 1)[1].strip()
    above: list[str] = []
    index = attr.lineno - 2
    while index >= 0 and lines[index].strip().startswith("#:"):
        above.insert(0, lines[index].strip()[2:].strip())
        index -= 1
    return " ".join(above) or None


class ReSTRoles(griffe.Extension):
    """Rewrite each object's docstring once the package is loaded."""

    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        seen: set[int] = set()
        stack: list[griffe.Object] = [pkg]
        while stack:
            obj = stack.pop()
            if id(obj) in seen:
                continue
            seen.add(id(obj))
            if obj.is_attribute and obj.docstring is None:
                comment = _comment_doc(obj)
                if comment:
                    obj.docstring = griffe.Docstring(comment, parent=obj)
            if obj.docstring is not None:
                obj.docstring.value = _markdown(obj, obj.docstring.value)
            stack.extend(m for m in obj.members.values() if not m.is_alias)
