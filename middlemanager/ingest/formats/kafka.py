"""``kafka``: the row of ``valueFormat`` plus the record's key, headers, timestamp and topic.

Druid's KafkaInputFormat (docs/ingestion/kafka-ingestion.md, "Kafka input format";
``KafkaInputReader``):

* the Kafka timestamp (ms, a long) becomes ``timestampColumnName`` (``kafka.timestamp``)
  and the topic ``topicColumnName`` (``kafka.topic``) on every row;
* with ``keyFormat``, the key is parsed by it and its first value (the first column of
  its first row) becomes ``keyColumnName`` (``kafka.key``); a record without a key has
  none; a key the format cannot parse makes the record unparseable;
* with ``headerFormat``, each header value is decoded as a string in its ``encoding``
  (default UTF-8) into ``headerColumnPrefix + name`` (``kafka.header.``);
* a payload column of the same name wins over these ("we prefer payload attributes if
  there is a collision in names").
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from middlemanager.ingest.formats import DecodedBatch, FormatReader, register, value_reader_for
from middlemanager.ingest.formats.wire import may_hold_nul
from supervisor.records import RecordBatch
from supervisor.spec import KafkaInputFormat

__all__ = ["KafkaReader"]


class KafkaReader:
    def __init__(self, fmt: KafkaInputFormat) -> None:
        self.fmt = fmt
        self._value = value_reader_for(fmt.value_format)
        self._key: FormatReader | None = None if fmt.key_format is None else value_reader_for(fmt.key_format)
        self._encoding = None if fmt.header_format is None else fmt.header_format.encoding

    def decode_values(self, values: list[bytes | None]) -> DecodedBatch:
        return self._value.decode_values(values)

    def decode(self, batch: RecordBatch) -> DecodedBatch:
        fmt = self.fmt
        decoded = self._value.decode(batch)
        meta = batch.metadata
        n = len(batch)
        # column -> its value per record (in the batch)
        extra: dict[str, list[Any]] = {fmt.timestamp_column_name: batch.timestamps}
        bad: dict[int, str] = {}
        if meta is not None:
            extra[fmt.topic_column_name] = meta.topics
            if self._key is not None:
                extra[fmt.key_column_name] = self._keys(meta.keys, bad)
            if self._encoding is not None:
                extra.update(self._headers(meta.headers, n, bad))
        if bad:
            decoded = _without(decoded, bad)
        sources = decoded.sources
        if decoded.table is not None:
            table = decoded.table
            for name, per_record in extra.items():
                if name in table.column_names:
                    continue  # the payload wins
                column = pa.array(per_record)
                table = table.append_column(name, column.take(pa.array(sources, type=pa.int64())))
            decoded.table = table
            decoded.may_have_nul = may_hold_nul(table)  # (keys and headers too)
        else:
            rows = decoded.row_dicts()
            for row, source in zip(rows, sources, strict=True):
                for name, per_record in extra.items():
                    value = per_record[source]
                    if value is not None and name not in row:
                        row[name] = value
        return decoded

    def _keys(self, keys: list[bytes | None], bad: dict[int, str]) -> list[Any]:
        assert self._key is not None
        present = [index for index, key in enumerate(keys) if key is not None]
        out: list[Any] = [None] * len(keys)
        if not present:
            return out
        decoded = self._key.decode_values([keys[index] for index in present])
        for index, message in decoded.errors:
            bad[present[index]] = f"Unable to parse the record key: {message}"
        rows = decoded.row_dicts() if decoded.table is None else None
        first_column = None
        if decoded.table is not None and decoded.table.num_columns:
            first_column = decoded.table.column(0).to_pylist()
        seen: set[int] = set()
        for row_index, source in enumerate(decoded.sources):
            if source in seen:
                continue  # only the first row of a key counts
            seen.add(source)
            if first_column is not None:
                value = first_column[row_index]
            else:
                assert rows is not None
                row = rows[row_index]
                value = next(iter(row.values()), None)
            if isinstance(value, list) and len(value) == 1:
                value = value[0]
            out[present[source]] = value
        return out

    def _headers(self, headers: list[Any], n: int, bad: dict[int, str]) -> dict[str, list[Any]]:
        assert self._encoding is not None
        prefix = self.fmt.header_column_prefix
        out: dict[str, list[Any]] = {}
        for index, pairs in enumerate(headers):
            if not pairs:
                continue
            for name, value in pairs:
                column = out.get(prefix + name)
                if column is None:
                    column = out[prefix + name] = [None] * n
                if value is None:
                    continue
                try:
                    column[index] = value.decode(self._encoding)
                except UnicodeDecodeError as e:
                    bad[index] = f"Unable to decode header [{name}] as {self._encoding}: {e}"
        return out


def _without(decoded: DecodedBatch, bad: dict[int, str]) -> DecodedBatch:
    """The decoded batch without the rows of the records in ``bad``, which become errors."""
    keep = [source not in bad for source in decoded.sources]
    sources = [source for source in decoded.sources if source not in bad]
    errors = sorted({**dict(decoded.errors), **bad}.items())
    if decoded.table is not None:
        table = decoded.table.filter(pa.array(keep, type=pa.bool_()))
        return DecodedBatch(table=table, sources=sources, errors=errors, single_lists=decoded.single_lists)
    rows = [row for row, kept in zip(decoded.row_dicts(), keep, strict=True) if kept]
    return DecodedBatch(rows=rows, sources=sources, errors=errors)


@register("kafka")
def _kafka(fmt: Any) -> KafkaReader:
    return KafkaReader(fmt)
