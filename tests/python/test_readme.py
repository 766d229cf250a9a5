"""Every ```python block of README.md runs as it is (the quick start must not rot)."""

import pathlib
import re

import pytest

README = pathlib.Path(__file__).resolve().parents[2] / "README.md"
BLOCKS = re.findall(r"^```python\n(.*?)^```", README.read_text(), flags=re.S | re.M)


def test_readme_has_python_blocks():
    assert BLOCKS, "README.md lost its quick start"


@pytest.mark.parametrize("code", BLOCKS, ids=[f"block{i}" for i in range(len(BLOCKS))])
def test_readme_block_runs(code):
    if "unicorn" in code:
        pytest.importorskip("unicorn", reason="the unicorn extra is not installed")
    exec(compile(code, str(README), "exec"), {"__name__": "readme"})
