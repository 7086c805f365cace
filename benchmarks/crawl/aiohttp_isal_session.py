"""aiohttp with ISA-L's inflate: ``aiohttp.set_zlib_backend(isal.isal_zlib)`` (aiohttp >=
3.12), then the same crawl as aiohttp_session.py.  greenhttps's decode extra inflates
with the same library, so this row shows what aiohttp gets from the same trick; the
ratios stay against default aiohttp (issue 22's targets)."""

from __future__ import annotations

import runpy
from pathlib import Path

import aiohttp
from isal import isal_zlib

aiohttp.set_zlib_backend(isal_zlib)
runpy.run_path(str(Path(__file__).with_name("aiohttp_session.py")), run_name="__main__")
