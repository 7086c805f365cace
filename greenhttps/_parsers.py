"""Which parser reads HTTP/1.1 here: llhttp when httptools is installed, else h11.

Theory of operation
-------------------
The wire (:mod:`._wire`) takes a parser class and never imports one, so the choice
lives here, above both: ``GREENHTTPS_PARSER=h11`` forces h11, ``llhttp`` insists on
httptools, anything else (``auto``, the default) takes llhttp when it imports.  The
server and the client each choose once, at import (:data:`_server_conn.SERVER_PARSER`,
:data:`_dial.CLIENT_PARSER`).
"""

from __future__ import annotations

import os

from ._parse import Parser

__all__ = ["parser_class"]


def parser_class() -> type[Parser]:
    """The parser to use, read from ``GREENHTTPS_PARSER`` at each call."""
    choice = os.environ.get("GREENHTTPS_PARSER", "auto").lower()
    if choice != "h11":
        try:
            from ._parse_llhttp import LlhttpParser
        except ImportError:
            if choice == "llhttp":
                raise
        else:
            return LlhttpParser
    from ._parse_h11 import H11Parser

    return H11Parser
