"""Every ``python`` code block of docs/unicorn.md runs."""

from __future__ import annotations

import pathlib
import re

import pytest

pytest.importorskip("unicorn")
pytest.importorskip("capstone")

DOC = pathlib.Path(__file__).resolve().parents[2] / "docs" / "unicorn.md"


def _blocks() -> list[str]:
    if not DOC.exists():
        return []
    return re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.S)


@pytest.mark.skipif(not DOC.exists(), reason="docs/unicorn.md is not shipped with this tree")
@pytest.mark.parametrize("index", range(len(_blocks())))
def test_doc_example_runs(index: int) -> None:
    exec(compile(_blocks()[index], f"{DOC}:block{index}", "exec"), {})


def test_doc_has_an_example() -> None:
    if DOC.exists():
        assert _blocks()
