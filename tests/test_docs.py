"""The documentation site builds in strict mode and documents the public API.

``mkdocs build --strict`` (mkdocs.yml at the repository root) runs once for the
module, into a temporary directory: a warning fails it -- a broken link or anchor, a
page missing from the nav, a README section that ``pymdownx.snippets`` cannot find
(``check_paths``), a docstring mkdocstrings cannot parse.  The tests then read the
built HTML: every public name has its entry in the API reference, every guide the
docs promise is in the nav, README's sections really are included, and no reST role
is left unconverted.

The guides' code is checked too: every ```python block of a page under docs/ runs as
written, as a script (it starts its own server on a free port and prints what it
promises); a ```py block is a fragment and must only compile.  The build needs the ``docs`` extra (part of ``test``); without
it the tests skip, except in CI, where they fail.
"""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

import helpers

ROOT = helpers.REPO_ROOT
BUILD_SECONDS = 120  # the build takes ~3 s; generous for a loaded machine

pytestmark = pytest.mark.timeout(BUILD_SECONDS + 30)

# Guide pages the site must have (issue 20 item 2), by file under docs/.
GUIDES = {
    "guides/server.md": "the server",
    "guides/client.md": "the client",
    "guides/fetch.md": "fetch",
    "guides/agent.md": "the Agent",
    "guides/tls.md": "TLS",
    "guides/wsgi.md": "WSGI and gunicorn",
    "guides/cli.md": "the command line",
    "guides/node-differences.md": "the differences from Node",
    "guides/performance.md": "performance",
    "guides/hardening.md": "hardening",
}

# Public module -> its reference page (docs/reference/NAME.md).
REFERENCE = {
    "greenhttps": "greenhttps",
    "greenhttps.errors": "errors",
    "greenhttps.http": "http",
    "greenhttps.wsgi": "wsgi",
    "greenhttps.gunicorn": "gunicorn",
    "greenhttps.devcert": "devcert",
}


def _module_all(module: str) -> list[str]:
    """``module.__all__``, read from the source (greenhttps.gunicorn needs gunicorn)."""
    rel = module.replace(".", "/")
    path = ROOT / (f"{rel}/__init__.py" if (ROOT / rel).is_dir() else f"{rel}.py")
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets
        ):
            return list(ast.literal_eval(node.value))
    raise AssertionError(f"{path} has no __all__")


def _is_node_alias(name: str) -> bool:
    """``createServer``, ``globalAgent``: camelCase aliases, documented with the
    snake_case name."""
    return bool(re.search(r"[a-z][A-Z]", name))


class Site:
    def __init__(self, root: Path, output: str, seconds: float) -> None:
        self.root, self.output, self.seconds = root, output, seconds

    def page(self, doc: str) -> str:
        """The built HTML of ``docs/<doc>`` (``guides/tls.md`` -> guides/tls/index.html)."""
        stem = doc.removesuffix(".md")
        path = self.root / ("index.html" if stem == "index" else f"{stem}/index.html")
        return path.read_text(encoding="utf-8")

    def anchors(self, doc: str) -> set[str]:
        return set(re.findall(r'id="([^"]+)"', self.page(doc)))


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Site:
    try:
        import material  # noqa: F401
        import mkdocstrings  # noqa: F401
    except ImportError as exc:
        if os.environ.get("CI"):
            pytest.fail(f"the docs extra is not installed ({exc}): CI must build the docs")
        pytest.skip(f"the docs extra is not installed ({exc})")
    out = tmp_path_factory.mktemp("site")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}  # Material's banner, not a warning
    start = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=BUILD_SECONDS,
    )
    seconds = time.monotonic() - start
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"mkdocs build --strict failed:\n{output[-6000:]}"
    return Site(out, output, seconds)


def _code_blocks(lang: str) -> list[tuple[str, str]]:
    """(``page#n``, code) of each fenced block tagged ``lang`` in docs/*.md."""
    blocks = []
    for doc in sorted((ROOT / "docs").rglob("*.md")):
        text = doc.read_text(encoding="utf-8")
        found = re.findall(rf"^```{lang}\n(.*?)^```\s*$", text, re.DOTALL | re.MULTILINE)
        name = doc.relative_to(ROOT / "docs").as_posix()
        blocks += [(f"{name}#{i + 1}", code) for i, code in enumerate(found)]
    return blocks


PROGRAMS = _code_blocks("python")
FRAGMENTS = _code_blocks("py")


@pytest.fixture(scope="module")
def cache_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One development certificate for every block (as on a user's machine)."""
    return tmp_path_factory.mktemp("cache")


@pytest.mark.parametrize("code", [c for _, c in PROGRAMS], ids=[n for n, _ in PROGRAMS])
def test_guide_program_runs(code: str, cache_home: Path, tmp_path: Path) -> None:
    script = tmp_path / "block.py"
    script.write_text(code, encoding="utf-8")
    env = {"XDG_CACHE_HOME": str(cache_home), "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
    proc = helpers.run_command([sys.executable, str(script)], timeout=30, env=env, cwd=tmp_path)
    out, err = proc.stdout.decode(), proc.stderr.decode()
    assert proc.returncode == 0 and "Traceback" not in err, f"{out}\n{err}"
    assert out.strip(), "a guide program prints what it shows"


@pytest.mark.parametrize("code", [c for _, c in FRAGMENTS], ids=[n for n, _ in FRAGMENTS])
def test_guide_fragment_compiles(code: str) -> None:
    compile(code, "<fragment>", "exec")


def test_the_guides_have_programs() -> None:
    assert len(PROGRAMS) >= 5 and len(FRAGMENTS) >= 5


def test_the_strict_build_passes_with_no_warning(site: Site) -> None:
    assert "WARNING" not in site.output, site.output
    assert (site.root / "index.html").is_file()
    assert site.seconds < BUILD_SECONDS


def test_every_guide_is_in_the_nav_and_built(site: Site) -> None:
    config = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    nav = config[config.index("\nnav:"):]
    for doc, what in GUIDES.items():
        assert re.search(rf":\s*{re.escape(doc)}\s*$", nav, re.MULTILINE), f"{what}: {doc} not in nav"
        html = site.page(doc)
        # The nav on a built page links every guide (so it is reachable from anywhere).
        assert doc.removesuffix(".md") + "/" in site.page("index.md"), doc
        assert "<h1" in html, doc


def test_every_public_name_has_an_api_entry(site: Site) -> None:
    shared = {"ClientRequest", "IncomingMessage", "ServerResponse", "STATUS_CODES"}
    for module, page in REFERENCE.items():
        anchors = site.anchors(f"reference/{page}.md")
        for name in _module_all(module):
            if _is_node_alias(name) or f"greenhttps.{name}" in REFERENCE:
                continue  # an alias of a documented name, or a module with its own page
            if module == "greenhttps.http" and name in shared:
                assert f"greenhttps.{name}" in site.anchors("reference/greenhttps.md"), name
                continue
            if module == "greenhttps.http" and name == "Server":
                assert "greenhttps._server.PlainServer" in anchors
                continue
            assert f"{module}.{name}" in anchors, f"{module}.{name} missing from reference/{page}.md"


def test_the_api_page_shows_signatures_and_docstrings(site: Site) -> None:
    html = site.page("reference/greenhttps.md")
    assert 'id="greenhttps.create_server"' in html
    assert "<code>https.createServer(options, requestListener)</code>" in html  # its docstring
    # Inherited methods that users call are documented on the class that has them.
    for name in ("ServerResponse.write_head", "ServerResponse.end", "ServerResponse.set_header",
                 "ClientRequest.getresponse", "IncomingMessage.read", "Server.listen"):
        assert f'id="greenhttps.{name}"' in html, name


def test_rest_roles_become_links_or_code(site: Site) -> None:
    """docs/_ext/rst_roles.py: no ``:class:`X``` is left in the reference, and a role
    naming a documented object links to it."""
    for page in REFERENCE.values():
        html = site.page(f"reference/{page}.md")
        assert not re.search(r":(class|func|meth|attr|mod|data|exc|obj):`", html), page
    html = site.page("reference/greenhttps.md")
    # IncomingMessage's docstring names greenhttps.errors classes with :class: roles.
    assert re.search(r'<a class="autorefs autorefs-internal"[^>]*href="\.\./errors/#greenhttps\.errors\.', html)


def test_readme_sections_are_included_not_copied(site: Site) -> None:
    """The guides include README's sections (pymdownx.snippets, HTML-comment markers)."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    included = {}
    for doc in sorted((ROOT / "docs").rglob("*.md")):
        for name in re.findall(r'--8<-- "README\.md:([-_a-z0-9]+)"', doc.read_text(encoding="utf-8")):
            included[name] = doc.relative_to(ROOT / "docs").as_posix()
    assert {"options-intro", "server-options", "client-options", "agent-options", "differences",
            "cli"} <= included.keys(), included
    for name, doc in included.items():
        assert f"<!-- --8<-- [start:{name}] -->" in readme and f"<!-- --8<-- [end:{name}] -->" in readme
        html = site.page(doc)
        assert "8&lt;" not in html and "--8<--" not in html, doc  # markers never leak
    assert "Blocking is the point." in site.page("guides/node-differences.md")
    assert "<table>" in site.page(included["server-options"])
