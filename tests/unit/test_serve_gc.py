"""``cogway serve`` tunes the garbage collector for a long-running server (``quiet_gc``)."""

import gc

from server.cli.serve import GC_YOUNG_THRESHOLD, quiet_gc


def test_quiet_gc_freezes_what_exists_and_collects_young_objects_less_often() -> None:
    before = gc.get_threshold()
    try:
        quiet_gc()
        assert gc.get_freeze_count() > 0
        assert gc.get_threshold() == (GC_YOUNG_THRESHOLD, before[1], before[2])
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
