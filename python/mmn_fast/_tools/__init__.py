"""Tooling shipped beside the library: the ``bench`` and ``demo`` commands of
``python -m mmn_fast``.

Nothing here is imported by ``import mmn_fast`` and nothing here is public API; the runtime
layers are the modules one level up. The tools ship in the wheel so that a user can run the
comparison and the demo on their own machine (``python -m mmn_fast bench``, ``python -m
mmn_fast demo``) without a source checkout.
"""
