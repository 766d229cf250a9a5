"""Buffers of u64 in and out of the native batch calls (API.md "Input conventions").

The wheel targets the stable ABI of CPython 3.9, which has no buffer API, so a buffer is
checked here and handed to Rust as the bytes of its items (one memcpy, also for a
non-contiguous view); results come back as bytes and leave as ``array('Q')``.
"""

from __future__ import annotations

import operator
from array import array
from typing import Any

_U64_FORMATS = frozenset({"Q", "@Q", "=Q", "L", "@L"})


def u64_bytes(obj: Any, name: str) -> bytes:
    """The items of a buffer of native unsigned 64-bit integers (or of a sequence of ints) as
    native-endian bytes. Any other item format, and ``bytes`` / ``bytearray``, is TypeError."""
    if isinstance(obj, (bytes, bytearray, str)):
        raise TypeError(f"{name} must be a buffer of u64 or a sequence of ints, not {type(obj).__name__}")
    try:
        view = memoryview(obj)
    except TypeError:
        return _sequence_bytes(obj, name)
    with view:
        if view.format not in _U64_FORMATS or view.itemsize != 8:
            raise TypeError(
                f"{name} must hold native unsigned 64-bit integers (format 'Q'), not format {view.format!r}"
            )
        if view.ndim != 1:
            raise TypeError(f"{name} must be one-dimensional, not {view.ndim}-dimensional")
        return view.tobytes()


def _sequence_bytes(obj: Any, name: str) -> bytes:
    try:
        items = list(obj)
    except TypeError:
        raise TypeError(f"{name} must be a buffer of u64 or a sequence of ints, not {type(obj).__name__}") from None
    try:
        return array("Q", items).tobytes()  # plain ints: converted in C
    except (TypeError, OverflowError):
        pass  # objects with __index__, or a bad item: the loop below says which
    words = array("Q")
    for item in items:
        if isinstance(item, (float, str, bytes)) or item is None:
            raise TypeError(f"{name} items must be ints, not {type(item).__name__}")
        value = operator.index(item)
        if not 0 <= value < 1 << 64:
            raise OverflowError(f"{name} item {value} is outside 0 .. 2**64-1")
        words.append(value)
    return words.tobytes()


def u64_array(data: bytes) -> array[int]:
    """Native-endian u64 bytes as an ``array('Q')``."""
    out = array("Q")
    out.frombytes(data)
    return out
