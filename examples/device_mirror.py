"""Device mirror: the kernel's HMM test driver (``lib/test_hmm.c``) in user space.

Two simulated devices each mirror pages of a simulated CPU page table and hold an interval
subscription on one :class:`mmn_fast.MM`. One thread faults random 64-page chunks into them
(the ``read_begin`` / read / lock / ``read_retry`` loop) and takes snapshots through temporary
subscriptions; another thread writes, protects, unmaps and migrates pages, each change inside
``mm.invalidate(...)``. Afterwards every mirrored page must equal the page table.

Run::

    python examples/device_mirror.py --seconds 3 --seed 0
    python -m mmn_fast demo            # the same, from an installed wheel

The code lives in ``mmn_fast._tools.demo`` (so that ``python -m mmn_fast demo`` works without
this folder); this script re-exports its small class API for use as a module::

    from device_mirror import Cpu, Device

    cpu = Cpu()
    dev = Device(cpu, "dev0")
    cpu.write(0, 8)          # an invalidation; the CPU owns the page table
    dev.fault(0, 8)          # mirror pages 0..7
    cpu.unmap(2, 1)          # the start drops page 2 from the mirror
    assert 2 not in dev.mirror and cpu.verify() == []
"""

from __future__ import annotations

import sys

from mmn_fast._tools.demo import Cpu, Device, main, run_demo

__all__ = ["Cpu", "Device", "main", "run_demo"]

if __name__ == "__main__":
    sys.exit(main())
