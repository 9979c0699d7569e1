"""Prometheus metrics of the Overlord, served at ``GET /metrics``.

Supervisor figures (lag, row counts of running tasks, states) are read at
scrape time from the supervisors themselves; publish outcomes and times are
counted as they happen. Time lag (``kafka_indexer_lag_millis``) is reported for the supervisors
whose ioConfig sets ``emitTimeLagMetrics`` (Druid 30+: off by default, as in Druid).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from supervisor import reports
from supervisor.supervisor import Supervisor

REGISTRY = CollectorRegistry(auto_describe=True)

PUBLISHES = Counter(
    "kafka_indexer_publishes",
    "Segment publish requests by outcome",
    ["datasource", "outcome"],
    registry=REGISTRY,
)
PUBLISHED_ROWS = Counter(
    "kafka_indexer_published_rows",
    "Rows in newly committed segments (a replica's or retry's repeat is not counted)",
    ["datasource"],
    registry=REGISTRY,
)
PUBLISH_SECONDS = Histogram(
    "kafka_indexer_publish_seconds",
    "Time of the publish transaction (segments + offsets)",
    ["datasource"],
    registry=REGISTRY,
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)


class SupervisorCollector(Collector):
    def __init__(
        self, supervisors: Callable[[], list[Supervisor]], task_counts: Callable[[], dict[str, int]]
    ):
        self._supervisors = supervisors
        self._task_counts = task_counts

    def collect(self) -> Iterator[GaugeMetricFamily]:
        lag = GaugeMetricFamily(
            "kafka_indexer_lag_records", "Records behind per partition", labels=["datasource", "partition"]
        )
        lag_ms = GaugeMetricFamily(
            "kafka_indexer_lag_millis",
            "Time lag per partition in milliseconds",
            labels=["datasource", "partition"],
        )
        rows = GaugeMetricFamily(
            "kafka_indexer_task_rows",
            "Row counts of the running tasks (processed, processedWithError, unparseable, thrownAway)",
            labels=["datasource", "kind"],
        )
        healthy = GaugeMetricFamily(
            "kafka_indexer_supervisor_healthy", "1 when healthy", labels=["supervisor", "state"]
        )
        for sup in self._supervisors():
            view = sup.view()
            for p, v in reports.lag(view).items():
                lag.add_metric([sup.datasource, str(p)], v)
            if sup.spec.io_config.emit_time_lag_metrics:
                for p, v in reports.lag_millis(view).items():
                    lag_ms.add_metric([sup.datasource, str(p)], v)
            for kind, v in reports.row_totals(view).items():
                rows.add_metric([sup.datasource, kind], v)
            healthy.add_metric([sup.id, sup.state.basic.label], 1 if sup.state.healthy else 0)
        tasks = GaugeMetricFamily("kafka_indexer_tasks", "Active tasks by runner state", labels=["state"])
        for state, n in self._task_counts().items():
            tasks.add_metric([state], n)
        yield from (lag, lag_ms, rows, healthy, tasks)
