"""The JSON fast path with a transformSpec: the same rows, stats, reports and dead letters as the
reference path, on clean records mixed with every kind of bad one."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from middlemanager.ingest import pipeline as pipeline_module
from middlemanager.ingest.fastjson import FastJsonPath
from middlemanager.ingest.pipeline import IngestPipeline
from supervisor.spec import parse_supervisor_spec
from tests.harness.specs import kafka_spec
from tests.unit.test_ingest import DAY, HOUR, T0, ingest_both_ways

TRANSFORM_SPEC: dict[str, Any] = {
    "transforms": [
        {"type": "expression", "name": "page", "expression": "upper(page)"},
        {"type": "expression", "name": "net", "expression": "added - deleted"},
        {"type": "expression", "name": "ratio", "expression": "added / deleted"},  # fails on 0
        {"type": "expression", "name": "code", "expression": "if(deleted > 7, concat('x', page), deleted)"},
        {"type": "expression", "name": "__time", "expression": "__time + 60000 * lag"},
    ],
    "filter": {
        "type": "or",
        "fields": [
            {"type": "bound", "dimension": "net", "lower": "0", "ordering": "numeric"},
            {"type": "selector", "dimension": "flag", "value": "keep"},
        ],
    },
}


def spec(rollup: bool) -> Any:
    doc = kafka_spec(
        "events",
        "events",
        "localhost:9092",
        timestamp={"column": "ts", "format": "auto"},
        dimensions=["page", {"type": "long", "name": "ratio"}, {"type": "long", "name": "code"}, "net"],
        metrics=[
            {"type": "count", "name": "count"},
            {"type": "longSum", "name": "netSum", "fieldName": "net"},
            {"type": "doubleSum", "name": "ratioSum", "fieldName": "ratio"},
            {"type": "thetaSketch", "name": "users", "fieldName": "user"},
        ],
        rollup=rollup,
        query_granularity="minute" if rollup else "none",
        tuning={"maxSavedParseExceptions": 10000, "deadLetterTopic": "dlq"},
    )
    doc["spec"]["dataSchema"]["transformSpec"] = TRANSFORM_SPEC
    return parse_supervisor_spec(doc)


def clean(rng: random.Random) -> bytes:
    return orjson.dumps(
        {
            "ts": datetime.fromtimestamp((T0 + rng.randrange(3 * HOUR)) / 1000, tz=UTC).isoformat(),
            "page": rng.choice(["a", "b", "é", None, "\u00e9x"]),
            "added": rng.randrange(20),
            "deleted": rng.randrange(12),
            "lag": rng.randrange(-3, 90),
            "flag": rng.choice(["keep", "drop", None]),
            "user": rng.choice(["u1", "u2", "u3", "u4"]),
            "other": {"x": [1, 2]},
        }
    )


TRICKY: list[bytes | None] = [
    b'{"ts":"yesterday","page":"a","added":1,"deleted":1,"lag":0}',
    b'{"page":"no ts","added":1,"deleted":1,"lag":0}',
    b'{"ts":"2024-01-01T00:30:00Z","page":"x","added":"7","deleted":1,"lag":0}',
    b'{"ts":"2024-01-01T00:30:00Z","page":5,"added":1,"deleted":1,"lag":0}',
    b'{"ts":"2024-01-01T00:30:00Z","page":"\\u0000nul","added":1,"deleted":1,"lag":0}',
    b'{"ts":"2024-01-01T00:30:00Z","page":"a","added":1.5,"deleted":1,"lag":0}',
    b'{"ts":"2024-01-01T00:30:00Z","page":"a","added":1,"deleted":0,"lag":0}',
    b'{"ts":"2024-01-01T00:30:00Z","page":["m","k"],"added":1,"deleted":1,"lag":0}',
    b'{"ts":"2024-01-01T00:30:00Z","page":"a","added":1,"deleted":1,"lag":0,"x":NaN}',
    b"not json",
    b"",
    None,
]


def count_fast_parses(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """A counter (its one item) of the batches the fast path accepts from now on."""
    taken = [0]
    real_parse = FastJsonPath.parse

    def spy(self: FastJsonPath, values: list[bytes | None]) -> Any:
        result = real_parse(self, values)
        taken[0] += result is not None
        return result

    monkeypatch.setattr(FastJsonPath, "parse", spy)
    return taken


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("rollup", [False, True])
def test_fast_path_with_transforms_equals_the_reference_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, seed: int, rollup: bool
) -> None:
    rng = random.Random(seed)
    values = [rng.choice(TRICKY) if rng.random() < 0.03 else clean(rng) for _ in range(1500)]
    monkeypatch.setattr(pipeline_module, "_FAST_MIN_SPLIT", 8)  # keep clean records on the fast path
    taken = count_fast_parses(monkeypatch)
    fast, reference = ingest_both_ways(
        tmp_path,
        values,
        batch=rng.choice([40, 300, 1500]),
        monkeypatch=monkeypatch,
        spec=spec(rollup),
        max_message_time=T0 + 2 * HOUR,
        sort_reports=True,
    )
    assert taken[0] > 0
    assert fast == reference
    stats = fast[0]
    assert stats["processed"] > 0 and stats["thrownAway"] > 0 and stats["unparseable"] > 0
    assert stats["processedWithError"] > 0  # code: a string in a long dimension


def test_mixed_typed_input_leaves_the_fast_path(tmp_path: Path) -> None:
    """An input whose values are mostly lists (or objects) cannot be read exactly here; mostly
    doubles can (each batch is checked for integer literals, see fastjson._double_literals_only)."""
    pipeline = IngestPipeline(spec(False), tmp_path / "work")
    fast = pipeline._fast
    assert fast is not None
    fast.prepare([orjson.dumps({"ts": T0, "flag": [1]}), orjson.dumps({"ts": T0 + DAY, "flag": "keep"})] * 2)
    assert not fast.usable
    doubles = IngestPipeline(spec(False), tmp_path / "work2")._fast
    assert doubles is not None
    doubles.prepare(
        [orjson.dumps({"ts": T0, "flag": 1.5}), orjson.dumps({"ts": T0 + DAY, "flag": "keep"})] * 2
    )
    assert doubles.usable
