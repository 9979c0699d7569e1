"""Binary records (Avro, Protobuf) read a field at a time over the whole batch with numpy.

The values of a batch are laid end to end in one buffer; a cursor per record (``pos``) walks
its fields, and every step (read a varint, skip a string, ...) is one numpy operation over all
records at once, not a Python loop per record. Strings are not copied one by one: their
(start, length) pairs become one Arrow binary array over the buffer, from which Arrow's ``take``
gathers the values (and the cast to ``string`` checks their UTF-8).

A record whose bytes do not fit the schema (truncated, too long, a bad varint, ...) is marked
bad; the caller hands each bad record to the row decoder, which gives its error (or decodes it,
and then the whole batch takes the row path: the row decoder is the reference). Cursors never
leave the buffer: positions are clamped to one past the data, and :data:`PAD` zero bytes after
it leave room for the longest read (a 10-byte varint or an 8-byte number).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pyarrow as pa

__all__ = [
    "Columns",
    "Frame",
    "binary_column",
    "fixed_values",
    "may_hold_nul",
    "merge_parts",
    "number_column",
    "settle",
    "string_column",
    "varint",
    "zigzag",
]

PAD = 16
_PADDING = bytes(PAD)
# A varint is at most 10 bytes (64 bits, 7 a byte); the 10th may hold one bit only.
_VARINT_BYTES = 10

Ints = npt.NDArray[np.int64]
Bools = npt.NDArray[np.bool_]
Words = npt.NDArray[np.uint64]


@dataclass(slots=True)
class Frame:
    """Records laid end to end: record ``i`` is ``buf[starts[i]:ends[i]]``."""

    buf: npt.NDArray[np.uint8]
    starts: Ints
    ends: Ints
    # one past the data: where a cursor that ran past every record is parked
    limit: int

    @staticmethod
    def of(values: list[bytes]) -> Frame:
        lengths = np.fromiter(map(len, values), dtype=np.int64, count=len(values))
        ends = np.cumsum(lengths)
        buf = np.frombuffer(b"".join([*values, _PADDING]), dtype=np.uint8)
        return Frame(buf, ends - lengths, ends, int(ends[-1]) + 1 if len(ends) else 1)

    def part(self, rows: Ints, skip: int | Ints) -> Frame:
        """Records ``rows`` without their first ``skip`` bytes (a header), on the same buffer."""
        return Frame(self.buf, self.starts[rows] + skip, self.ends[rows], self.limit)


@dataclass(slots=True)
class Columns:
    """Decoded records: a table row per good record, and the batch index of each (ascending)."""

    table: pa.Table
    rows: Ints


def varint(buf: npt.NDArray[np.uint8], pos: Ints) -> tuple[Words, Ints, Bools | None]:
    """The unsigned varints at ``pos``, the positions after them, and which are malformed
    (longer than 10 bytes or more than 64 bits; ``None`` when none is)."""
    byte = buf[pos]
    value = (byte & 0x7F).astype(np.uint64)
    after = pos + 1
    going = np.flatnonzero(byte & 0x80)
    if going.size == 0:
        return value, after, None
    bad: Bools | None = None
    for k in range(1, _VARINT_BYTES):
        byte = buf[pos[going] + k]
        value[going] |= (byte & 0x7F).astype(np.uint64) << np.uint64(7 * k)
        after[going] += 1
        if k == _VARINT_BYTES - 1:
            over = (byte & 0xFE) != 0  # continues, or bits past the 64th
            if over.any():
                bad = np.zeros(len(pos), dtype=np.bool_)
                bad[going[over]] = True
            break
        going = going[(byte & 0x80) != 0]
        if going.size == 0:
            break
    return value, after, bad


def zigzag(value: Words) -> Ints:
    """Zigzag-decoded signed values (Avro's ints and longs, Protobuf's sint64)."""
    half = (value >> np.uint64(1)).astype(np.int64)
    sign = (value & np.uint64(1)).astype(np.int64)
    decoded: Ints = half ^ -sign
    return decoded


def fixed_values(buf: npt.NDArray[np.uint8], pos: Ints, dtype: str) -> npt.NDArray[np.generic]:
    """The little-endian fixed-size numbers (``dtype`` such as ``"<f8"``) at ``pos``."""
    size = np.dtype(dtype).itemsize
    raw = buf[pos[:, None] + np.arange(size)]
    return np.ascontiguousarray(raw).view(dtype).reshape(len(pos))


def number_column(values: npt.NDArray[np.generic], present: Bools | None) -> pa.Array:
    return pa.array(values, mask=None if present is None or present.all() else ~present)


def binary_column(frame: Frame, starts: Ints, lengths: Ints, present: Bools | None) -> pa.Array:
    """The values ``buf[starts[i]:starts[i] + lengths[i]]`` as a binary array (null where not
    ``present``). Rows must lie inside their records, in record order; a row that does not (a
    bad record) or is absent must have been set to its record's start and length 0."""
    n = len(starts)
    if n == 0:
        return pa.array([], type=pa.binary())
    # value 2i is row i, value 2i+1 the gap before row i+1: the offsets only grow
    offsets = np.empty(2 * n, dtype=np.int32)
    offsets[0::2] = starts
    offsets[1::2] = starts + lengths
    spans = pa.Array.from_buffers(
        pa.binary(), 2 * n - 1, [None, pa.py_buffer(offsets), pa.py_buffer(frame.buf)]
    )
    values = spans.take(pa.array(np.arange(0, 2 * n, 2, dtype=np.int64)))
    if present is None or present.all():
        return values
    validity = pa.py_buffer(np.packbits(present, bitorder="little"))
    return pa.Array.from_buffers(
        pa.binary(), n, [validity, *values.buffers()[1:]], null_count=int(n - np.count_nonzero(present))
    )


def string_column(frame: Frame, starts: Ints, lengths: Ints, present: Bools | None) -> pa.Array | None:
    """As :func:`binary_column`, as UTF-8 text; ``None`` when some value is not valid UTF-8."""
    try:
        return binary_column(frame, starts, lengths, present).cast(pa.string())
    except pa.ArrowInvalid:
        return None


def settle(frame: Frame, starts: Ints, lengths: Ints, keep: Bools) -> tuple[Ints, Ints]:
    """``starts``/``lengths`` with the rows not kept moved to their record's start, length 0."""
    if keep.all():
        return starts, lengths
    return np.where(keep, starts, frame.starts), np.where(keep, lengths, 0)


def may_hold_nul(table: pa.Table) -> bool:
    """Whether a string value of ``table`` may contain NUL (a zero byte in a column's data)."""
    for column in table.columns:
        if not pa.types.is_string(column.type):
            continue
        for chunk in column.chunks:
            data = chunk.buffers()[2]
            if data is not None and data.size and not np.frombuffer(data, dtype=np.uint8).all():
                return True
    return False


def merge_parts(parts: list[Columns]) -> Columns | None:
    """The decoded parts of a batch (one per schema) as one table in record order; ``None``
    when their columns do not fit together (the same name with two types)."""
    if len(parts) == 1:
        return parts[0]
    try:
        table = pa.concat_tables([part.table for part in parts], promote_options="default")
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return None
    rows = np.concatenate([part.rows for part in parts])
    order = np.argsort(rows, kind="stable")
    return Columns(table.take(pa.array(order)), rows[order])
