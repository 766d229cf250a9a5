"""One adapter per tree target (mmn_fast and each peer), all taking closed intervals in the
target's own coordinates; the module each target needs."""

from __future__ import annotations

from array import array
from collections.abc import Callable
from typing import Any, cast


class Adapter:
    """What a workload needs from a target. ``None`` for an operation means "not offered"."""

    name = ""
    pages = False  # takes page numbers (32-bit peer) rather than bytes
    dynamic = True  # insert after a query is fine (no build step)

    def __init__(self) -> None:
        self.obj: Any = None

    def conv(self, v: int) -> int:
        return v >> 12 if self.pages else v

    def new(self) -> None:
        raise NotImplementedError

    def add(self, s: int, l: int, v: Any) -> Any:
        """Insert ``[s, l]`` (already converted); returns what ``remove`` needs."""
        raise NotImplementedError

    def finish(self) -> None:
        """The build step of a static index."""

    def insert_fn(self) -> Callable[[int, int, Any], Any] | None:
        """A fast callable ``(s, l, v) -> key`` for the timed insert loop."""
        return self.add

    def query_args(self, qs: int, ql: int) -> tuple[int, int]:
        return qs, ql

    def query_fn(self) -> Callable[[int, int], Any]:
        raise NotImplementedError

    def count_fn(self) -> Callable[[int, int], int] | None:
        return None

    def from_arrays(self, starts: list[int], lasts: list[int]) -> Callable[[], Any] | None:
        """A callable that builds the whole index from prepared arrays, or None."""
        return None

    def batch(self, qs: list[int], ql: list[int]) -> Callable[[], list[int]] | None:
        """A callable answering all queries at once, returning per-query match counts."""
        return None

    def churn_fns(self) -> tuple[Callable[[Any], Any], Callable[[int, int, Any], Any]] | None:
        """(remove(key), insert(s, l, v) -> key), or None for a static index."""
        return None


class MmnFast(Adapter):
    name = "mmn_fast"

    def new(self) -> None:
        from mmn_fast import IntervalTree

        self.obj = IntervalTree()

    def add(self, s: int, l: int, v: Any) -> Any:
        return self.obj.insert(s, l, v)

    def insert_fn(self) -> Callable[[int, int, Any], Any]:
        return cast("Callable[[int, int, Any], Any]", self.obj.insert)

    def query_fn(self) -> Callable[[int, int], Any]:
        return cast("Callable[[int, int], Any]", self.obj.overlap)

    def count_fn(self) -> Callable[[int, int], int]:
        return cast("Callable[[int, int], int]", self.obj.count_overlap)

    def from_arrays(self, starts: list[int], lasts: list[int]) -> Callable[[], Any]:
        from mmn_fast import IntervalTree

        a, b = array("Q", starts), array("Q", lasts)
        return lambda: IntervalTree.from_arrays(a, b)

    def batch(self, qs: list[int], ql: list[int]) -> Callable[[], list[int]]:
        a, b = array("Q", qs), array("Q", ql)
        m = len(qs)
        tree = self.obj

        def run() -> list[int]:
            idx, _ = tree.overlap_many(a, b)
            counts = [0] * m
            for i in idx:
                counts[i] += 1
            return counts

        self._batch_timed = lambda: tree.overlap_many(a, b)
        return run

    def churn_fns(self) -> tuple[Callable[[Any], Any], Callable[[int, int, Any], Any]]:
        return self.obj.remove, self.obj.insert


class PyIntervalTree(Adapter):
    name = "intervaltree"

    def new(self) -> None:
        import intervaltree  # type: ignore[import-untyped, import-not-found, unused-ignore]

        self.obj = intervaltree.IntervalTree()

    def add(self, s: int, l: int, v: Any) -> Any:
        self.obj.addi(s, l + 1, v)
        return (s, l + 1, v)

    def insert_fn(self) -> Callable[[int, int, Any], Any]:
        addi = self.obj.addi

        def ins(s: int, l: int, v: Any) -> Any:
            addi(s, l + 1, v)
            return (s, l + 1, v)

        return ins

    def query_args(self, qs: int, ql: int) -> tuple[int, int]:
        return qs, ql + 1

    def query_fn(self) -> Callable[[int, int], Any]:
        return cast("Callable[[int, int], Any]", self.obj.overlap)

    def from_arrays(self, starts: list[int], lasts: list[int]) -> Callable[[], Any]:
        import intervaltree  # type: ignore[import-untyped, import-not-found, unused-ignore]

        tuples = [(s, l + 1) for s, l in zip(starts, lasts, strict=True)]
        return lambda: intervaltree.IntervalTree.from_tuples(tuples)

    def churn_fns(self) -> tuple[Callable[[Any], Any], Callable[[int, int, Any], Any]]:
        removei = self.obj.removei
        return (lambda key: removei(*key)), self.insert_fn()


class KernelTree(Adapter):
    name = "kerneltree"

    def new(self) -> None:
        import kerneltree  # type: ignore[import-untyped, import-not-found, unused-ignore]

        self.obj = kerneltree.IntervalTree()

    def add(self, s: int, l: int, v: Any) -> Any:
        self.obj.add(s, l, v)

    def insert_fn(self) -> Callable[[int, int, Any], Any]:
        return cast("Callable[[int, int, Any], Any]", self.obj.add)

    def query_fn(self) -> Callable[[int, int], Any]:
        return cast("Callable[[int, int], Any]", self.obj.search)

    def from_arrays(self, starts: list[int], lasts: list[int]) -> Callable[[], Any]:
        import kerneltree  # type: ignore[import-untyped, import-not-found, unused-ignore]
        import numpy as np  # type: ignore[import-not-found, unused-ignore]

        a, b = np.array(starts, dtype=np.int64), np.array(lasts, dtype=np.int64)
        ids = np.arange(len(starts), dtype=np.int64)

        def build() -> Any:
            t = kerneltree.IntervalTree()
            t.build(a, b, ids)
            return t

        return build


class Ncls(Adapter):
    name = "ncls"
    dynamic = False

    def new(self) -> None:
        self._s: list[int] = []
        self._l: list[int] = []

    def add(self, s: int, l: int, v: Any) -> Any:
        self._s.append(s)
        self._l.append(l + 1)

    def finish(self) -> None:
        import numpy as np  # type: ignore[import-not-found, unused-ignore]
        from ncls import NCLS  # type: ignore[import-untyped, import-not-found, unused-ignore]

        self.obj = NCLS(
            np.array(self._s, dtype=np.int64),
            np.array(self._l, dtype=np.int64),
            np.arange(len(self._s), dtype=np.int64),
        )

    def insert_fn(self) -> None:
        return None

    def query_args(self, qs: int, ql: int) -> tuple[int, int]:
        return qs, ql + 1

    def query_fn(self) -> Callable[[int, int], Any]:
        find = self.obj.find_overlap
        return lambda a, b: list(find(a, b))

    def from_arrays(self, starts: list[int], lasts: list[int]) -> Callable[[], Any]:
        import numpy as np  # type: ignore[import-not-found, unused-ignore]
        from ncls import NCLS  # type: ignore[import-untyped, import-not-found, unused-ignore]

        a = np.array(starts, dtype=np.int64)
        b = np.array(lasts, dtype=np.int64) + 1
        ids = np.arange(len(starts), dtype=np.int64)
        return lambda: NCLS(a, b, ids)

    def batch(self, qs: list[int], ql: list[int]) -> Callable[[], list[int]]:
        import numpy as np  # type: ignore[import-not-found, unused-ignore]

        a = np.array(qs, dtype=np.int64)
        b = np.array(ql, dtype=np.int64) + 1
        ids = np.arange(len(qs), dtype=np.int64)
        tree = self.obj
        m = len(qs)

        def run() -> list[int]:
            qi, _ = tree.all_overlaps_both(a, b, ids)
            return [int(c) for c in np.bincount(qi, minlength=m)]

        self._batch_timed = lambda: tree.all_overlaps_both(a, b, ids)
        return run


class SuperIntervals(Adapter):
    name = "superintervals"
    pages = True
    dynamic = False

    def new(self) -> None:
        from superintervals import IntervalMap  # type: ignore[import-not-found, unused-ignore]

        self.obj = IntervalMap()

    def add(self, s: int, l: int, v: Any) -> Any:
        self.obj.add(s, l, v)

    def insert_fn(self) -> Callable[[int, int, Any], Any]:
        return cast("Callable[[int, int, Any], Any]", self.obj.add)

    def finish(self) -> None:
        self.obj.build()

    def query_fn(self) -> Callable[[int, int], Any]:
        return cast("Callable[[int, int], Any]", self.obj.search_values)

    def count_fn(self) -> Callable[[int, int], int]:
        return cast("Callable[[int, int], int]", self.obj.count)

    def from_arrays(self, starts: list[int], lasts: list[int]) -> Callable[[], Any]:
        from superintervals import IntervalMap  # type: ignore[import-not-found, unused-ignore]

        a, b = array("i", starts), array("i", lasts)

        def build() -> Any:
            m = IntervalMap.from_arrays(a, b)
            m.build()
            return m

        return build

    def batch(self, qs: list[int], ql: list[int]) -> Callable[[], list[int]]:
        a, b = array("i", qs), array("i", ql)
        tree = self.obj
        self._batch_timed = lambda: tree.search_idxs_batch(a, b)
        return lambda: [len(x) for x in tree.search_idxs_batch(a, b)]


class IntervalTreeRs(Adapter):
    name = "intervaltree-rs"
    pages = True

    def new(self) -> None:
        import intervaltree_rs  # type: ignore[import-not-found, unused-ignore]

        self.obj = intervaltree_rs.IntervalTree()

    def add(self, s: int, l: int, v: Any) -> Any:
        self.obj.insert((s, l + 1, v))
        return (s, l + 1)

    def insert_fn(self) -> Callable[[int, int, Any], Any]:
        insert = self.obj.insert

        def ins(s: int, l: int, v: Any) -> Any:
            insert((s, l + 1, v))
            return (s, l + 1)

        return ins

    def query_args(self, qs: int, ql: int) -> tuple[int, int]:
        return qs, ql + 1

    def query_fn(self) -> Callable[[int, int], Any]:
        return cast("Callable[[int, int], Any]", self.obj.search)

    def from_arrays(self, starts: list[int], lasts: list[int]) -> Callable[[], Any]:
        import intervaltree_rs  # type: ignore[import-not-found, unused-ignore]

        tuples = [(s, l + 1, None) for s, l in zip(starts, lasts, strict=True)]
        mod: Any = intervaltree_rs  # its stub types from_tuples' argument as trees, not tuples
        return lambda: mod.IntervalTree.from_tuples(tuples)

    def churn_fns(self) -> tuple[Callable[[Any], Any], Callable[[int, int, Any], Any]]:
        return self.obj.delete, self.insert_fn()


class QuicksectX(Adapter):
    name = "quicksectx"
    pages = True

    def new(self) -> None:
        import quicksectx  # type: ignore[import-untyped, import-not-found, unused-ignore]

        self.obj = quicksectx.IntervalTree()
        self._interval = quicksectx.Interval

    def add(self, s: int, l: int, v: Any) -> Any:
        iv = self._interval(s, l + 1, v)
        self.obj.insert(iv)
        return iv

    def insert_fn(self) -> Callable[[int, int, Any], Any]:
        insert, mk = self.obj.insert, self._interval

        def ins(s: int, l: int, v: Any) -> Any:
            iv = mk(s, l + 1, v)
            insert(iv)
            return iv

        return ins

    def query_args(self, qs: int, ql: int) -> tuple[int, int]:
        return qs, ql + 1

    def query_fn(self) -> Callable[[int, int], Any]:
        return cast("Callable[[int, int], Any]", self.obj.search)

    def churn_fns(self) -> tuple[Callable[[Any], Any], Callable[[int, int, Any], Any]]:
        return self.obj.remove, self.insert_fn()


class AiList(Adapter):
    name = "ailist"
    pages = True
    dynamic = False

    def new(self) -> None:
        import ailist  # type: ignore[import-untyped, import-not-found, unused-ignore]

        self.obj = ailist.AIList()

    def add(self, s: int, l: int, v: Any) -> Any:
        self.obj.add(s, l + 1)

    def insert_fn(self) -> Callable[[int, int, Any], Any]:
        add = self.obj.add
        return lambda s, l, v: add(s, l + 1)

    def finish(self) -> None:
        self.obj.construct()

    def query_args(self, qs: int, ql: int) -> tuple[int, int]:
        return qs, ql + 1

    def query_fn(self) -> Callable[[int, int], Any]:
        return cast("Callable[[int, int], Any]", self.obj.intersect_ids)

    def from_arrays(self, starts: list[int], lasts: list[int]) -> Callable[[], Any]:
        import ailist  # type: ignore[import-untyped, import-not-found, unused-ignore]
        import numpy as np  # type: ignore[import-not-found, unused-ignore]

        a = np.array(starts, dtype=np.int64)
        b = np.array(lasts, dtype=np.int64) + 1
        ids = np.arange(len(starts), dtype=np.int64)

        def build() -> Any:
            # `from_array` returns a new AIList (its docstring says "inplace", but the one it is
            # called on stays empty).
            t = ailist.AIList().from_array(a, b, ids)
            t.construct()
            return t

        return build


ADAPTERS: dict[str, type[Adapter]] = {
    a.name: a
    for a in (MmnFast, PyIntervalTree, KernelTree, Ncls, SuperIntervals, IntervalTreeRs, QuicksectX, AiList)
}

MODULES = {
    "mmn_fast": "mmn_fast",
    "intervaltree": "intervaltree",
    "kerneltree": "kerneltree",
    "ncls": "ncls",
    "superintervals": "superintervals",
    "intervaltree-rs": "intervaltree_rs",
    "quicksectx": "quicksectx",
    "ailist": "ailist",
    "mmn_fast.MM": "mmn_fast",
    "py-notifier": "intervaltree",
}
