"""How several callback exceptions become one (API.md "Errors", SPEC D11).

The first exception is re-raised as it is; every later one is appended at the end of its
``__context__`` chain, never overwriting a link that is already there.
"""

from __future__ import annotations


def combine(errors: list[BaseException]) -> BaseException:
    """Chain ``errors[1:]`` behind ``errors[0]`` and return ``errors[0]`` (the one to raise)."""
    first = errors[0]
    for later in errors[1:]:
        _append(first, later)
    return first


def _append(head: BaseException, later: BaseException) -> None:
    seen = {id(head)}
    node = head
    while node.__context__ is not None:
        node = node.__context__
        if id(node) in seen:  # a cycle made by the callbacks themselves: do not loop
            return
        seen.add(id(node))
    if id(later) in seen:  # already reachable; linking again would make a cycle
        return
    node.__context__ = later
