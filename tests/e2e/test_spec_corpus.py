"""The spec corpus (tests/data/specs, sources in SOURCES.md) POSTed to a real Overlord.

Every spec is accepted, or refused for the reason ``expected.json`` gives (a format of issue 13, or
the task autoscaler). Five of the accepted ones (``"ingest": true``: Druid's tutorial spec, its
0.17 legacy-parser version, the docs' metrics-kafka rollup spec, Druid's GET output of the API
docs, Druid's integration-test spec with a legacy json parser) read a few records produced for them
and publish exactly those rows. Our GET output and Druid's GET output POSTed back change nothing:
same tasks, no new history entry.

The corpus specs are adapted to the test bed in one place, ``_for_test_bed``: unique topic and
dataSource, the test broker, and for the ingesting ones the earliest offset and a short taskDuration.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from overlord.client import OverlordClient, http, wait_for
from supervisor.spec import SupervisorSpec, parse_supervisor_spec
from tests.harness.kafka import create_topic, produce
from tests.harness.processes import Cluster, running_cluster
from tests.harness.segments import read_segments

SPECS = Path(__file__).resolve().parents[1] / "data" / "specs"
EXPECTED: dict[str, dict[str, Any]] = json.loads((SPECS / "expected.json").read_text())
SUP = "/druid/indexer/v1/supervisor"
ROWS = 6


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    root = tmp_path_factory.mktemp("corpus")
    with running_cluster(root / "cluster", f"sqlite:///{root / 'metadata.db'}", {"mm1": 6}) as c:
        yield c


def _for_test_bed(doc: dict[str, Any], bootstrap: str, ingest: bool) -> tuple[dict[str, Any], str]:
    """The corpus spec with a unique topic and dataSource and the test broker, wherever it says them."""
    name = f"corpus-{uuid.uuid4().hex[:10]}"
    levels = [doc, doc["spec"]] if isinstance(doc.get("spec"), dict) else [doc]
    for level in levels:
        schema, io = level.get("dataSchema"), level.get("ioConfig")
        if isinstance(schema, dict):
            schema["dataSource"] = name
        if isinstance(io, dict):
            for key in ("topic", "stream"):
                if key in io:
                    io[key] = name
            io["consumerProperties"] = {**io.get("consumerProperties", {}), "bootstrap.servers": bootstrap}
            if ingest:
                io["useEarliestOffset"] = True
                io.pop("useEarliestSequenceNumber", None)
                io["taskDuration"] = "PT5S"
                io["replicas"] = 1
    if "id" in doc:
        doc["id"] = name
    return doc, name


def _records(spec: SupervisorSpec, count: int) -> tuple[list[bytes], dict[str, list[Any]]]:
    """Records with every column the spec reads, one second apart; and each dimension's values."""
    schema = spec.data_schema
    dims = schema.dimensions_spec.dimensions
    names = [d.name for d in dims] or ["page"]
    values: dict[str, list[Any]] = {name: [] for name in names}
    out = []
    for i in range(count):
        ms = 1_700_000_000_000 + i * 1000
        row: dict[str, Any] = {}
        for d in dims or []:
            row[d.name] = i if d.type in ("long", "float", "double") else f"{d.name}-{i % 3}"
        if not dims:
            row["page"] = f"page-{i % 3}"
        for metric in schema.metrics_spec:
            if metric.field_name is not None:
                row[metric.field_name] = i + 1
        fmt = schema.timestamp_spec.format
        row[schema.timestamp_spec.column] = (
            ms
            if fmt == "millis"
            else ms // 1000
            if fmt == "posix"
            else (f"2023-11-14T22:13:{20 + i:02d}.000Z")
        )
        for name in names:
            values[name].append(row[name])
        out.append(json.dumps(row).encode())
    return out, values


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_corpus_spec(cluster: Cluster, kafka_bootstrap: str, name: str) -> None:
    expected = EXPECTED[name]
    ingest = bool(expected.get("ingest"))
    doc, ds = _for_test_bed(json.loads((SPECS / name).read_text()), kafka_bootstrap, ingest)
    create_topic(kafka_bootstrap, ds, 2)
    status, answer = http("POST", f"{cluster.url}{SUP}", doc)
    if expected["outcome"] == "refused":
        assert status == 400, answer
        assert expected["message"] in answer["error"], answer
        return
    assert status == 200, answer
    assert answer["id"] == ds
    assert answer.get("ignoredFields", []) == expected.get("ignoredFields", [])
    api = OverlordClient(cluster.url)
    try:
        if ingest:
            spec = parse_supervisor_spec(doc)
            records, values = _records(spec, ROWS)
            produce(kafka_bootstrap, ds, records, 2)
            assert api.wait_published(ds, ROWS, 90) == ROWS
            rows = list(read_segments(api.segments(ds)))
            assert len(rows) == ROWS
            for dim, produced in values.items():
                if dim in rows[0]:
                    assert sorted(str(r[dim]) for r in rows) == sorted(str(v) for v in produced), dim
    finally:
        api.terminate(ds)


def test_get_output_posted_back_changes_nothing(cluster: Cluster, kafka_bootstrap: str) -> None:
    api = OverlordClient(cluster.url)
    for source in (
        "druid-tutorial-wikipedia-kafka-supervisor.json",
        "druid-api-get-supervisor-social-media.json",
    ):
        doc, ds = _for_test_bed(json.loads((SPECS / source).read_text()), kafka_bootstrap, False)
        create_topic(kafka_bootstrap, ds, 2)
        assert http("POST", f"{cluster.url}{SUP}", doc)[0] == 200
        try:
            running: set[str] = wait_for(
                "tasks reading", lambda ds=ds: {t["id"] for t in api.tasks("running", ds)} or None, 60
            )
            history = http("GET", f"{cluster.url}{SUP}/{ds}/history")[1]
            # ours, then Druid's own form of the same spec again
            ours = http("GET", f"{cluster.url}{SUP}/{ds}")[1]
            for again in (ours, doc):
                status, answer = http("POST", f"{cluster.url}{SUP}", again)
                assert status == 200 and answer["id"] == ds, answer
            assert http("GET", f"{cluster.url}{SUP}/{ds}/history")[1] == history
            assert {t["id"] for t in api.tasks("running", ds)} == running
        finally:
            api.terminate(ds)


def test_history_entry_lists_the_ignored_fields(cluster: Cluster, kafka_bootstrap: str) -> None:
    doc, ds = _for_test_bed(
        json.loads((SPECS / "druid-latest-kafka-ingestion-metrics-kafka.json").read_text()),
        kafka_bootstrap,
        False,
    )
    doc["spec"]["tuningConfig"]["fooBar"] = 1
    status, answer = http("POST", f"{cluster.url}{SUP}", doc)
    assert (status, answer) == (200, {"id": ds, "ignoredFields": ["spec.tuningConfig.fooBar"]})
    try:
        entry = http("GET", f"{cluster.url}{SUP}/{ds}/history")[1][0]
        assert entry["spec"]["ignoredFields"] == ["spec.tuningConfig.fooBar"]
        assert "fooBar" not in json.dumps(http("GET", f"{cluster.url}{SUP}/{ds}")[1])
    finally:
        OverlordClient(cluster.url).terminate(ds)
