"""The quickstart: a real local cluster ingesting a sample stream end to end.

    python examples/quickstart.py [start|stop] [--bootstrap 127.0.0.1:9092] [--events 50000]

``start`` runs an Overlord on the embedded SQLite metadata store and one
MiddleManager (both left running in the background), creates the topic
``edits``, produces a generated stream of Wikipedia-like edits, submits
``examples/edits-supervisor.json``, shows progress while it ingests, hands off,
and prints what was published. ``stop`` stops the processes it started.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

sys.path.insert(0, str(Path(__file__).resolve().parent))
from sample_stream import edits

from overlord.client import OverlordClient, http, wait_for

REPO = Path(__file__).resolve().parent.parent
VAR = REPO / "var" / "quickstart"
OVERLORD_PORT = 8090
MM_PORT = 8091
TOPIC = "edits"


def _say(msg: str) -> None:
    print(f"[quickstart] {msg}", flush=True)


def _spawn(name: str, args: list[str]) -> None:
    logs = VAR / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    with open(logs / f"{name}.log", "ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", *args],
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=REPO,
            start_new_session=True,
        )
    (VAR / f"{name}.pid").write_text(str(proc.pid))


def _queryable(url: str, datasource: str) -> int:
    """Events a Druid SQL query sees now: published segments plus the rows still in the tasks."""
    sql = f'SELECT SUM(edits) AS n FROM "{datasource}"'
    status, answer = http("POST", f"{url}/druid/v2/sql", {"query": sql})
    if status != 200 or not answer:  # no row of it anywhere yet: an unknown table
        return 0
    return int(answer[0]["n"] or 0)


def stop() -> None:
    for name in ("middlemanager", "overlord"):
        pid_file = VAR / f"{name}.pid"
        if not pid_file.exists():
            continue
        pid = int(pid_file.read_text())
        try:
            os.kill(pid, signal.SIGTERM)
            for _ in range(150):
                os.kill(pid, 0)
                time.sleep(0.1)
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        pid_file.unlink()
        _say(f"stopped {name} (pid {pid})")


def _recreate_topic(bootstrap: str, partitions: int) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    if TOPIC in admin.list_topics(timeout=10).topics:
        for fut in admin.delete_topics([TOPIC]).values():
            fut.result()
        wait_for("old topic deleted", lambda: TOPIC not in admin.list_topics(timeout=10).topics, 30)
    for fut in admin.create_topics([NewTopic(TOPIC, partitions, 1)]).values():
        fut.result()
    wait_for(
        "topic ready",
        lambda: len(admin.list_topics(TOPIC, timeout=10).topics[TOPIC].partitions) == partitions,
        30,
    )


def start(bootstrap: str, count: int) -> None:
    stop()
    shutil.rmtree(VAR, ignore_errors=True)
    VAR.mkdir(parents=True)
    metadata_url = f"sqlite:///{VAR / 'metadata.db'}"
    subprocess.run(
        [sys.executable, "-m", "overlord", "migrate", "--metadata-url", metadata_url], check=True, cwd=REPO
    )
    _spawn(
        "overlord",
        [
            "overlord",
            "serve",
            "--metadata-url",
            metadata_url,
            "--deep-storage",
            str(VAR / "deep-storage"),
            "--port",
            str(OVERLORD_PORT),
        ],
    )
    api = OverlordClient(f"http://127.0.0.1:{OVERLORD_PORT}")
    wait_for("the Overlord", api.healthy, 30)
    _spawn(
        "middlemanager",
        ["middlemanager", "--overlord", api.url, "--port", str(MM_PORT), "--task-dir", str(VAR / "tasks")],
    )
    _say(f"Overlord on {api.url} (SQLite metadata store {VAR / 'metadata.db'}), MiddleManager on :{MM_PORT}")

    _recreate_topic(bootstrap, 2)
    events = list(edits(count))
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20})
    for value in events:
        producer.produce(TOPIC, value)
        producer.poll(0)
    producer.flush(60)
    good = [json.loads(e) for e in events if e.startswith(b'{"')]
    expected = sum(1 for e in good if e["channel"] != "#test")
    _say(
        f"produced {len(events)} events to topic '{TOPIC}' "
        f"({len(events) - len(good)} unparseable, {len(good) - expected} filtered out by the spec)"
    )

    spec = json.loads((REPO / "examples" / "edits-supervisor.json").read_text())
    spec["spec"]["ioConfig"]["consumerProperties"]["bootstrap.servers"] = bootstrap
    sup = api.submit(spec)
    _say(f"submitted supervisor '{sup}'; ingesting (taskDuration 30s: segments publish as tasks roll over)")

    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        st = api.status(sup)
        published = api.published_rows(sup)
        _say(
            f"state {st['state']:<8} lag {st['aggregateLag']!s:>6}  active tasks {len(st['activeTasks'])}  "
            f"publishing {len(st['publishingTasks'])}  published rows {published}/{expected}  "
            f"queryable events {_queryable(api.url, sup)}/{expected}"
        )
        if st["aggregateLag"] == 0 and st["latestOffsets"] and st["activeTasks"]:
            break
        time.sleep(2)
    _say("caught up: suspending the supervisor hands off what the tasks hold")
    api.suspend(sup)
    api.wait_published(sup, expected, 180)
    api.wait_quiet(sup, 120)

    segments = api.segments(sup)
    rows = [r for s in segments for r in pq.read_table(s["loadSpec"]["path"]).to_pylist()]
    _say(f"published {len(segments)} segments holding {sum(s['numRows'] for s in segments)} rows:")
    for s in sorted(segments, key=lambda s: s["interval"]):
        _say(f"  {s['identifier']}  rows={s['numRows']}  size={s['size']}B  {s['loadSpec']['path']}")
    top = Counter()
    for r in rows:
        top[r["page"]] += r["edits"]
    sql = f'SELECT page, SUM(edits) AS edits FROM "{sup}" GROUP BY page ORDER BY edits DESC, page LIMIT 5'
    status, answer = http("POST", f"{api.url}/druid/v2/sql", {"query": sql})
    assert status == 200, f"Druid SQL query failed: HTTP {status}: {answer}"
    _say(f"top 5 pages by edits, Druid SQL over HTTP (POST {api.url}/druid/v2/sql):")
    _say(f"  {sql}")
    for row in answer:
        _say(f"  {row['edits']:>6}  {row['page']}")
    by_sql = {row["page"]: row["edits"] for row in answer}
    assert all(top[page] == n for page, n in by_sql.items()), "the SQL answer differs from the segments"
    assert sorted(by_sql.values(), reverse=True) == [n for _, n in top.most_common(5)]
    done = [t for t in api.tasks(datasource=sup) if t["statusCode"] != "RUNNING"]
    _say(f"tasks: {Counter(t['statusCode'] for t in done)}")
    assert len(rows) == expected, f"expected {expected} rows, read {len(rows)}"
    _say("exactly-once check: every parseable, unfiltered event is in exactly one published row")
    _say("the cluster keeps running: API at http://127.0.0.1:8090/druid/indexer/v1/supervisor")
    _say("stop it with: scripts/quickstart stop")


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("command", nargs="?", default="start", choices=["start", "stop"])
    p.add_argument("--bootstrap", default=os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092"))
    p.add_argument("--events", type=int, default=50_000)
    args = p.parse_args()
    if args.command == "stop":
        stop()
    else:
        start(args.bootstrap, args.events)
    return 0


if __name__ == "__main__":
    sys.exit(main())
