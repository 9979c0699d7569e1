"""The ingest engine's ``rollup``, ``runs``, ``merge`` and ``segments`` modules: the cheap sort
and merge paths give exactly the full sort's rows.

The reference everywhere is the plain algorithm: concatenate, stable sort by every key
(``sort_table``), then with rollup merge equal neighbours (``merge_sorted_duplicates``).
Rows are compared exactly (floats by their bits, so ``-0.0``/``0.0`` and NaN count).
"""

from __future__ import annotations

import hashlib
import json
import math
import random
from collections.abc import Callable
from itertools import pairwise
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from middlemanager.ingest import merge as merge_module
from middlemanager.ingest import rollup as rollup_module
from middlemanager.ingest import runs as runs_module
from middlemanager.ingest import segments
from middlemanager.ingest.rollup import finalize_run, merge_sorted_duplicates, sort_keys_of, sort_table
from middlemanager.ingest.runs import RunPart, write_run_part
from middlemanager.ingest.schema import TIME, ColumnPlan
from middlemanager.ingest.segments import write_segment
from supervisor.spec import parse_supervisor_spec

MULTI = "\x00m" + json.dumps(["p", "q"])  # a stored multi-value row
ESCAPED = "\x00s\x00x"  # a stored real string starting with NUL


def make_plan() -> ColumnPlan:
    spec = parse_supervisor_spec(
        {
            "type": "kafka",
            "spec": {
                "dataSchema": {
                    "dataSource": "events",
                    "timestampSpec": {"column": "ts", "format": "auto"},
                    "dimensionsSpec": {"dimensions": ["page", "user", {"name": "n", "type": "long"}]},
                    "metricsSpec": [
                        {"type": "count", "name": "count"},
                        {"type": "longSum", "name": "added", "fieldName": "added"},
                        {"type": "doubleSum", "name": "score", "fieldName": "score"},
                    ],
                    "granularitySpec": {"segmentGranularity": "DAY", "queryGranularity": "NONE"},
                },
                "ioConfig": {
                    "topic": "events",
                    "inputFormat": {"type": "json"},
                    "consumerProperties": {"bootstrap.servers": "localhost:9092"},
                },
                "tuningConfig": {"type": "kafka"},
            },
        }
    )
    return ColumnPlan(spec.data_schema)


PLAN = make_plan()
INTERNAL = PLAN.internal_schema()
FLOATS = [0.0, -0.0, 1.5, -2.25, math.nan, None, 1e300, 3.0]


def random_table(
    rng: random.Random, n: int, times: Callable[[], int], *, pages: int = 4, strings: list[Any] | None = None
) -> pa.Table:
    """Internal-schema rows with many ties: few dimension values, nulls, odd floats."""
    values = strings if strings is not None else ["a", "b", None, "c d"]
    columns = {
        TIME: [times() for _ in range(n)],
        "d0": [rng.choice([*(f"p{i}" for i in range(pages)), None]) for _ in range(n)],
        "d1": [rng.choice(values) for _ in range(n)],
        "d2": [rng.choice([1, 2, None, -5]) for _ in range(n)],
        "m0": [1] * n,
        "m1": [rng.randrange(-5, 100) for _ in range(n)],
        "m2": [rng.choice([*FLOATS, rng.random() * 1e6]) for _ in range(n)],
    }
    return pa.Table.from_pydict(columns, schema=INTERNAL)


def reference(tables: list[pa.Table], rollup: bool) -> pa.Table:
    keys = sort_keys_of(PLAN, rollup)
    table = sort_table(pa.concat_tables(tables), keys)
    return merge_sorted_duplicates(table, PLAN, keys) if rollup else table


def as_run(table: pa.Table, rollup: bool) -> pa.Table:
    return reference([table], rollup)


def exact(table: pa.Table) -> list[tuple[Any, ...]]:
    """Rows with floats replaced by their exact text (``-0.0`` differs from ``0.0``, NaN from NaN)."""

    def key(value: Any) -> Any:
        return value.hex() if isinstance(value, float) else value

    columns = [table.column(i).to_pylist() for i in range(table.num_columns)]
    return [tuple(key(v) for v in row) for row in zip(*columns, strict=True)]


# ----------------------------------------------------------------------------- merging pieces


LAYOUTS = ["disjoint", "touching", "overlapping", "interleaved", "all-tied", "nested", "mixed"]


def pieces_for(layout: str, rng: random.Random, rollup: bool) -> list[pa.Table]:
    k = rng.randrange(2, 6)
    pieces = []
    for i in range(k):
        n = rng.randrange(1, 400)
        if layout == "disjoint":
            lo, hi = 1000 * i, 1000 * i + 500
        elif layout == "touching":  # neighbours share their boundary time
            lo, hi = 50 * i, 50 * (i + 1)
        elif layout == "overlapping":
            lo = rng.randrange(0, 200)
            hi = lo + rng.randrange(0, 100)
        elif layout == "interleaved":  # overlapping ranges, but no time in two pieces
            base = rng.randrange(0, 50)
            table = random_table(rng, n, lambda base=base, i=i, k=k: (base + rng.randrange(100)) * k + i)
            pieces.append(as_run(table, rollup))
            continue
        elif layout == "all-tied":
            lo, hi = 7, 9
        elif layout == "nested":  # a long piece with short ones inside and around it
            lo, hi = (
                (0, 300)
                if i == 0
                else (lambda low: (low, low + rng.randrange(0, 20)))(rng.randrange(-10, 380))
            )
        else:
            lo = rng.choice([0, 100, 200])
            hi = lo + rng.choice([0, 3, 150])
        pieces.append(as_run(random_table(rng, n, lambda lo=lo, hi=hi: rng.randint(lo, hi)), rollup))
    rng.shuffle(pieces)  # run order is not time order
    return pieces


@pytest.mark.parametrize("rollup", [False, True])
@pytest.mark.parametrize("layout", LAYOUTS)
def test_merging_pieces_equals_the_full_sort(layout: str, rollup: bool) -> None:
    keys = sort_keys_of(PLAN, rollup)
    for seed in range(12):
        rng = random.Random(f"{layout}-{rollup}-{seed}")
        pieces = pieces_for(layout, rng, rollup)
        merged = merge_module.merge_pieces(pieces, PLAN, keys, rollup)
        assert exact(merged) == exact(reference(pieces, rollup)), (layout, seed)


def test_overlaps() -> None:
    overlaps = merge_module._overlaps
    assert overlaps([(0, 10), (20, 30)]) == []
    assert overlaps([(20, 30), (0, 10), (10, 20)]) == [(10, 10), (20, 20)]
    assert overlaps([(0, 100), (5, 7), (6, 9), (50, 200), (300, 300), (300, 301)]) == [
        (5, 9),
        (50, 100),
        (300, 300),
    ]
    assert overlaps([(0, 10), (0, 10), (0, 10)]) == [(0, 10)]


def test_disjoint_pieces_are_concatenated_without_copying() -> None:
    rng = random.Random(3)
    pieces = [
        as_run(random_table(rng, 300, lambda i=i: rng.randrange(100 * i, 100 * i + 99)), False)
        for i in (2, 0, 1)
    ]
    merged = merge_module.merge_pieces(pieces, PLAN, sort_keys_of(PLAN, False), False)
    assert exact(merged) == exact(reference(pieces, False))
    buffers = {b.address for p in pieces for chunk in p.column("d0").chunks for b in chunk.buffers() if b}
    assert all(b.address in buffers for chunk in merged.column("d0").chunks for b in chunk.buffers() if b)


def test_rollup_sums_keep_the_order_of_the_full_sort() -> None:
    """Doubles summed in another order can differ in the last bit: the merge must keep run order."""
    rng = random.Random(8)
    pieces = []
    for _ in range(5):
        table = pa.Table.from_pydict(
            {
                TIME: [rng.randrange(3) for _ in range(200)],
                "d0": [rng.choice(["x", "y"]) for _ in range(200)],
                "d1": ["z"] * 200,
                "d2": [1] * 200,
                "m0": [1] * 200,
                "m1": [1] * 200,
                "m2": [rng.choice([1e16, 1.0, -1e16, 0.1, 3.3]) for _ in range(200)],
            },
            schema=INTERNAL,
        )
        pieces.append(as_run(table, True))
    merged = merge_module.merge_pieces(pieces, PLAN, sort_keys_of(PLAN, True), True)
    assert exact(merged) == exact(reference(pieces, True))


# ----------------------------------------------------------------------------- finalize_run


def chunked(table: pa.Table, rng: random.Random) -> pa.Table:
    cuts = sorted(rng.sample(range(1, table.num_rows), min(5, table.num_rows - 1)))
    return pa.concat_tables(
        [table.slice(a, b - a) for a, b in zip([0, *cuts], [*cuts, table.num_rows], strict=True)]
    )


@pytest.mark.parametrize("rollup", [False, True])
@pytest.mark.parametrize("shape", ["random", "increasing", "ties-in-order", "strictly-increasing"])
def test_finalize_run_equals_the_full_sort(shape: str, rollup: bool) -> None:
    for seed in range(10):
        rng = random.Random(f"{shape}-{rollup}-{seed}")
        n = rng.randrange(2, 600)
        table = random_table(rng, n, lambda rng=rng: rng.randrange(50))
        if shape == "increasing":
            table = table.set_column(0, TIME, pa.array(sorted(table.column(TIME).to_pylist()), pa.int64()))
        elif shape == "ties-in-order":
            table = table.set_column(0, TIME, pa.array([i // 3 for i in range(n)], pa.int64()))
        elif shape == "strictly-increasing":
            table = table.set_column(0, TIME, pa.array([5 * i for i in range(n)], pa.int64()))
        if seed % 2:
            table = chunked(table, rng)
        assert exact(finalize_run(table, PLAN, rollup)) == exact(reference([table], rollup)), seed


def test_finalize_run_leaves_rows_in_strict_time_order_alone() -> None:
    rng = random.Random(1)
    table = random_table(rng, 500, iter(range(0, 5000, 10)).__next__)
    assert finalize_run(table, PLAN, False) is table
    assert finalize_run(table, PLAN, True) is table


def test_finalize_run_drops_missing_columns_from_the_sort() -> None:
    """Runs persisted before a schemaless dimension appeared lack its column."""
    rng = random.Random(2)
    table = random_table(rng, 300, lambda: rng.randrange(20)).drop_columns(["d1"])
    for rollup in (False, True):
        keys = [k for k in sort_keys_of(PLAN, rollup) if k != "d1"]
        expected = sort_table(table, keys)
        if rollup:
            expected = merge_sorted_duplicates(expected, PLAN, keys)
        assert exact(finalize_run(table, PLAN, rollup)) == exact(expected)


# ----------------------------------------------------------------------------- helpers


def test_gather_equals_take() -> None:
    rng = random.Random(4)
    table = chunked(random_table(rng, 1000, lambda: rng.randrange(10)), rng)
    identity = pa.array(range(1000), pa.uint64())
    assert rollup_module.gather(table, identity) is table
    few_runs = pa.array([*range(600, 1000), *range(0, 300), *range(300, 600)], pa.int64())
    scattered = pa.array(rng.sample(range(1000), 1000), pa.int64())
    for indices in (few_runs, scattered, pa.array([7], pa.int64()), pa.array([], pa.int64())):
        assert exact(rollup_module.gather(table, indices)) == exact(table.take(indices))


def test_has_nul_never_misses_an_encoded_value() -> None:
    has_nul = runs_module.has_nul
    assert not has_nul(pa.array(["a", "bc", None, ""]))
    assert not has_nul(pa.array([None, None], pa.string()))
    assert not has_nul(pa.array([], pa.string()))
    assert has_nul(pa.array(["a", MULTI]))
    assert has_nul(pa.array(["a", ESCAPED]))
    assert has_nul(pa.array(["a\x00b"]))  # NUL inside: a false alarm is fine, the exact check follows
    sliced = pa.array([MULTI, "a", "b", ESCAPED])
    assert not has_nul(sliced.slice(1, 2))
    assert has_nul(sliced.slice(2, 2))
    assert has_nul(pa.chunked_array([pa.array(["a"]), pa.array([None, MULTI])]))
    assert not has_nul(pa.chunked_array([pa.array(["a"]), sliced.slice(1, 2)]))
    assert has_nul(pa.array(["a"], pa.large_string()))  # unknown layout: says "maybe"


# ----------------------------------------------------------------------------- write_segment


def digest(files: list[Any]) -> list[tuple[str, str]]:
    return [(f.path.name, hashlib.sha256(f.path.read_bytes()).hexdigest()) for f in files]


def write(parts: list[Any], out: Path, rollup: bool, **kwargs: Any) -> list[Any]:
    out.mkdir(parents=True, exist_ok=True)
    return write_segment(
        parts,
        PLAN,
        rollup_enabled=rollup,
        start_ms=0,
        end_ms=86_400_000,
        out_dir=out,
        max_rows_per_segment=kwargs.pop("max_rows", 10**9),
        **kwargs,
    )


def spill(tables: list[pa.Table], directory: Path) -> list[RunPart]:
    directory.mkdir(parents=True, exist_ok=True)
    parts = []
    for index, table in enumerate(tables):
        path = directory / f"{index}.arrow"
        write_run_part(path, table)
        parts.append(RunPart(0, table.num_rows, path=path))
    return parts


def internal_rows(files: list[Any]) -> list[tuple[Any, ...]]:
    """Rows of the Parquet files, with internal names (plain strings, no multi-values here)."""
    tables = [pq.read_table(f.path) for f in files]
    table = pa.concat_tables(tables) if tables else pa.table({})
    return exact(pa.Table.from_arrays(table.columns, names=INTERNAL.names))


def runs_in_time_order(rng: random.Random, rollup: bool, count: int, rows: int) -> list[pa.Table]:
    """Runs like a stream in time order: each run a later time range, sharing its boundary time."""
    return [
        as_run(random_table(rng, rows, lambda i=i: rng.randint(40 * i, 40 * (i + 1))), rollup)
        for i in range(count)
    ]


def runs_overlapping(rng: random.Random, rollup: bool, count: int, rows: int) -> list[pa.Table]:
    return [as_run(random_table(rng, rows, lambda: rng.randrange(300)), rollup) for _ in range(count)]


@pytest.mark.parametrize("rollup", [False, True])
@pytest.mark.parametrize("make_runs", [runs_in_time_order, runs_overlapping])
def test_write_segment_from_spills_equals_the_full_sort(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    make_runs: Callable[[random.Random, bool, int, int], list[pa.Table]],
    rollup: bool,
) -> None:
    monkeypatch.setattr(runs_module, "SPILL_BATCH_ROWS", 97)  # many batches, cut anywhere
    rng = random.Random(f"{make_runs.__name__}-{rollup}")
    runs = make_runs(rng, rollup, 8, 700)
    expected = exact(reference(runs, rollup))
    parts: list[Any] = [*spill(runs[:-1], tmp_path / "spill"), RunPart(0, runs[-1].num_rows, table=runs[-1])]

    sliced = write(parts, tmp_path / "sliced", rollup, slice_rows=500)
    assert internal_rows(sliced) == expected
    # The same bytes whatever the slicing, whether runs are read from files or opened whole,
    # and whatever the persist points were (here: one run holding every row).
    whole = write(parts, tmp_path / "whole", rollup)
    opened = write([part.open() for part in parts], tmp_path / "opened", rollup, slice_rows=333)
    single = write([reference(runs, rollup)], tmp_path / "single", rollup, slice_rows=1000)
    assert digest(sliced) == digest(whole) == digest(opened) == digest(single)
    # Shards continue each other.
    sharded = write(parts, tmp_path / "sharded", rollup, slice_rows=500, max_rows=1234)
    assert len(sharded) > 1 and internal_rows(sharded) == expected


def test_write_segment_holds_about_one_slice_not_every_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(runs_module, "SPILL_BATCH_ROWS", 500)
    monkeypatch.setattr(segments, "ROW_GROUP_ROWS", 2000)  # rows wait for a full row group
    rng = random.Random(7)
    for name, make_runs in (("in-order", runs_in_time_order), ("overlapping", runs_overlapping)):
        runs = make_runs(rng, False, 30, 4000)
        spilled_bytes = sum(t.nbytes for t in runs)
        parts = spill(runs, tmp_path / name)
        del runs
        base = pa.total_allocated_bytes()
        peak = [0]
        real_write = segments._ShardWriter.write

        def watching(
            self: Any, table: pa.Table, real: Any = real_write, base: int = base, peak: list[int] = peak
        ) -> None:
            peak[0] = max(peak[0], pa.total_allocated_bytes() - base)
            real(self, table)

        monkeypatch.setattr(segments._ShardWriter, "write", watching)
        files = write(parts, tmp_path / f"{name}-out", False, slice_rows=4000)
        assert sum(f.num_rows for f in files) == 120_000
        assert 0 < peak[0] < spilled_bytes / 5, (name, peak[0], spilled_bytes)


def test_slices_read_only_their_batches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A run in time order is read once: each batch in about one slice, none at the start."""
    monkeypatch.setattr(runs_module, "SPILL_BATCH_ROWS", 100)
    rng = random.Random(5)
    runs = runs_in_time_order(rng, False, 10, 1000)
    parts = spill(runs, tmp_path / "spill")
    reads: list[int] = []
    real_get_batch = pa.ipc.RecordBatchFileReader.get_batch

    def counting(self: Any, index: int) -> pa.RecordBatch:
        batch = real_get_batch(self, index)
        if batch.num_columns > 1:  # not the __time-only pass
            reads.append(batch.num_rows)
        return batch

    monkeypatch.setattr(pa.ipc.RecordBatchFileReader, "get_batch", counting)
    files = write(parts, tmp_path / "out", False, slice_rows=800)
    assert sum(f.num_rows for f in files) == 10_000
    assert sum(reads) < 10_000 * 1.3


def test_multi_value_columns_are_recorded_in_spill_files(tmp_path: Path) -> None:
    rng = random.Random(6)
    plain = as_run(random_table(rng, 500, lambda: rng.randrange(1000, 2000)), False)
    with_multi = as_run(
        random_table(rng, 500, lambda: rng.randrange(0, 3000), strings=["a", MULTI, ESCAPED]), False
    )
    parts = spill([plain, with_multi], tmp_path / "spill")
    assert [runs_module._FileRun(p.path, p.num_rows).multi_value_columns() for p in parts if p.path] == [
        set(),
        {"d1"},
    ]
    # A file without the metadata is scanned instead.
    bare = tmp_path / "bare.arrow"
    with pa.OSFile(str(bare), "wb") as sink, pa.ipc.new_file(sink, with_multi.schema) as writer:
        writer.write_table(with_multi, max_chunksize=64)
    assert runs_module._FileRun(bare, with_multi.num_rows).multi_value_columns() == {"d1"}

    files = write(parts, tmp_path / "out", False, slice_rows=200)
    table = pq.read_table(files[0].path)
    assert table.schema.field("user").type == pa.list_(pa.string())
    assert table.schema.field("page").type == pa.string()
    users = table.column("user").to_pylist()
    assert ["p", "q"] in users and ["\x00x"] in users and ["a"] in users
    assert users.count(None) == plain.column("d1").to_pylist().count(None)
    escaped = write(
        [as_run(random_table(rng, 50, lambda: 1, strings=[ESCAPED, "b"]), False)], tmp_path / "esc", False
    )
    assert set(pq.read_table(escaped[0].path).column("user").to_pylist()) == {"\x00x", "b"}


def test_parquet_encodings(tmp_path: Path) -> None:
    rng = random.Random(9)
    runs = [as_run(random_table(rng, 2000, lambda: rng.randrange(10**6), strings=["a", MULTI]), False)]
    files = write(runs, tmp_path / "out", False)
    metadata = pq.read_metadata(files[0].path).row_group(0)
    encodings = {
        metadata.column(i).path_in_schema: metadata.column(i).encodings for i in range(metadata.num_columns)
    }
    compressions = {metadata.column(i).compression for i in range(metadata.num_columns)}
    assert compressions == {"ZSTD"}
    assert "DELTA_BINARY_PACKED" in encodings[TIME] and "RLE_DICTIONARY" not in encodings[TIME]
    for path in ("page", "user.list.element", "n", "count", "added", "score"):
        assert "RLE_DICTIONARY" in encodings[path], path
    assert pq.read_table(files[0].path).column(TIME).to_pylist() == runs[0].column(TIME).to_pylist()


def test_parquet_bytes_do_not_depend_on_how_rows_are_chunked(tmp_path: Path) -> None:
    """Big enough for several pages and a dictionary fallback, where Arrow follows input chunks."""
    rng = random.Random(10)
    n = 120_000
    schema = pa.schema([pa.field(TIME, pa.int64(), nullable=False), ("s", pa.string()), ("x", pa.float64())])
    table = pa.Table.from_pydict(
        {
            TIME: sorted(rng.randrange(10**9) for _ in range(n)),
            "s": [f"value-{rng.randrange(10**12):012d}" for _ in range(n)],
            "x": [rng.random() for _ in range(n)],
        },
        schema=schema,
    )

    def written(source: pa.Table, name: str) -> str:
        out = tmp_path / name
        out.mkdir()
        writer = segments._ShardWriter(out, 0, 1, schema, 10**9, ["s"], ["x"])
        offset = 0
        while offset < n:
            size = rng.randrange(1, 30_000)
            writer.write(source.slice(offset, size))
            offset += size
        (file,) = writer.close()
        return hashlib.sha256(file.path.read_bytes()).hexdigest()

    contiguous = written(table.combine_chunks(), "contiguous")
    cuts = sorted(rng.sample(range(1, n), 300))
    pieces = [table.slice(a, b - a) for a, b in zip([0, *cuts], [*cuts, n], strict=True)]
    assert written(pa.concat_tables(pieces), "chunked") == contiguous


def test_empty_parts_write_nothing(tmp_path: Path) -> None:
    empty = INTERNAL.empty_table()
    assert write([empty, RunPart(0, 0, table=empty)], tmp_path / "out", True) == []


def test_time_slices_are_aligned_and_ordered(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runs_module, "SPILL_BATCH_ROWS", 64)
    rng = random.Random(11)
    runs = runs_overlapping(rng, False, 6, 500)
    parts = spill(runs[:3], tmp_path / "spill")
    sources = [runs_module.as_run(p) for p in [*parts, *runs[3:]]]
    slices = list(merge_module.time_slices(sources, 400))
    assert len(slices) > 4
    assert sum(p.num_rows for pieces in slices for p in pieces) == sum(r.num_rows for r in runs)
    bounds = [[(p.column(TIME)[0].as_py(), p.column(TIME)[-1].as_py()) for p in pieces] for pieces in slices]
    for before, after in pairwise(bounds):
        assert max(last for _, last in before) < min(first for first, _ in after)


def test_spill_files_with_empty_batches(tmp_path: Path) -> None:
    rng = random.Random(12)
    runs = runs_in_time_order(rng, False, 3, 400)
    parts = []
    for index, run in enumerate(runs):
        path = tmp_path / f"{index}.arrow"
        with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_file(sink, run.schema) as writer:
            empty = pa.RecordBatch.from_pylist([], schema=run.schema)
            writer.write_batch(empty)
            for offset in range(0, run.num_rows, 50):
                writer.write_table(run.slice(offset, 50))
                writer.write_batch(empty)
        parts.append(RunPart(0, run.num_rows, path=path))
    files = write(parts, tmp_path / "out", False, slice_rows=120)
    assert internal_rows(files) == exact(reference(runs, False))
