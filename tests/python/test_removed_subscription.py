"""A removed subscription stays readable (issue 10, item 8; API.md "IntervalNotifier"): after
``remove()`` its attributes keep their last values and ``invalidate_seq``, ``read_begin``,
``read_retry`` and ``check_retry`` answer exactly as they did before, including while another
thread removes it during a running epoch."""

from __future__ import annotations

import threading

import pytest

from mmn_fast import Range

from conftest import Bg, Ops, wait_until


def _answers(sub, seqs):
    return (sub.invalidate_seq, sub.read_begin(timeout=1), [sub.read_retry(s) for s in seqs],
            [sub.check_retry(s) for s in seqs], sub.start, sub.last, sub.length, sub.tag, sub.ops)


@pytest.mark.parametrize("ops", [None, Ops()], ids=["native", "callback"])
def test_idle_remove_keeps_answers(mm, ops):
    sub = mm.insert_interval_notifier(0, 0x1000, ops, tag="t")
    old = sub.read_begin()
    with mm.invalidate(0, 0x10):
        pass
    seqs = [old, sub.invalidate_seq, 0, 2**64 - 1]
    before = _answers(sub, seqs)
    sub.remove()
    assert _answers(sub, seqs) == before
    assert sub.read_retry(old) and not sub.read_retry(sub.invalidate_seq)
    with pytest.raises(ValueError):
        sub.set_seq(sub.invalidate_seq)  # no longer subscribed: set_seq is refused
    with pytest.raises(ValueError):
        sub.remove()


@pytest.mark.parametrize("ops", [None, Ops()], ids=["native", "callback"])
def test_deferred_remove_keeps_last_values(mm, ops):
    """Removed during an epoch that then invalidates it: the answers after the closing end are
    those of the last state in the tree (the epoch's seq)."""
    sub = mm.insert_interval_notifier(0, 0x1000, ops)
    old = sub.read_begin()
    r = Range(0x2000, 0x3000)
    mm.invalidate_range_start(r)  # opens no epoch over sub; seq stays even (no hit)
    hit = Range(0, 0x10)
    mm.invalidate_range_start(hit)  # hits sub: epoch odd
    bg = Bg(sub.remove)
    assert bg.blocked()
    mm.invalidate_range_start(Range(0, 0x10))  # joins the epoch, calls it again
    during = sub.invalidate_seq
    mm.invalidate_range_end(hit)
    mm.invalidate_range_end(r)
    mm.invalidate_range_end(Range(0, 0x10))
    bg.join()
    assert sub.invalidate_seq == during
    assert sub.read_begin(timeout=1) == during
    assert sub.read_retry(old) and sub.check_retry(old)
    assert not sub.read_retry(during) and not sub.check_retry(during)


def test_readers_racing_with_remove_never_fail(mm):
    """A device's fault loop reading while another thread removes: no exception, and the seq
    answers are consistent (read_retry(read_begin()) is false once nothing invalidates)."""
    errors = []
    for round_ in range(50):
        sub = mm.insert_interval_notifier(0, 0x1000, Ops())
        stop = threading.Event()

        def reader(sub=sub, stop=stop):
            try:
                while not stop.is_set():
                    s = sub.read_begin(timeout=5)
                    sub.read_retry(s)
                    sub.check_retry(s)
                    _ = sub.invalidate_seq
            except BaseException as exc:
                errors.append(exc)

        t = threading.Thread(target=reader, daemon=True)
        t.start()
        if round_ % 2:
            with mm.invalidate(0, 0x10):
                Bg(sub.remove)
                wait_until(lambda: True, 0.001)
        else:
            sub.remove()
        stop.set()
        t.join(5)
        s = sub.read_begin(timeout=1)
        assert not sub.read_retry(s)
    assert errors == []
