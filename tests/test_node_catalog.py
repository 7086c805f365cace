"""``docs/node-behaviours.md`` is a true record of the 105 Node behaviours (issue 17).

The catalog itself (``NODE-BEHAVIOURS.md``, B-1..B-105) lives outside the repository;
the doc holds one row per behaviour: reproduced (by the tests it names), a difference
(the README bullet it names), or missing.  Checked here, mechanically:

* every B-1..B-105 has exactly one row, and nothing else is a row;
* every ``file.py::test_name`` the table names exists as a test function in
  ``tests/file.py`` (a renamed or deleted test breaks its row), and every reproduced
  row names at least one;
* every difference row, and every README phrase any row quotes (``README: "..."`` or
  ``README "..."``), is found in the README's "Differences from Node" section;
* the missing rows are exactly :data:`KNOWN_MISSING`, so the list shrinks only on
  purpose: give the behaviour its test, change its row, drop it from the set.
"""

from __future__ import annotations

import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parent.parent
TABLE = ROOT / "docs" / "node-behaviours.md"
README = ROOT / "README.md"
TESTS = ROOT / "tests"

CATALOG_SIZE = 105
STATUSES = ("reproduced", "difference", "missing")

#: B-numbers with no test that shows them (or that greenhttps gets wrong), as of the
#: audit; each row of the table says why.
KNOWN_MISSING = frozenset({
    # none: every behaviour is reproduced or a documented difference
})

# A row: | B-n | title | status | where |  (a "|" inside a cell is written "\|").
CELL_SPLIT = re.compile(r"(?<!\\)\|")
TEST_REF = re.compile(r"(?:tests/)?(test_\w+\.py)::(test_\w+)")
README_PHRASE = re.compile(r'README:? "([^"]+)"')


def rows() -> list[tuple[int, str, str, str]]:
    """The table's rows as (number, title, status, where); any other line starting
    with "| B-" is malformed and fails here."""
    found = []
    for line in TABLE.read_text(encoding="utf-8").splitlines():
        if not line.startswith("| B-"):
            continue
        cells = [c.strip() for c in CELL_SPLIT.split(line)]
        assert len(cells) == 6 and cells[0] == "" and cells[-1] == "", f"malformed row: {line!r}"
        number, title, status, where = cells[1:5]
        match = re.fullmatch(r"B-(\d+)", number)
        assert match, f"bad number cell: {line!r}"
        assert status in STATUSES, f"bad status {status!r}: {line!r}"
        assert title and where, f"empty cell: {line!r}"
        found.append((int(match.group(1)), title, status, where))
    return found


def differences_section() -> str:
    """The README's "Differences from Node" section, whitespace collapsed (so a
    phrase may wrap across lines there)."""
    text = README.read_text(encoding="utf-8")
    start = text.index("## Differences from Node")
    end = text.find("\n## ", start + 1)
    return " ".join(text[start:end if end != -1 else None].split())


def test_every_behaviour_has_exactly_one_row() -> None:
    numbers = [n for n, _, _, _ in rows()]
    assert sorted(numbers) == list(range(1, CATALOG_SIZE + 1))
    assert len(numbers) == len(set(numbers)) == CATALOG_SIZE


def test_named_tests_exist() -> None:
    defined: dict[str, set[str]] = {}
    for n, _, status, where in rows():
        refs = TEST_REF.findall(where)
        if status == "reproduced":
            assert refs, f"B-{n} is reproduced but names no test"
        for filename, name in refs:
            if filename not in defined:
                path = TESTS / filename
                assert path.is_file(), f"B-{n}: no tests/{filename}"
                src = path.read_text(encoding="utf-8")
                defined[filename] = set(re.findall(r"^(?:async )?def (test_\w+)\(", src, re.MULTILINE))
            assert name in defined[filename], f"B-{n}: tests/{filename} has no test {name}"


def test_difference_rows_point_into_the_readme_differences() -> None:
    section = differences_section()
    for n, _, status, where in rows():
        phrases = README_PHRASE.findall(where)
        if status == "difference":
            assert phrases, f"B-{n} is a difference but quotes no README phrase"
        for phrase in phrases:
            assert " ".join(phrase.split()) in section, f"B-{n}: {phrase!r} is not in README's Differences from Node"


def test_missing_rows_are_the_known_missing_set() -> None:
    missing = {n for n, _, status, _ in rows() if status == "missing"}
    assert missing == KNOWN_MISSING, (
        f"newly missing: {sorted(missing - KNOWN_MISSING)}; "
        f"no longer missing (drop from KNOWN_MISSING): {sorted(KNOWN_MISSING - missing)}"
    )


def test_readme_links_the_table() -> None:
    assert "docs/node-behaviours.md" in differences_section()
