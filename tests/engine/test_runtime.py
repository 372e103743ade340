"""chatapp.engine.runtime: the process's GC policy."""

from __future__ import annotations

import gc

from chatapp.engine import runtime as gcpolicy


def test_gc_policy_freezes_and_takes_over_full_collections():
    before = gc.get_threshold()
    try:
        task = gcpolicy.schedule_full_collections(3600)
        assert task is not None
        assert gc.get_threshold()[2] == gcpolicy.NEVER
        assert gc.get_freeze_count() > 0
        task.kill()
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
    assert gcpolicy.schedule_full_collections(0) is None
