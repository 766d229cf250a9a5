"""The documentation site's promises: every rule number cited anywhere in the repository has an
anchor on docs/semantics.md, every public name of ``mmn_fast`` has a reference entry, and the
Python examples of the site run as written."""

from __future__ import annotations

import pathlib
import re

import pytest

import mmn_fast

ROOT = pathlib.Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
SEMANTICS = (DOCS / "semantics.md").read_text(encoding="utf-8")
# R.. behaviour rules (with sub-cases such as R35b), D.. decisions, Q.. kernel quirks, T.. scenarios.
RULE = re.compile(r"\b[RDQT][0-9]{1,2}[a-c]?\b")
CITING = ("rust", "python", "tests", "docs", "benches", "examples", "fuzz")
SUFFIXES = {".rs", ".py", ".pyi", ".md"}


def _cited() -> dict[str, str]:
    """Every rule number cited in a source or documentation file, with one file that cites it."""
    files = [ROOT / "README.md", ROOT / "CHANGELOG.md"]
    for top in CITING:
        files += [p for p in (ROOT / top).rglob("*") if p.suffix in SUFFIXES and "target" not in p.parts]
    cited: dict[str, str] = {}
    for path in files:
        for rule in RULE.findall(path.read_text(encoding="utf-8", errors="replace")):
            cited.setdefault(rule, str(path.relative_to(ROOT)))
    return cited


def test_the_rule_pattern_finds_citations() -> None:
    cited = _cited()
    assert {"R12", "R35b", "D1", "T67"} <= set(cited)


def test_every_cited_rule_has_an_anchor() -> None:
    missing = {rule: where for rule, where in _cited().items() if f'id="{rule}"' not in SEMANTICS}
    assert not missing, f"rule numbers cited without an anchor in docs/semantics.md: {missing}"


def test_every_anchor_is_defined_once() -> None:
    anchors = re.findall(r'<a id="([^"]+)"></a>', SEMANTICS)
    assert len(anchors) == len(set(anchors))


@pytest.mark.parametrize("name", sorted(set(mmn_fast.__all__) - {"__version__"}))
def test_every_public_name_has_a_reference_entry(name: str) -> None:
    pages = "\n".join(p.read_text(encoding="utf-8") for p in (DOCS / "reference").glob("*.md"))
    assert f"::: mmn_fast.{name}\n" in pages


BLOCKS = re.findall(r"^```python\n(.*?)^```", (DOCS / "index.md").read_text(), flags=re.S | re.M)


@pytest.mark.parametrize("code", BLOCKS, ids=[f"index-block{i}" for i in range(len(BLOCKS))])
def test_docs_python_blocks_run(code: str) -> None:
    exec(compile(code, str(DOCS / "index.md"), "exec"), {"__name__": "docs"})


def _slug(heading: str) -> str:
    """The anchor MkDocs' toc extension gives a heading (enough for the headings used here)."""
    return re.sub(r"[^\w\- ]", "", heading).strip().lower().replace(" ", "-")


def test_readme_links_into_the_semantics_page_resolve() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    targets = set(re.findall(r"docs/semantics\.md#([\w-]+)", readme))
    headings = {_slug(h) for h in re.findall(r"^#+ (.+)$", SEMANTICS, flags=re.M)}
    assert targets, "the README's kernel-name table lost its links into docs/semantics.md"
    missing = {t for t in targets if f'id="{t}"' not in SEMANTICS and t not in headings}
    assert not missing
