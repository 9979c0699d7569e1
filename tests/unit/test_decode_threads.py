"""The batches of a format with a reader (csv, avro_stream, ...) are decoded on the pipeline's parser
threads, at most ``_PARSE_DEPTH`` at a time and ingested in record order: the same stats, parse
exception reports, dead letters and segments as decoding each batch on the caller's thread."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from middlemanager.ingest import pipeline as pipeline_module
from middlemanager.ingest.formats import DecodedBatch
from middlemanager.ingest.formats.binary import BinaryRowsReader
from middlemanager.ingest.formats.delimited import DelimitedReader
from middlemanager.ingest.pipeline import IngestPipeline
from supervisor.errors import TooManyParseExceptions
from supervisor.records import RecordBatch
from supervisor.spec import parse_supervisor_spec
from tests.harness.specs import kafka_spec
from tests.unit.test_binary_columns import FLAT_SCHEMA, avro_bytes, flat_event, with_bad_records
from tests.unit.test_ingest import read_rows, records

AVRO = {"type": "avro_stream", "avroBytesDecoder": {"type": "schema_inline", "schema": FLAT_SCHEMA}}
CSV = {"type": "csv", "columns": ["ts", "s", "n", "colour"]}


def avro_values() -> list[bytes | None]:
    return with_bad_records([avro_bytes(FLAT_SCHEMA, flat_event(i)) for i in range(700)])


def csv_values(row_path: bool) -> list[bytes | None]:
    values: list[bytes | None] = [
        f"{1_700_000_000_000 + i},s{i % 13},{i},c{i % 3}".encode() for i in range(700)
    ]
    values[50] = b"1700000000050,too,many,columns,here"
    values[51] = None  # a tombstone
    values[400] = b"1700000000400,s,1"  # too few columns: nulls, as Druid's reader gives
    if row_path:
        values[300] = b"1700000000300,s,not a long,c"  # no exact long: that batch goes row by row
    return values


def spec_for(input_format: dict[str, Any], max_parse_exceptions: int) -> Any:
    return parse_supervisor_spec(
        kafka_spec(
            "ds",
            "t",
            "127.0.0.1:9",
            timestamp={"column": "ts", "format": "millis"},
            dimensions=["s", {"type": "long", "name": "n"}, "colour"],
            metrics=[
                {"type": "count", "name": "count"},
                {"type": "longSum", "name": "n_sum", "fieldName": "n"},
            ],
            tuning={
                "maxParseExceptions": max_parse_exceptions,
                "maxSavedParseExceptions": 100,
                "maxRowsInMemory": 1000,
                "deadLetterTopic": "dlq",
            },
            inputFormat=input_format,
        )
    )


def run(spec: Any, tmp_path: Path, values: list[bytes | None], name: str) -> tuple[Any, ...]:
    pipeline = IngestPipeline(spec, tmp_path / name / "work")
    recs = records(values)
    for index in range(0, len(recs), 64):
        pipeline.add(recs[index : index + 64])
        # every state read waits for the batches on the threads: the rows of a batch are in
        # memory once add() returned and the snapshot was taken (so offsets may move past it)
        snapshot = pipeline.inflight_table()
        stats = pipeline.stats
        assert snapshot is not None and snapshot.num_rows == stats.processed + stats.processed_with_error
    stats = pipeline.stats
    reports = [(e.input, e.message) for e in pipeline.parse_exceptions]
    rejected = [(r.offset, r.kind, r.reason) for r in pipeline.drain_rejected()]
    rows = read_rows(pipeline.finish(tmp_path / name / "out"))
    return stats, reports, rejected, rows


@pytest.mark.parametrize(
    ("input_format", "values", "reader"),
    [
        pytest.param(AVRO, avro_values(), BinaryRowsReader, id="avro"),
        pytest.param(CSV, csv_values(row_path=False), DelimitedReader, id="csv"),
        pytest.param(CSV, csv_values(row_path=True), DelimitedReader, id="csv-row-path"),
    ],
)
@pytest.mark.parametrize("max_parse_exceptions", [2**31 - 1, 50], ids=["unlimited", "eager"])
def test_reader_batches_decode_on_the_parser_threads_as_on_the_callers(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    input_format: dict[str, Any],
    values: list[bytes | None],
    reader: Any,
    max_parse_exceptions: int,
) -> None:
    threads: list[str] = []
    depths: list[int] = []
    original = reader.decode

    def spy(self: Any, batch: RecordBatch) -> DecodedBatch:
        threads.append(threading.current_thread().name)
        return original(self, batch)  # type: ignore[no-any-return]

    submit_original = IngestPipeline._parser_pool

    def pool(self: IngestPipeline) -> Any:
        out = submit_original(self)
        depths.append(len(self._in_flight))
        return out

    monkeypatch.setattr(reader, "decode", spy)
    monkeypatch.setattr(IngestPipeline, "_parser_pool", pool)
    spec = spec_for(input_format, max_parse_exceptions)
    threaded = run(spec, tmp_path, values, "threads")
    assert threads and all(name.startswith("parser") for name in threads)
    assert max(depths) < pipeline_module._PARSE_DEPTH  # (a slot was free before each submit)

    threads.clear()
    monkeypatch.setattr(pipeline_module, "_DECODE_ON_THREADS", False)
    inline = run(spec, tmp_path, values, "inline")
    assert threads and all(name == threading.current_thread().name for name in threads)

    assert threaded == inline
    stats, reports, rejected, rows = threaded
    assert len(reports) == stats.unparseable + stats.processed_with_error
    assert sum(kind == "unparseable" for _, kind, _ in rejected) == stats.unparseable > 0
    assert [offset for offset, _, _ in rejected] == sorted(offset for offset, _, _ in rejected)
    assert stats.processed + stats.processed_with_error == len(rows) == len(values) - stats.unparseable
    assert stats.processed > 600


def test_a_reader_batch_over_the_limit_fails_its_add(tmp_path: Path) -> None:
    """With a finite maxParseExceptions the limit is enforced by the add() of the record past it."""
    spec = spec_for(CSV, 0)
    pipeline = IngestPipeline(spec, tmp_path / "work")
    recs = records(csv_values(row_path=False))
    pipeline.add(recs[:50])
    with pytest.raises(TooManyParseExceptions):
        pipeline.add(recs[50:52])
    pipeline.close()
