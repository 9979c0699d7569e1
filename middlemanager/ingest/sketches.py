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
costs one sketch per distinct value.
"""

from __future__ import annotations

import base64
import binascii
import logging
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
