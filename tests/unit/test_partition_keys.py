"""`PartitionStore`: data keys copied from ``handoff.keys`` into its store (docs/erasure.md), and its limits."""

from __future__ import annotations

from pathlib import Path

from handoff.kernel.types import Limits
from handoff.storage import datakeys as DK
from streams.partition import PartitionStore


def _store(path: Path) -> PartitionStore:
    return PartitionStore(path, 0, limits=Limits(), clock=lambda: "2026-01-01T00:00:00.000Z", new_id=lambda: "id")


def test_keys_are_kept_tombstones_delete_them_and_each_offset_is_loaded_once(tmp_path: Path) -> None:
    store = _store(tmp_path / "p0")
    a, b = DK.DataCipher.new().key, DK.DataCipher.new().key
    try:
        assert store.load_keys([(0, b"s1", a), (1, b"s2", b), (2, b"s1", None)]) == 3
        assert store.kv.get(DK.data_key("s1")) is None and store.kv.get(DK.data_key("s2")) == b
        assert store.keys_loaded == 2
        assert store.engine.datakeys.cipher("s2") is not None  # the engine reads the keys just loaded
        assert store.load_keys([(1, b"s1", a), (2, b"s1", a)]) == 0  # already loaded: not applied again
        assert store.kv.get(DK.data_key("s1")) is None
    finally:
        store.close()


def test_a_malformed_key_record_is_skipped_and_the_position_still_moves(tmp_path: Path) -> None:
    store = _store(tmp_path / "p0")
    try:
        assert store.load_keys([(5, b"s1", b"short"), (6, None, b"x" * DK.KEY_BYTES)]) == 0
        assert store.kv.get(DK.data_key("s1")) is None and store.keys_loaded == 5
    finally:
        store.close()


def test_limits_set_by_a_configuration_change_hold_for_the_engine_a_key_load_builds_afresh(tmp_path: Path) -> None:
    store = _store(tmp_path / "p0")
    tight = Limits(content_max_bytes=100)
    try:
        store.limits = tight
        assert store.engine.limits == tight
        store.load_keys([(0, b"s1", DK.DataCipher.new().key)])  # builds a new engine (its key cache was stale)
        assert store.engine.limits == tight
    finally:
        store.close()
