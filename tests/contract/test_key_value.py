"""The KeyValue port's contract, run against the in-memory fake and the RocksDB adapter alike."""

from __future__ import annotations

import pytest

from handoff.storage.kv import InMemoryKeyValue, RocksKeyValue


@pytest.fixture(params=["memory", "rocksdb"])
def kv(request, tmp_path):
    if request.param == "memory":
        yield InMemoryKeyValue()
        return
    store = RocksKeyValue(str(tmp_path / "db"))
    yield store
    store.close()


def _keys(pairs):
    return [k for k, _ in pairs]


def test_a_missing_key_reads_as_none(kv):
    assert kv.get(b"nope") is None


def test_a_put_value_is_read_back(kv):
    kv.write([(b"a", b"1")])
    assert kv.get(b"a") == b"1"


def test_a_put_overwrites_the_previous_value(kv):
    kv.write([(b"a", b"1")])
    kv.write([(b"a", b"2")])
    assert kv.get(b"a") == b"2"
    assert list(kv.scan(b"a")) == [(b"a", b"2")]


def test_an_empty_value_is_a_value_not_a_missing_key(kv):
    kv.write([(b"a", b"")])
    assert kv.get(b"a") == b""
    assert list(kv.scan(b"")) == [(b"a", b"")]


def test_a_delete_removes_the_key(kv):
    kv.write([(b"a", b"1"), (b"b", b"2")])
    kv.write([(b"a", None)])
    assert kv.get(b"a") is None
    assert list(kv.scan(b"")) == [(b"b", b"2")]


def test_deleting_a_missing_key_is_harmless(kv):
    kv.write([(b"ghost", None)])
    assert list(kv.scan(b"")) == []


def test_the_writes_of_one_call_apply_in_order_so_the_last_for_a_key_wins(kv):
    kv.write([(b"a", b"1"), (b"a", None), (b"b", b"1"), (b"b", b"2"), (b"c", None), (b"c", b"3")])
    assert list(kv.scan(b"")) == [(b"b", b"2"), (b"c", b"3")]


def test_a_multi_write_is_all_or_nothing_when_its_input_fails_midway(kv):
    kv.write([(b"keep", b"1")])

    def writes():
        yield (b"x", b"1")
        yield (b"keep", None)
        raise RuntimeError("the caller failed while producing the batch")

    with pytest.raises(RuntimeError):
        kv.write(writes())
    assert (kv.get(b"x"), kv.get(b"keep")) == (None, b"1")


@pytest.mark.parametrize("bad", [(b"y", "text"), (b"y", 5), ("y", b"1")], ids=["str-value", "int-value", "str-key"])
def test_a_multi_write_with_a_value_that_is_not_bytes_writes_nothing(kv, bad):
    kv.write([(b"keep", b"1")])
    with pytest.raises((ValueError, TypeError, KeyError)):  # rocksdict: KeyError for a str key
        kv.write([(b"x", b"1"), (b"keep", None), bad])
    assert list(kv.scan(b"")) == [(b"keep", b"1")]


def test_a_sync_write_is_read_back_like_any_other(kv):
    kv.write([(b"a", b"1")], sync=True)
    assert kv.get(b"a") == b"1"


def test_a_scan_yields_the_keys_under_a_prefix_in_byte_order(kv):
    kv.write([(k, k.upper()) for k in [b"p:b", b"p:a", b"p:\x00", b"p:\xff", b"p:aa", b"q:a", b"p", b"o:z"]])
    assert list(kv.scan(b"p:")) == [
        (b"p:\x00", b"P:\x00"),
        (b"p:a", b"P:A"),
        (b"p:aa", b"P:AA"),
        (b"p:b", b"P:B"),
        (b"p:\xff", b"P:\xff"),
    ]


def test_a_scan_of_the_empty_prefix_yields_everything(kv):
    kv.write([(b"b", b"2"), (b"a", b"1")])
    assert _keys(kv.scan(b"")) == [b"a", b"b"]


def test_a_scan_of_an_absent_prefix_is_empty(kv):
    kv.write([(b"a", b"1"), (b"c", b"1")])
    assert list(kv.scan(b"b")) == []


def test_a_scan_after_a_key_starts_strictly_after_it(kv):
    kv.write([(b"p:%d" % i, b"") for i in range(5)])
    assert _keys(kv.scan(b"p:", b"p:2")) == [b"p:3", b"p:4"]


def test_a_scan_after_a_key_that_is_not_stored_starts_at_the_next_one(kv):
    kv.write([(b"p:1", b""), (b"p:3", b"")])
    assert _keys(kv.scan(b"p:", b"p:2")) == [b"p:3"]


def test_a_scan_after_a_key_before_the_prefix_yields_the_whole_prefix(kv):
    kv.write([(b"a", b""), (b"p:1", b""), (b"p:2", b"")])
    assert _keys(kv.scan(b"p:", b"a")) == [b"p:1", b"p:2"]


def test_a_scan_after_a_key_past_the_prefix_is_empty(kv):
    kv.write([(b"p:1", b""), (b"q", b"")])
    assert list(kv.scan(b"p:", b"q")) == []


def test_a_scan_after_the_last_key_is_empty(kv):
    kv.write([(b"p:1", b"")])
    assert list(kv.scan(b"p:", b"p:1")) == []


def test_a_scan_of_a_prefix_ending_in_0xff_stops_at_the_end_of_that_prefix(kv):
    kv.write([(b"a\xff", b"1"), (b"a\xff\x00", b"2"), (b"a\xff\xff", b"3"), (b"b", b"4"), (b"a\xfe", b"0")])
    assert _keys(kv.scan(b"a\xff")) == [b"a\xff", b"a\xff\x00", b"a\xff\xff"]


def test_a_scan_of_an_all_0xff_prefix_reaches_the_end_of_the_keyspace(kv):
    kv.write([(b"\xfe", b""), (b"\xff", b""), (b"\xff\xff", b""), (b"\xff\xff\x01", b"")])
    assert _keys(kv.scan(b"\xff\xff")) == [b"\xff\xff", b"\xff\xff\x01"]
    assert _keys(kv.scan(b"\xff")) == [b"\xff", b"\xff\xff", b"\xff\xff\x01"]


def test_a_prefix_scan_pages_through_all_keys_with_after(kv):
    kv.write([(b"i:%03d" % i, b"%d" % i) for i in range(25)])
    kv.write([(b"j:000", b"")])
    seen, after = [], None
    while True:
        page = []
        for key, _ in kv.scan(b"i:", after):
            page.append(key)
            if len(page) == 10:
                break
        if not page:
            break
        seen += page
        after = page[-1]
    assert seen == [b"i:%03d" % i for i in range(25)]


def test_a_scan_sees_keys_written_before_it_started(kv):
    kv.write([(b"p:1", b"")])
    scan = kv.scan(b"p:")
    kv.write([(b"p:0", b"")])
    assert _keys(scan) == [b"p:0", b"p:1"]


def test_the_rocksdb_store_keeps_its_data_across_close_and_reopen(tmp_path):
    path = str(tmp_path / "db")
    store = RocksKeyValue(path)
    store.write([(b"a", b"1"), (b"b", b"2")], sync=True)
    store.write([(b"b", None), (b"c", b"\xff\x00")])
    store.close()
    reopened = RocksKeyValue(path)
    try:
        assert list(reopened.scan(b"")) == [(b"a", b"1"), (b"c", b"\xff\x00")]
    finally:
        reopened.close()


def test_the_rocksdb_store_reopened_read_only_reads_what_was_written(tmp_path):
    path = str(tmp_path / "db")
    store = RocksKeyValue(path)
    store.write([(b"a", b"1")], sync=True)
    store.close()
    reader = RocksKeyValue(path, read_only=True)
    try:
        assert reader.get(b"a") == b"1"
    finally:
        reader.close()


@pytest.mark.parametrize("prefix", [b"p:", b"", b"a\xff", b"\xff", b"zz"])
def test_values_are_the_values_of_a_scan_in_the_same_order(kv, prefix):
    kv.write([(k, b"v" + k) for k in [b"p:b", b"p:a", b"q:a", b"a\xff", b"a\xff\x01", b"\xff", b"\xff\xff", b"o"]])
    assert list(kv.values(prefix)) == [value for _, value in kv.scan(prefix)]
