"""Per-group aggregation Arrow's hash aggregates do not have: first/last by time, and sketches.

Sketches are Apache DataSketches (the ``datasketches`` package, the C++ library): a column
of a sketch metric holds each row's sketch in the library's standard serialized form, which
every DataSketches library (Java's, that Druid uses, included) reads: compact ordered theta
sketches (``thetaSketch``), compact HLL sketches (``HLLSketchBuild``/``HLLSketchMerge``) and
classic quantiles DoublesSketch bytes (``quantilesDoublesSketch``). Straight from conversion
the column holds the input values instead (``schema.sketch_value``); :func:`build` turns them
into sketches (one per group), :func:`merge` unions sketches of a group.

Input hashing follows Druid's aggregators (extensions-core/datasketches: SketchAggregator,
HllSketchBuildUtil): a long is hashed as a long, a double as a double, a string as its
UTF-8 bytes for theta and, for HLL with the default ``stringEncoding`` ``utf16le``, as its
UTF-16LE code units; each element of a list is hashed as a string; null and "" add nothing.
The Python binding takes a ``str`` and hashes its UTF-8 bytes, so a UTF-16LE string is given
as the ``str`` whose UTF-8 bytes are its UTF-16LE bytes: exact for ASCII text; a string
whose UTF-16LE bytes are not valid UTF-8 is hashed as UTF-8 (its sketch counts it right but
does not match a Java sketch of the same string).

Python work per row is one ``update`` call (theta and HLL have no batch update in the
binding; quantiles takes a numpy array per group). A group of one row reuses the sketch of
an equal value made before (a dictionary of the values), so a column of repeated values
costs one sketch per distinct value. Theta sketches of groups in exact mode (at most k
distinct hashes) are built and unioned in bulk with numpy from those one-value sketches
(:func:`_theta_bulk`): the same bytes as the library's, one pass over all groups.
"""

from __future__ import annotations

import base64
import binascii
import logging
import sys
from collections.abc import Callable, Iterable
from typing import Any

import datasketches as ds
import numpy as np
import numpy.typing as npt
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from middlemanager.ingest.schema import (
    ESCAPE_PREFIX,
    MULTI_PREFIX,
    SKETCH_DOUBLE_PREFIX,
    SKETCH_LONG_PREFIX,
    MetricColumn,
)

__all__ = ["build", "first_last", "merge", "seal"]

log = logging.getLogger(__name__)

_INT64_MIN = -(2**63)
_INT64_MAX = 2**63 - 1
_HLL_TYPES = {"HLL_4": ds.HLL_4, "HLL_6": ds.HLL_6, "HLL_8": ds.HLL_8}

Groups = tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]  # (row order, group offsets)


def _groups(group_ids: pa.Array | npt.NDArray[np.int64], num_groups: int) -> Groups:
    """Rows ordered by group (stably) and where each group starts in that order."""
    ids = (
        group_ids
        if isinstance(group_ids, np.ndarray)
        else np.asarray(group_ids.to_numpy(zero_copy_only=False))
    )
    order = np.argsort(ids, kind="stable").astype(np.int64)
    offsets = np.zeros(num_groups + 1, dtype=np.int64)
    np.cumsum(np.bincount(ids, minlength=num_groups), out=offsets[1:])
    return order, offsets


# ------------------------------------------------------------------ first / last


def first_last(
    values: pa.Array | pa.ChunkedArray,
    times: pa.Array | pa.ChunkedArray,
    group_ids: pa.Array,
    last: bool,
) -> tuple[pa.Array, pa.Array]:
    """Per group (ids 0..G-1, every id present): the value with the earliest (latest) time.

    Druid's first keeps the earliest row of equal times, last the latest (docs/querying/
    aggregations.md, "First and last aggregators"); a row without a time is skipped, and a
    group without timed rows gets null. Columnar: one sort by (group, time, row).
    """
    n = len(group_ids)
    sentinel = _INT64_MIN if last else _INT64_MAX
    order = "descending" if last else "ascending"
    rows = pa.array(np.arange(n, dtype=np.int64))
    keyed = pa.table({"g": group_ids, "t": pc.fill_null(times, sentinel), "i": rows})
    ranked = pc.sort_indices(keyed, sort_keys=[("g", "ascending"), ("t", order), ("i", order)])
    sorted_ids = group_ids.take(ranked)
    if n > 1:
        changes = pc.not_equal(sorted_ids.slice(1), sorted_ids.slice(0, n - 1))
        heads = pa.concat_arrays([pa.array([True]), changes])
    else:
        heads = pa.array([True] * n, type=pa.bool_())
    picked = ranked.filter(heads)
    time = _flat(times.take(picked))
    value = _flat(values.take(picked))
    if time.null_count:
        value = pc.if_else(pc.is_valid(time), value, pa.scalar(None, value.type))
    return value, time


def _flat(column: pa.Array | pa.ChunkedArray) -> pa.Array:
    if isinstance(column, pa.ChunkedArray):
        return column.combine_chunks() if column.num_chunks != 1 else column.chunk(0)
    return column


# ------------------------------------------------------------------ sketches


class _Kind:
    """How to make, feed and serialize one sketch metric's sketches."""

    def __init__(self, m: MetricColumn) -> None:
        spec = m.effective
        assert spec is not None
        self.type = m.type
        self.name = m.name
        if m.type == "thetaSketch":
            lg_k = spec.theta_lg_k
            self.lg_k = lg_k
            self.input_sketches = bool(spec.is_input_theta_sketch)
            self.key: tuple[Any, ...] = (m.type, lg_k, self.input_sketches)
        elif m.type in ("HLLSketchBuild", "HLLSketchMerge"):
            self.lg_k = spec.hll_lg_k
            self.hll_type = _HLL_TYPES[spec.hll_type]
            self.utf16 = spec.hll_utf16
            self.input_sketches = m.type == "HLLSketchMerge"
            self.key = (m.type, self.lg_k, spec.hll_type, self.utf16)
        else:
            self.k = spec.quantiles_k
            self.input_sketches = False
            self.key = (m.type, self.k)
        self.bad_inputs = 0

    # one sketch from input values ------------------------------------------------
    def from_values(self, values: Iterable[Any]) -> bytes:
        if self.type == "thetaSketch":
            if self.input_sketches:
                theta_union = ds.theta_union(self.lg_k)
                for blob in self._blobs(values):
                    theta_union.update(ds.compact_theta_sketch.deserialize(blob))
                return bytes(theta_union.get_result().serialize())
            theta = ds.update_theta_sketch(self.lg_k)
            _feed(theta.update, values, utf16=False)
            return bytes(theta.compact().serialize())
        if self.input_sketches:
            hll_union = ds.hll_union(self.lg_k)
            for blob in self._blobs(values):
                hll_union.update(ds.hll_sketch.deserialize(blob))
            return bytes(hll_union.get_result(self.hll_type).serialize_compact())
        hll = ds.hll_sketch(self.lg_k, self.hll_type)
        _feed(hll.update, values, utf16=self.utf16)
        return bytes(hll.serialize_compact())

    def _blobs(self, values: Iterable[Any]) -> Iterable[bytes]:
        """Base64 sketches given as input (isInputThetaSketch, HLLSketchMerge); bad ones are skipped."""
        for value in values:
            if value is None or value == "":
                continue
            try:
                yield base64.b64decode(value, validate=True)
            except (binascii.Error, ValueError, TypeError):
                self.bad_inputs += 1

    def quantiles(self, values: npt.NDArray[np.float64]) -> bytes:
        sketch = ds.quantiles_doubles_sketch(self.k)
        if len(values):
            sketch.update(values)
        return bytes(sketch.serialize())

    # one sketch from sketches ------------------------------------------------------
    def union(self, blobs: Iterable[bytes]) -> bytes:
        if self.type == "thetaSketch":
            theta_union = ds.theta_union(self.lg_k)
            for blob in blobs:
                theta_union.update(ds.compact_theta_sketch.deserialize(blob))
            return bytes(theta_union.get_result().serialize())
        if self.type == "quantilesDoublesSketch":
            sketch = ds.quantiles_doubles_sketch(self.k)
            for blob in blobs:
                sketch.merge(ds.quantiles_doubles_sketch.deserialize(blob))
            return bytes(sketch.serialize())
        hll_union = ds.hll_union(self.lg_k)
        for blob in blobs:
            hll_union.update(ds.hll_sketch.deserialize(blob))
        return bytes(hll_union.get_result(self.hll_type).serialize_compact())


def _as_utf16(text: str) -> str:
    """The ``str`` whose UTF-8 bytes are ``text``'s UTF-16LE bytes (when there is one)."""
    data = text.encode("utf-16-le")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return text


def _feed(update: Callable[[Any], None], values: Iterable[Any], utf16: bool) -> None:
    """Update a theta/HLL sketch with stored input values (``schema.sketch_value``)."""
    for value in values:
        if value is None or value == "":
            continue
        if value[0] != "\x00":
            update(_as_utf16(value) if utf16 else value)
            continue
        tag, text = value[:2], value[2:]
        if tag == SKETCH_LONG_PREFIX:
            update(int(text))
        elif tag == SKETCH_DOUBLE_PREFIX:
            update(float(text))
        elif tag == MULTI_PREFIX:
            _feed(update, orjson.loads(text), utf16)
        elif tag == ESCAPE_PREFIX:
            update(_as_utf16(text) if utf16 else text)
        else:
            update(_as_utf16(value) if utf16 else value)


def build(m: MetricColumn, values: pa.Array | pa.ChunkedArray, groups: Groups | None) -> pa.Array:
    """One sketch per group of ``values`` (input values); ``groups=None``: one per row."""
    kind = _Kind(m)
    column = _flat(values)
    if m.type == "quantilesDoublesSketch":
        out = _build_quantiles(kind, column, groups)
    else:
        out = _build_hashed(kind, column, groups)
    if kind.bad_inputs:
        log.warning("metric %s: %d input values were not base64 sketches (skipped)", m.name, kind.bad_inputs)
    return out


# One-value sketches made before, by the sketch parameters and the value: a column of repeated
# values (a user id, a session) costs one sketch per distinct value for the whole task, not per
# batch. Bounded: cleared when full.
_SINGLETONS: dict[tuple[Any, ...], bytes] = {}
_SINGLETONS_MAX = 200_000


def _singleton(kind: _Kind, value: Any) -> bytes:
    # float.hex tells -0.0 from 0.0 (equal as keys, different sketches)
    key = (*kind.key, value.hex() if type(value) is float else value)
    blob = _SINGLETONS.get(key)
    if blob is None:
        if kind.type == "quantilesDoublesSketch":
            blob = kind.quantiles(np.array([] if value is None else [value], dtype=np.float64))
        else:
            blob = kind.from_values([value])
        if kind.bad_inputs:
            return blob  # a bad input is counted (and logged) each time it is seen
        if len(_SINGLETONS) >= _SINGLETONS_MAX:
            _SINGLETONS.clear()
        _SINGLETONS[key] = blob
    return blob


# The same for string inputs (theta, HLL), as Arrow arrays so that finding the values seen
# before is one hash lookup in C: sketch parameters -> (values, their sketches).
_KNOWN: dict[tuple[Any, ...], tuple[pa.Array, pa.Array]] = {}


def _known_sketches(kind: _Kind, dictionary: pa.Array) -> pa.Array:
    """The one-value sketch of each (distinct) string of ``dictionary``."""
    values, blobs = _KNOWN.get(kind.key, (pa.array([], type=pa.string()), pa.array([], type=pa.binary())))
    found = pc.index_in(dictionary, value_set=values)
    missing = pc.is_null(found)
    if missing.null_count == 0 and not pc.any(missing).as_py():
        return blobs.take(found)
    new_values = dictionary.filter(missing)
    made = [kind.from_values([v]) for v in new_values.to_pylist()]
    new_blobs = pa.array(made, type=pa.binary())
    if kind.bad_inputs:  # a bad input is counted (and logged) each time it is seen: not kept
        return pa.array([kind.from_values([v]) for v in dictionary.to_pylist()], type=pa.binary())
    if len(values) + len(new_values) > _SINGLETONS_MAX:
        values, blobs = new_values, new_blobs
    else:
        values = pa.concat_arrays([values, new_values])
        blobs = pa.concat_arrays([blobs, new_blobs])
    _KNOWN[kind.key] = (values, blobs)
    return blobs.take(pc.index_in(dictionary, value_set=values))


def _singletons(kind: _Kind, column: pa.Array) -> pa.Array:
    """A one-row sketch per value: made once per distinct value (see ``_SINGLETONS``)."""
    encoded = pc.dictionary_encode(column)
    dictionary = encoded.dictionary
    if pa.types.is_string(dictionary.type):
        made = _known_sketches(kind, dictionary)
    else:
        made = pa.array([_singleton(kind, v) for v in dictionary.to_pylist()], type=pa.binary())
    empty = _singleton(kind, None)
    sketches = made.take(encoded.indices)
    return pc.fill_null(sketches, pa.scalar(empty, pa.binary())) if column.null_count else sketches


def _build_hashed(kind: _Kind, column: pa.Array, groups: Groups | None) -> pa.Array:
    if groups is None:
        return _singletons(kind, column)
    order, offsets = groups
    if kind.type == "thetaSketch" and not kind.input_sketches:
        ordered: list[Any] = []

        def from_values(group: int) -> bytes:
            if not ordered:
                ordered.extend(column.take(pa.array(order)).to_pylist())
            return kind.from_values(ordered[offsets[group] : offsets[group + 1]])

        bulk = _theta_bulk(kind, _singletons(kind, column), groups, from_values)
        if bulk is not None:
            return bulk
    values = column.take(pa.array(order)).to_pylist()
    sizes = np.diff(offsets)
    out: list[bytes | None] = [None] * len(sizes)
    alone = np.flatnonzero(sizes == 1)
    if len(alone):
        singles = _singletons(kind, column.take(pa.array(order[offsets[alone]]))).to_pylist()
        for g, blob in zip(alone.tolist(), singles, strict=True):
            out[g] = blob
    bounds = offsets.tolist()
    for g in np.flatnonzero(sizes != 1).tolist():
        out[g] = kind.from_values(values[bounds[g] : bounds[g + 1]])
    return pa.array(out, type=pa.binary())


def _build_quantiles(kind: _Kind, column: pa.Array, groups: Groups | None) -> pa.Array:
    if groups is None:
        return _singletons(kind, pc.cast(column, pa.float64()))
    order, offsets = groups
    ordered = pc.cast(column.take(pa.array(order)), pa.float64())
    valid = np.asarray(pc.is_valid(ordered).to_numpy(zero_copy_only=False))
    data = np.asarray(ordered.fill_null(0.0).to_numpy(zero_copy_only=False))
    bounds = offsets.tolist()
    out = []
    for g in range(len(bounds) - 1):
        part = data[bounds[g] : bounds[g + 1]]
        out.append(kind.quantiles(part[valid[bounds[g] : bounds[g + 1]]]))
    return pa.array(out, type=pa.binary())


def merge(m: MetricColumn, sketches: pa.Array | pa.ChunkedArray, groups: Groups) -> pa.Array:
    """The union of each group's sketches (a group of one keeps its bytes)."""
    kind = _Kind(m)
    order, offsets = groups
    if kind.type == "thetaSketch":
        column = _flat(sketches)

        def union(group: int) -> bytes:
            part = column.take(pa.array(order[offsets[group] : offsets[group + 1]])).to_pylist()
            return part[0] if len(part) == 1 else kind.union(part)

        bulk = _theta_bulk(kind, column, groups, union)
        if bulk is not None:
            return bulk
    blobs = _flat(sketches).take(pa.array(order)).to_pylist()
    bounds = offsets.tolist()
    out: list[bytes] = []
    for g in range(len(bounds) - 1):
        begin, end = bounds[g], bounds[g + 1]
        if end - begin == 1:
            out.append(blobs[begin])
        else:
            out.append(kind.union(blob for blob in blobs[begin:end] if blob is not None))
    return pa.array(out, type=pa.binary())


def seal(table: pa.Table, metrics: Iterable[MetricColumn]) -> pa.Table:
    """A freshly converted table with a sketch per row in every sketch column."""
    for m in metrics:
        if m.kind != "sketch":
            continue
        index = table.schema.get_field_index(m.col)
        table = table.set_column(index, m.col, build(m, table.column(index), None))
    return table


def groups_of(group_ids: pa.Array | npt.NDArray[np.int64], num_groups: int) -> Groups:
    return _groups(group_ids, num_groups)


# ------------------------------------------------------------------ theta in bulk
#
# A compact ordered theta sketch in exact mode (theta = 1) is 8-byte words, little-endian
# (DataSketches' serialization format, theta/include/theta_sketch_impl.hpp and the format
# notes of datasketches-java's theta package): a preamble word, then for two hashes or
# more a word holding the count, then the hashes ascending; one hash is the single-item
# preamble and the hash; no hash is the empty preamble alone. Both the update sketch's
# compact() and the union's result are these bytes while the distinct hashes are at most k
# (above k a union keeps the k smallest and an update sketch may keep more: the library
# does those groups). The three preambles are taken from sketches the library made, and
# any blob not of these shapes (an estimation-mode sketch, a multi-value row's sketch)
# sends the column back to the library, group by group.

_PREAMBLES: dict[tuple[Any, ...], tuple[int, int, int] | None] = {}
# Groups numbered in 16 bits: sorted by a radix sort (more: by lexsort).
_RADIX_GROUPS = 1 << 16


def _theta_preambles(kind: _Kind) -> tuple[int, int, int] | None:
    """The (empty, single-item, exact) preamble words of this kind's theta sketches."""
    if kind.key not in _PREAMBLES:
        empty = kind.from_values([])
        single = kind.from_values(["a"])
        two = kind.from_values(["a", "b"])
        words = (
            np.frombuffer(empty, dtype="<u8") if len(empty) == 8 else None,
            np.frombuffer(single, dtype="<u8") if len(single) == 16 else None,
            np.frombuffer(two, dtype="<u8") if len(two) == 32 else None,
        )
        if words[0] is None or words[1] is None or words[2] is None or int(words[2][1]) != 2:
            _PREAMBLES[kind.key] = None
        else:
            _PREAMBLES[kind.key] = (int(words[0][0]), int(words[1][0]), int(words[2][0]))
    return _PREAMBLES[kind.key]


def _theta_hashes(
    blobs: pa.Array, preambles: tuple[int, int, int]
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.uint64]] | None:
    """Every hash of exact-mode compact theta sketches, with the row it is in; ``None`` if a
    blob is not one (or a null)."""
    if blobs.null_count or not len(blobs):
        return None if blobs.null_count else (np.zeros(0, np.int64), np.zeros(0, np.uint64))
    if pa.types.is_large_binary(blobs.type):
        blobs = blobs.cast(pa.binary())
    offsets = np.frombuffer(blobs.buffers()[1], dtype=np.int32)[blobs.offset : blobs.offset + len(blobs) + 1]
    offsets = offsets.astype(np.int64)
    sizes = np.diff(offsets)
    base = int(offsets[0])
    if np.any(sizes % 8) or np.any(sizes == 0):
        return None
    data = blobs.buffers()[2]
    raw = np.frombuffer(data, dtype=np.uint8)[base : int(offsets[-1])]
    words = raw.view("<u8") if raw.ctypes.data % 8 == 0 else raw.copy().view("<u8")
    starts = (offsets[:-1] - base) // 8
    lengths = sizes // 8
    empty_word, single_word, exact_word = preambles
    heads = words[starts]
    counts = np.zeros(len(blobs), dtype=np.int64)
    first = starts + 1
    is_single = (heads == single_word) & (lengths == 2)
    counts[is_single] = 1
    is_exact = (heads == exact_word) & (lengths >= 2)
    if np.any(is_exact):
        stated = words[starts[is_exact] + 1]
        if np.any(stated != lengths[is_exact] - 2):
            return None
        counts[is_exact] = lengths[is_exact] - 2
        first[is_exact] += 1
    is_empty = (heads == empty_word) & (lengths == 1)
    if not np.all(is_single | is_exact | is_empty):
        return None
    total = int(counts.sum())
    rows = np.repeat(np.arange(len(blobs), dtype=np.int64), counts)
    within = np.arange(total, dtype=np.int64) - np.repeat(np.cumsum(counts) - counts, counts)
    return rows, words[np.repeat(first, counts) + within]


def _theta_bulk(
    kind: _Kind, blobs: pa.Array, groups: Groups, redo: Callable[[int], bytes]
) -> pa.Array | None:
    """The union of each group's theta sketches ``blobs`` (one per row) where it is in exact mode.

    A group with more than k distinct hashes is ``redo(group)`` (the library's). ``None``: a
    blob is not an exact-mode compact sketch (or this library's layout is not the one known).
    """
    if sys.byteorder != "little":
        return None
    preambles = _theta_preambles(kind)
    if preambles is None:
        return None
    found = _theta_hashes(blobs, preambles)
    if found is None:
        return None
    rows, hashes = found
    order, offsets = groups
    num_groups = len(offsets) - 1
    if num_groups == 0:
        return pa.array([], type=pa.binary())
    group_of_row = np.empty(len(order), dtype=np.int64)
    group_of_row[order] = np.repeat(np.arange(num_groups, dtype=np.int64), np.diff(offsets))
    g = group_of_row[rows]
    if num_groups <= _RADIX_GROUPS:
        # by hash, then (stable) by group: a stable sort of 16-bit keys is a radix sort, six
        # times faster than lexsort here
        by_hash = np.argsort(hashes)
        ranked = by_hash[np.argsort(g.astype(np.uint16)[by_hash], kind="stable")]
    else:
        ranked = np.lexsort((hashes, g))
    g, h = g[ranked], hashes[ranked]
    if len(g):
        fresh = np.ones(len(g), dtype=bool)
        fresh[1:] = (g[1:] != g[:-1]) | (h[1:] != h[:-1])
        g, h = g[fresh], h[fresh]
    counts = np.bincount(g, minlength=num_groups).astype(np.int64)
    big = counts > (1 << kind.lg_k)
    counts[big] = 0  # a placeholder, replaced by redo()
    keep = ~big[g]
    g, h = g[keep], h[keep]
    empty_word, single_word, exact_word = preambles
    header = np.where(counts >= 2, 2, 1).astype(np.int64)
    sizes = header + counts
    ends = np.cumsum(sizes)
    starts = ends - sizes
    words = np.zeros(int(ends[-1]), dtype="<u8")
    words[starts] = np.where(counts >= 2, exact_word, np.where(counts == 1, single_word, empty_word))
    multi = counts >= 2
    words[starts[multi] + 1] = counts[multi].astype(np.uint64)
    within = np.arange(len(g), dtype=np.int64) - (np.cumsum(counts) - counts)[g]
    words[starts[g] + header[g] + within] = h
    byte_offsets = np.concatenate([np.zeros(1, dtype=np.int64), ends * 8]).astype(np.int32)
    out = pa.Array.from_buffers(
        pa.binary(), num_groups, [None, pa.py_buffer(byte_offsets), pa.py_buffer(words)]
    )
    if not big.any():
        return out
    values = out.to_pylist()
    for index in np.flatnonzero(big).tolist():
        values[index] = redo(index)
    return pa.array(values, type=pa.binary())
