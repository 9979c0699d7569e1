"""Merging the runs of one segment interval, a time slice at a time, into the segment order.

Finishing a segment (:func:`write_segment`) never holds whole runs: it cuts the runs into aligned
``__time`` ranges of about :data:`MERGE_SLICE_ROWS` rows in all (a row and every row it can roll
up with share one ``__time``, so a slice never splits a rollup group, and slices come out in
order), reads from each file only the record batches of the current slice (plain reads into
memory owned by Arrow, no memory map, so nothing stays resident after the slice is written), and
merges the slice's pieces. Merging sorts as little as the order allows: where the pieces'
``__time`` ranges do not overlap (stream data arriving in time order: runs meet at their
boundary only) rows are taken as they are, in piece order; inside an overlap, only rows whose
``__time`` value occurs in more than one piece are sorted by the full key (and rolled up), the
others keep their order within their piece and are placed by ``__time`` alone. This gives
exactly the order (and rollup) of a full stable sort of the concatenated pieces (tested).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import pyarrow as pa
import pyarrow.compute as pc

from middlemanager.ingest.rollup import arange, gather, merge_sorted_duplicates, sort_table
from middlemanager.ingest.runs import Run, bisect_left
from middlemanager.ingest.schema import TIME, ColumnPlan

__all__ = ["MERGE_SLICE_ROWS", "merge_pieces", "time_slices"]

# Rows merged and written at a time at finish (a slice of every run). 65,536 wikipedia-like
# rows are about 16 MiB; with 262,144 the finish phase raised a task's peak RSS by ~60 MiB
# above its read phase (2M events), with 65,536 it stays at the read phase's peak, at the
# same speed (bench/ingest.py).
MERGE_SLICE_ROWS = 65_536


def time_slices(runs: Sequence[Run], target_rows: int) -> Iterator[list[pa.Table]]:
    """Cut runs sorted by ``__time`` into aligned ``__time`` ranges of about ``target_rows`` rows.

    Yields each range as the list of the runs' non-empty pieces, in run order.
    """
    total = sum(run.num_rows for run in runs)
    if total <= target_rows:
        everything = [run.take_until(None) for run in runs]
        pieces = [piece for piece in everything if piece is not None and piece.num_rows]
        if pieces:
            yield pieces
        return
    # Pick cut times from an evenly spaced sample of every run (each sample stands for `step` rows).
    step = max(1, target_rows // (4 * len(runs)))
    samples: list[int] = []
    for run in runs:
        samples.extend(run.sample(step))
    samples.sort()
    cuts: list[int] = []
    acc = 0
    for value in samples:
        if acc >= target_rows and (not cuts or value > cuts[-1]):
            cuts.append(value)
            acc = 0
        acc += step
    for cut in [*cuts, None]:
        pieces = []
        for run in runs:
            piece = run.take_until(cut)
            if piece is not None and piece.num_rows:
                pieces.append(piece)
        if pieces:
            yield pieces


def _time_at(table: pa.Table, row: int) -> int:
    value = table.column(TIME)[row].as_py()
    assert isinstance(value, int)
    return value


def _shared_times(pieces: Sequence[pa.Table]) -> pa.Array:
    """The ``__time`` values found in more than one piece."""
    distinct = [pc.unique(piece.column(TIME)) for piece in pieces]
    counts = pc.value_counts(pa.chunked_array(distinct, type=pa.int64()))
    return counts.field("values").filter(pc.greater(counts.field("counts"), 1))


def _overlaps(bounds: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
    """The ``__time`` ranges (inclusive, disjoint, in order) where two or more of ``bounds`` overlap."""
    ranges = sorted(bounds)
    windows: list[tuple[int, int]] = []
    for i, (_, high) in enumerate(ranges):
        for other_low, other_high in ranges[i + 1 :]:
            if other_low > high:
                break
            windows.append((other_low, min(high, other_high)))
    windows.sort()
    merged: list[tuple[int, int]] = []
    for low, high in windows:
        if merged and low <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], high))
        else:
            merged.append((low, high))
    return merged


def merge_pieces(
    pieces: Sequence[pa.Table], plan: ColumnPlan, keys: Sequence[str], rollup_enabled: bool
) -> pa.Table:
    """The rows of runs' pieces (same schema, each in segment order) in segment order, rolled up.

    Gives exactly ``sort_table(concat(pieces), keys)`` (then ``merge_sorted_duplicates`` with
    rollup). Outside the ``__time`` ranges where pieces overlap, rows of one piece follow each
    other in its order; only rows inside an overlap are merged (:func:`_merge_overlapping`).
    """
    if len(pieces) == 1:
        return pieces[0]
    bounds = [(_time_at(piece, 0), _time_at(piece, piece.num_rows - 1)) for piece in pieces]
    windows = _overlaps(bounds)
    if not windows:
        return pa.concat_tables([pieces[i] for i in sorted(range(len(pieces)), key=lambda i: bounds[i])])
    if windows == [(min(b[0] for b in bounds), max(b[1] for b in bounds))]:
        return _merge_overlapping(pieces, plan, keys, rollup_enabled)
    # Runs of rows between windows come from a single piece; each window is merged on its own.
    # Every part covers its own time range, so ordering parts by their first time orders the rows.
    parts: list[tuple[int, pa.Table]] = []
    inside: list[list[pa.Table]] = [[] for _ in windows]
    for piece, (first, last) in zip(pieces, bounds, strict=True):
        times = piece.column(TIME)
        position = 0
        for index, (low, high) in enumerate(windows):
            if high < first or low > last:
                continue
            begin = bisect_left(times, low, position)
            end = bisect_left(times, high + 1, begin)
            if begin > position:
                parts.append((_time_at(piece, position), piece.slice(position, begin - position)))
            if end > begin:
                inside[index].append(piece.slice(begin, end - begin))
            position = end
        if position < piece.num_rows:
            parts.append((_time_at(piece, position), piece.slice(position)))
    for (low, _), window_pieces in zip(windows, inside, strict=True):
        if window_pieces:
            parts.append((low, _merge_overlapping(window_pieces, plan, keys, rollup_enabled)))
    parts.sort(key=lambda part: part[0])
    return pa.concat_tables([table for _, table in parts])


def _merge_overlapping(
    pieces: Sequence[pa.Table], plan: ColumnPlan, keys: Sequence[str], rollup_enabled: bool
) -> pa.Table:
    """:func:`merge_pieces` for pieces whose time ranges overlap.

    Sorts only rows whose ``__time`` occurs in several pieces: another row's place is fixed by
    its ``__time`` and its piece's order, and it has no equal key in another piece.
    """
    if len(pieces) == 1:
        return pieces[0]
    table = pa.concat_tables(pieces)
    times = table.column(TIME)
    shared = _shared_times(pieces)
    if len(shared) == 0:
        return gather(table, pc.sort_indices(times))
    in_shared = pc.is_in(times, value_set=shared)
    tied = sort_table(table.filter(in_shared), keys)
    if rollup_enabled:
        tied = merge_sorted_duplicates(tied, plan, keys)
    alone = pc.indices_nonzero(pc.invert(in_shared)).cast(pa.int64())
    if len(alone) == 0:
        return tied
    # Rows in `alone` and in `tied` have different times, and each set is in segment order:
    # a stable sort by __time interleaves them into the segment order.
    positions = pa.concat_arrays([alone, arange(table.num_rows, tied.num_rows)])
    candidate_times = pa.chunked_array([*times.take(alone).chunks, *tied.column(TIME).chunks])
    return gather(pa.concat_tables([table, tied]), positions.take(pc.sort_indices(candidate_times)))
