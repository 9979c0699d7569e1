"""The Broker's segment cache (broker/segment_cache.py) over a stand-in object store (a local
directory behind pyarrow's filesystem API, the interface the S3 client has): each segment fetched
once, the size bound with LRU eviction, pinned files kept, verification and atomic placement, and a
restart that keeps what was complete. The real S3 server: tests/e2e/test_s3_deep_storage.py."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pyarrow.fs import LocalFileSystem, SubTreeFileSystem

from broker.catalog import Segment
from broker.config import BrokerSettings
from broker.errors import QueryUnavailable, ResourceLimitExceeded
from broker.segment_cache import INCOMING, SegmentCache, parse_size

pytestmark = pytest.mark.unit

BUCKET = "deep"


class Store:
    """Objects under ``root/<bucket>/<key>``; counts the objects opened."""

    def __init__(self, root: Path, delay_s: float = 0.0) -> None:
        self.root = root
        self.delay_s = delay_s
        self.opened: list[str] = []
        self.fs = SubTreeFileSystem(str(root), LocalFileSystem())
        inner = self

        class Counting(SubTreeFileSystem):  # type: ignore[misc]
            def open_input_stream(self, path: str, *args: Any, **kwargs: Any) -> Any:
                inner.opened.append(path)
                time.sleep(inner.delay_s)
                return inner.fs.open_input_stream(path, *args, **kwargs)

        self.counting = Counting(str(root), LocalFileSystem())

    def put(self, key: str, rows: int) -> Path:
        path = self.root / BUCKET / key
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.table({"__time": pa.array(range(rows), pa.int64()), "n": list(range(rows))}), path)
        return path


def _segment(cache: SegmentCache, store: Store, name: str, rows: int, **overrides: Any) -> Segment:
    path = store.put(f"segments/{name}.parquet", rows)
    payload = {
        "dataSource": "ds",
        "interval": "2024-01-01T00:00:00.000Z/2024-01-01T01:00:00.000Z",
        "version": "v1",
        "id": f"ds_2024_{name}",
        "loadSpec": {"type": "s3", "bucket": BUCKET, "key": f"segments/{name}.parquet"},
        "shardSpec": {"type": "numbered", "partitionNum": 0},
        "size": path.stat().st_size,
        "numRows": rows,
    } | overrides
    return Segment.from_payload(payload, cache)


def _cache(tmp_path: Path, store: Store, max_bytes: int = 10**9) -> SegmentCache:
    cache = SegmentCache(tmp_path / "cache", max_bytes)
    cache._filesystem = lambda options: store.counting  # type: ignore[method-assign]
    return cache


def test_a_segment_is_fetched_once_and_read_locally(tmp_path: Path) -> None:
    store = Store(tmp_path / "s3")
    cache = _cache(tmp_path, store)
    seg = _segment(cache, store, "a", 1000)
    assert seg.path.parent == cache.root, "an S3 segment is read from the cache"
    for _ in range(3):
        with cache.hold([seg]):
            assert duckdb.connect().execute(f"SELECT count(*) FROM '{seg.path}'").fetchall() == [(1000,)]
    assert store.opened == [f"{BUCKET}/segments/a.parquet"], "downloaded once"
    assert seg.path.read_bytes() == (store.root / BUCKET / "segments/a.parquet").read_bytes()
    assert not list((cache.root / INCOMING).iterdir())


def test_least_recently_used_files_make_room(tmp_path: Path) -> None:
    store = Store(tmp_path / "s3")
    probe = _cache(tmp_path / "probe", store)
    one = _segment(probe, store, "probe", 500).size
    cache = _cache(tmp_path, store, max_bytes=2 * one + one // 2)  # room for two
    a, b, c, d = (_segment(cache, store, n, 500) for n in "abcd")
    assert {a.size, b.size, c.size, d.size} == {one}
    for seg in (a, b, c):
        with cache.hold([seg]):
            pass
    assert cache.cached() == [b.path.name, c.path.name], "a, the least recently used, was deleted"
    assert not a.path.exists()
    with cache.hold([b]):  # b is used again: c is now the oldest
        pass
    with cache.hold([d]):
        pass
    assert cache.cached() == [b.path.name, d.path.name]
    assert sum(p.stat().st_size for p in cache.root.glob("*.parquet")) <= cache.max_bytes
    with cache.hold([a]):  # evicted segments come back when asked for
        assert a.path.exists()


def test_files_a_query_reads_are_never_evicted_under_it(tmp_path: Path) -> None:
    store = Store(tmp_path / "s3")
    probe = _cache(tmp_path / "probe", store)
    one = _segment(probe, store, "probe", 500).size
    cache = _cache(tmp_path, store, max_bytes=one + one // 2)  # room for one
    a, b = _segment(cache, store, "a", 500), _segment(cache, store, "b", 500)
    with cache.hold([a]):
        with (
            pytest.raises(ResourceLimitExceeded, match="does not fit in the Broker's segment cache"),
            cache.hold([b]),
        ):
            pass
        assert a.path.exists()
    with cache.hold([b]):  # once a's query ended, a makes room
        assert not a.path.exists() and b.path.exists()
    # one query whose segments cannot fit together
    with pytest.raises(ResourceLimitExceeded), cache.hold([a, b]):
        pass


def test_concurrent_queries_wait_for_one_download(tmp_path: Path) -> None:
    store = Store(tmp_path / "s3", delay_s=0.3)
    cache = _cache(tmp_path, store)
    seg = _segment(cache, store, "a", 2000)
    errors: list[BaseException] = []

    def query() -> None:
        try:
            with cache.hold([seg]):
                assert seg.path.stat().st_size == seg.size
        except BaseException as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=query) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert not errors
    assert len(store.opened) == 1 and cache.downloads == 1


def test_a_copy_that_does_not_check_out_is_never_placed(tmp_path: Path) -> None:
    store = Store(tmp_path / "s3")
    cache = _cache(tmp_path, store)
    wrong_size = _segment(cache, store, "a", 100, size=12345)
    with pytest.raises(QueryUnavailable, match="published with 12345"), cache.hold([wrong_size]):
        pass
    wrong_rows = _segment(cache, store, "b", 100, numRows=99)
    with pytest.raises(QueryUnavailable, match="holds 100 rows, 99 were written"), cache.hold([wrong_rows]):
        pass
    corrupt = _segment(cache, store, "c", 100, size=0)
    (store.root / BUCKET / "segments/c.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(QueryUnavailable, match="not a readable Parquet file"), cache.hold([corrupt]):
        pass
    missing = _segment(cache, store, "d", 10)
    (store.root / BUCKET / "segments/d.parquet").unlink()
    with pytest.raises(QueryUnavailable, match="not in deep storage"), cache.hold([missing]):
        pass
    assert cache.cached() == [] and not list(cache.root.glob("*.parquet"))
    assert not list((cache.root / INCOMING).iterdir()), "no partial file left"
    assert cache.used_bytes == 0, "failed downloads hold no room"


def test_a_restart_keeps_complete_files_and_drops_partial_ones(tmp_path: Path) -> None:
    store = Store(tmp_path / "s3")
    cache = _cache(tmp_path, store)
    a, b = _segment(cache, store, "a", 300), _segment(cache, store, "b", 300)
    with cache.hold([a, b]):
        pass
    (cache.root / INCOMING / "x.parquet.1234").write_bytes(b"half a download")
    again = _cache(tmp_path, store)
    assert sorted(again.cached()) == sorted([a.path.name, b.path.name])
    assert not list((again.root / INCOMING).iterdir())
    with again.hold([a, b]):
        pass
    assert len(store.opened) == 2, "nothing downloaded again"
    smaller = _cache(tmp_path, store, max_bytes=a.size + 10)
    assert len(smaller.cached()) == 1, "a smaller limit evicts at start"


def test_local_segments_are_read_in_place(tmp_path: Path) -> None:
    cache = SegmentCache(tmp_path / "cache", 1)
    file = tmp_path / "deep" / "x.parquet"
    file.parent.mkdir()
    pq.write_table(pa.table({"__time": [1]}), file)
    payload = {
        "dataSource": "ds",
        "interval": "2024-01-01T00:00:00.000Z/2024-01-02T00:00:00.000Z",
        "version": "v",
        "id": "ds_x",
        "loadSpec": {"type": "local", "path": str(file)},
    }
    seg = Segment.from_payload(payload, cache)
    assert seg.path == file
    with cache.hold([seg]):
        pass
    assert not (tmp_path / "cache").exists(), "no cache directory for file:// deep storage"


def test_sizes_and_settings() -> None:
    assert parse_size("10GiB") == 10 * 2**30
    assert parse_size("512MB") == 512 * 10**6
    assert parse_size("1.5 KiB") == 1536
    with pytest.raises(ValueError):
        parse_size("ten")
    settings = BrokerSettings(segment_cache_size="2GB", deep_storage="s3://b/p?endpoint=http://h:1")
    assert settings.segment_cache_bytes == 2 * 10**9
    with pytest.raises(ValueError, match="segment_cache_size"):
        BrokerSettings(segment_cache_size="lots")
    with pytest.raises(ValueError, match="unknown s3 parameter"):
        BrokerSettings(deep_storage="s3://b/p?colour=red")
