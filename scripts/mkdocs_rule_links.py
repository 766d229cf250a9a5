"""MkDocs hook: in the rendered reference pages, every rule number (R12, R35b, D4, T67, Q1)
that a docstring cites becomes a link to its anchor on the semantics page."""

from __future__ import annotations

import re
from typing import Any

from mkdocs.utils import get_relative_url

_RULE = re.compile(r"\b([RDQT][0-9]{1,2}[a-c]?)\b")
_TAG = re.compile(r"(<[^>]+>)")


def on_page_content(html: str, page: Any, **_: Any) -> str:
    """Link the rule numbers in the text of a reference page (never inside a tag or a link)."""
    if not page.file.src_uri.startswith("reference/"):
        return html
    target = get_relative_url("semantics/", page.url)
    out: list[str] = []
    in_link = 0
    for chunk in _TAG.split(html):
        if chunk.startswith("<"):
            if re.match(r"<a[\s>]", chunk):
                in_link += 1
            elif chunk.startswith("</a"):
                in_link = max(0, in_link - 1)
            out.append(chunk)
        elif in_link:
            out.append(chunk)
        else:
            out.append(_RULE.sub(rf'<a href="{target}#\1">\1</a>', chunk))
    return "".join(out)
