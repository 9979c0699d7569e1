"""The Overlord API under bad requests: a clear 4xx, nothing touched on disk or in the database.

Hand-written cases (malformed JSON, wrong types, unknown ids, huge bodies, odd datasource names)
against a real Overlord process, then a fuzz run generated from its own OpenAPI document
(schemathesis) that must not get a single 5xx. Datasource names that are odd but valid (quotes,
spaces, ``#``, ``?``, ``%``, non-ASCII, 255 bytes) must ingest end to end.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import sqlalchemy as sa

from overlord.client import http, wait_for
from tests.harness.http import request
from tests.harness.kafka import create_topic, produce
from tests.harness.processes import Cluster, running_cluster
from tests.harness.segments import read_segments
from tests.harness.specs import kafka_spec

pytestmark = pytest.mark.e2e

SUP = "/druid/indexer/v1/supervisor"


@pytest.fixture(scope="module")
def overlord(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """An Overlord alone (no MiddleManager): API calls may create supervisors, never tasks that run."""
    root = tmp_path_factory.mktemp("api")
    env = {"OVERLORD_MAX_REQUEST_BYTES": str(1024 * 1024)}
    with running_cluster(root / "cluster", f"sqlite:///{root / 'metadata.db'}", env=env) as c:
        yield c


def _footprint(c: Cluster) -> tuple[int, int, int, list[str]]:
    """Rows that API calls could create, and what is in deep storage."""
    engine = sa.create_engine(c.metadata_url)
    try:
        with engine.connect() as conn:
            counts = [
                int(conn.execute(sa.text(f"SELECT count(*) FROM {t}")).scalar_one())
                for t in ("supervisors", "tasks", "datasource_metadata")
            ]
    finally:
        engine.dispose()
    files = (
        sorted(str(p.relative_to(c.deep_storage)) for p in c.deep_storage.rglob("*"))
        if c.deep_storage.exists()
        else []
    )
    return counts[0], counts[1], counts[2], files


def _spec(datasource: Any, topic: str = "events", bootstrap: str = "127.0.0.1:1") -> dict[str, Any]:
    return kafka_spec(
        datasource,
        topic,
        bootstrap,
        taskDuration="PT5S",
        taskCount=None,
        replicas=None,
        completionTimeout=None,
    )


def _with_io(spec: dict[str, Any], **io: Any) -> dict[str, Any]:
    spec["spec"]["ioConfig"].update(io)
    return spec


BAD_BODIES: list[tuple[str, bytes]] = [
    ("empty", b""),
    ("not json", b"{this is not json"),
    ("truncated", b'{"type": "kafka", "spec": {'),
    ("not utf-8", b'{"type": "kafka\xff\xfe"}'),
    ("array", b"[1, 2, 3]"),
    ("number", b"42"),
    ("null", b"null"),
    ("string", b'"kafka"'),
    ("nan", b'{"type": NaN}'),
    ("deep nesting", b"[" * 100_000 + b"]" * 100_000),
    ("wrong type of type", json.dumps({"type": 5, "spec": {}}).encode()),
    ("unknown type", json.dumps({"type": "kinesis", "spec": {}}).encode()),
    ("spec not an object", json.dumps({"type": "kafka", "spec": "x"}).encode()),
    ("dataSchema a number", json.dumps({"type": "kafka", "spec": {"dataSchema": 5}}).encode()),
    ("taskCount a word", json.dumps(_with_io(_spec("ds_ok"), taskCount="two")).encode()),
    ("near-typo of a known field", json.dumps(_with_io(_spec("ds_ok"), taskCont=2)).encode()),
]


@pytest.mark.parametrize("body", [b for _, b in BAD_BODIES], ids=[n for n, _ in BAD_BODIES])
def test_bad_supervisor_bodies_get_a_clear_4xx_and_touch_nothing(overlord: Cluster, body: bytes) -> None:
    before = _footprint(overlord)
    code, answer, _ = request("POST", f"{overlord.url}{SUP}", data=body)
    assert 400 <= code < 500, (code, answer)
    assert isinstance(answer, dict) and isinstance(answer.get("error"), str) and answer["error"], answer
    assert _footprint(overlord) == before


def test_wrong_types_in_the_spec_name_the_field(overlord: Cluster) -> None:
    spec = _spec("ds_types")
    spec["spec"]["ioConfig"]["taskCount"] = "two"
    code, answer = http("POST", f"{overlord.url}{SUP}", spec)
    assert code == 400
    assert "taskCount" in answer["error"]
    spec = _spec("ds_types")
    spec["spec"]["ioConfig"]["replicas"] = -1
    code, answer = http("POST", f"{overlord.url}{SUP}", spec)
    assert code == 400 and "replicas" in answer["error"]


def test_huge_body_is_refused_with_413(overlord: Cluster) -> None:
    before = _footprint(overlord)
    spec = _spec("ds_huge")
    spec["spec"]["dataSchema"]["dimensionsSpec"]["dimensions"] = [f"d{i:07d}" for i in range(200_000)]
    code, answer, _ = request("POST", f"{overlord.url}{SUP}", data=json.dumps(spec).encode())
    assert code == 413, answer
    assert _footprint(overlord) == before


ODD_INVALID_NAMES = [
    "../etc",
    "..",
    ".hidden",
    "a/b",
    "a\\b",
    "/absolute",
    "",
    "   ",
    "tab\there",
    "new\nline",
    "nul\x00byte",
    "x" * 256,
    "é" * 128,  # 256 bytes in UTF-8
    5,
    None,
    ["ds"],
]


@pytest.mark.parametrize("name", ODD_INVALID_NAMES, ids=lambda n: repr(n)[:30])
def test_odd_datasource_names_are_refused_and_touch_nothing(overlord: Cluster, name: Any) -> None:
    before = _footprint(overlord)
    code, answer = http("POST", f"{overlord.url}{SUP}", _spec(name))
    assert code == 400, (code, answer)
    assert "dataSource" in answer["error"], answer
    assert _footprint(overlord) == before
    assert not (overlord.workdir.parent / "etc").exists()


UNKNOWN_IDS = ["nope", "../../etc/passwd", "..", "a%2Fb", "' OR 1=1 --", "x" * 2000, "ünï", "%00"]


@pytest.mark.parametrize("sup_id", UNKNOWN_IDS, ids=lambda n: repr(n)[:30])
def test_unknown_supervisor_ids_get_404(overlord: Cluster, sup_id: str) -> None:
    before = _footprint(overlord)
    path = quote(sup_id, safe="%")
    for method, suffix in [
        ("GET", ""),
        ("GET", "/status"),
        ("GET", "/health"),
        ("GET", "/history"),
        ("GET", "/stats"),
        ("GET", "/parseErrors"),
        ("POST", "/suspend"),
        ("POST", "/resume"),
        ("POST", "/reset"),
        ("POST", "/terminate"),
    ]:
        code, answer, _ = request(method, f"{overlord.url}{SUP}/{path}{suffix}")
        assert code == 404, (method, suffix, code, answer)
    for method, url in [
        ("GET", f"{overlord.url}/druid/indexer/v1/task/{path}"),
        ("GET", f"{overlord.url}/druid/indexer/v1/task/{path}/reports"),
    ]:
        code, answer, _ = request(method, url)
        assert code == 404, (method, url, code, answer)
    # Druid's OverlordResource.doShutdown answers 200 for a task that is not active
    code, answer, _ = request("POST", f"{overlord.url}/druid/indexer/v1/task/{path}/shutdown")
    assert code == 200, (code, answer)
    assert _footprint(overlord) == before


def test_bad_query_parameters_and_handoff_bodies(overlord: Cluster) -> None:
    code, _ = http("POST", f"{overlord.url}{SUP}", _spec("ds_params"))
    assert code == 200
    for query in ("count=-1", "count=abc", "count=99999999999999999999999"):
        code, answer, _ = request("GET", f"{overlord.url}{SUP}/ds_params/history?{query}")
        assert code in (200, 400), (query, code, answer)
    for query in ("state=bogus", "max=-3", "max=x"):
        code, answer, _ = request("GET", f"{overlord.url}/druid/indexer/v1/tasks?{query}")
        assert code == 400, (query, code, answer)
    for body in (b"{}", b'{"taskGroupIds": "0"}', b'{"taskGroupIds": [true]}', b"[0]"):
        code, answer, _ = request("POST", f"{overlord.url}{SUP}/ds_params/taskGroups/handoff", data=body)
        assert code == 400, (body, code, answer)
    http("POST", f"{overlord.url}{SUP}/ds_params/terminate")


# ------------------------------------------------------------------ fuzzing from the OpenAPI document


def test_fuzz_from_the_openapi_document_never_gets_a_5xx(overlord: Cluster) -> None:
    """Every operation of the Overlord's own OpenAPI document, with valid and invalid generated
    requests (schemathesis + hypothesis): no answer may be a 5xx."""
    schemathesis = pytest.importorskip("schemathesis")
    from hypothesis import HealthCheck, given, settings
    from hypothesis.errors import Unsatisfiable
    from schemathesis import GenerationMode

    examples = int(os.environ.get("API_FUZZ_EXAMPLES", "20"))
    schema = schemathesis.openapi.from_url(f"{overlord.url}/druid/indexer/v1/openapi.json")
    server_errors: list[str] = []
    seen: set[tuple[str, str]] = set()
    calls = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @given(case=operation.as_strategy(generation_mode=mode))
            @settings(
                max_examples=examples,
                deadline=None,
                database=None,
                suppress_health_check=list(HealthCheck),
            )
            def call(case: Any) -> None:
                nonlocal calls
                response = case.call(timeout=30)
                calls += 1
                if response.status_code >= 500 and (case.method, case.path) not in seen:
                    seen.add((case.method, case.path))
                    server_errors.append(
                        f"{case.method} {case.formatted_path} {case.query or ''} "
                        f"body={str(case.body)[:200]!r} -> {response.status_code} {response.text[:300]}"
                    )

            with contextlib.suppress(Unsatisfiable):  # nothing invalid to generate without inputs
                call()
    assert calls > 100
    assert not server_errors, "\n".join(server_errors[:20])


# ------------------------------------------------------------------ odd but valid names ingest


ODD_VALID_NAMES = [
    "with space",
    "quote'single",
    'quote"double',
    "hash#mark",
    "question?mark",
    "per%cent",
    "colon:semi;",
    "ünïcødé-数据",
    "y" * 255,
]


def test_odd_but_valid_datasource_names_ingest(tmp_path: Path, kafka_bootstrap: str) -> None:
    """One supervisor per odd name, all at once, on one cluster: each one's events get published."""
    metadata_url = f"sqlite:///{tmp_path / 'metadata.db'}"
    with running_cluster(tmp_path / "cluster", metadata_url, {"mm1": len(ODD_VALID_NAMES) + 2}) as cluster:
        now = int(time.time() * 1000)
        for name in ODD_VALID_NAMES:
            topic = f"odd-{uuid.uuid4().hex[:8]}"
            create_topic(kafka_bootstrap, topic, 1)
            produce(
                kafka_bootstrap, topic, [json.dumps({"ts": now, "id": f"e{i}"}).encode() for i in range(10)]
            )
            code, answer = http("POST", f"{cluster.url}{SUP}", _spec(name, topic, kafka_bootstrap))
            assert code == 200, answer
            assert answer["id"] == name
        for name in ODD_VALID_NAMES:
            sup = quote(name, safe="")
            code, status = http("GET", f"{cluster.url}{SUP}/{sup}/status")
            assert code == 200 and status["payload"]["dataSource"] == name, status

            def published(sup: str = sup) -> list[dict[str, Any]] | None:
                code, segs = http(
                    "GET", f"{cluster.url}/druid/coordinator/v1/metadata/datasources/{sup}/segments?full"
                )
                return segs if code == 200 and sum(s["numRows"] for s in segs) >= 10 else None

            segments = wait_for(f"rows of {name!r} published", published, 120, 1.0)
            assert sorted(r["id"] for r in read_segments(segments)) == [f"e{i}" for i in range(10)]
