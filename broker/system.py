"""INFORMATION_SCHEMA and ``sys`` tables (Druid's docs: querying/sql-metadata-tables.md), as Arrow
tables the engine loads: built from the snapshot and from the Overlord's task, supervisor and worker
APIs."""

from __future__ import annotations

import json
from typing import Any

import pyarrow as pa

from broker import timeline
from broker.catalog import SegmentCatalog, Snapshot
from broker.engine import druid_types
from broker.sql import INFO_SCHEMA, INFO_TABLES, SYS_SCHEMA, SYS_TABLES, Translated
from supervisor.chronology import format_instant

S, L, B = pa.string(), pa.int64(), pa.bool_()


# java.sql.Types of Druid's SQL types: INFORMATION_SCHEMA.COLUMNS.JDBC_TYPE (clients such as pydruid's
# SQLAlchemy dialect map columns by it); 1111 is OTHER (COMPLEX), 2003 ARRAY
_JDBC_TYPES = {
    "VARCHAR": 12,
    "BIGINT": -5,
    "INTEGER": 4,
    "SMALLINT": 5,
    "TINYINT": -6,
    "DOUBLE": 8,
    "FLOAT": 6,
    "DECIMAL": 3,
    "BOOLEAN": 16,
    "TIMESTAMP": 93,
    "DATE": 91,
    "ARRAY": 2003,
}


def _table(rows: list[dict[str, Any]], fields: list[tuple[str, pa.DataType]]) -> pa.Table:
    schema = pa.schema(fields)
    return pa.Table.from_pylist([{f: r.get(f) for f, _ in fields} for r in rows], schema=schema)


def _info(name: str, snapshot: Snapshot, columns: dict[str, list[tuple[str, str]]]) -> pa.Table:
    rows: list[dict[str, Any]]
    if name == "SCHEMATA":
        rows = [
            {
                "CATALOG_NAME": "druid",
                "SCHEMA_NAME": s,
                "SCHEMA_OWNER": None,
                "DEFAULT_CHARACTER_SET_CATALOG": None,
                "DEFAULT_CHARACTER_SET_SCHEMA": None,
                "DEFAULT_CHARACTER_SET_NAME": None,
                "SQL_PATH": None,
            }
            for s in ("druid", "INFORMATION_SCHEMA", "sys")
        ]
        return _table(rows, [(k, S) for k in rows[0]])
    if name == "TABLES":
        rows = [
            {
                "TABLE_CATALOG": "druid",
                "TABLE_SCHEMA": "druid",
                "TABLE_NAME": ds,
                "TABLE_TYPE": "TABLE",
                "IS_JOINABLE": "NO",
                "IS_BROADCAST": "NO",
            }
            for ds in snapshot.datasources()
        ]
        rows += [
            {
                "TABLE_CATALOG": "druid",
                "TABLE_SCHEMA": "INFORMATION_SCHEMA",
                "TABLE_NAME": t,
                "TABLE_TYPE": "SYSTEM_TABLE",
                "IS_JOINABLE": "NO",
                "IS_BROADCAST": "NO",
            }
            for t in INFO_TABLES
        ]
        rows += [
            {
                "TABLE_CATALOG": "druid",
                "TABLE_SCHEMA": "sys",
                "TABLE_NAME": t,
                "TABLE_TYPE": "SYSTEM_TABLE",
                "IS_JOINABLE": "NO",
                "IS_BROADCAST": "NO",
            }
            for t in SYS_TABLES
        ]
        return _table(rows, [(k, S) for k in rows[0]])
    rows = []
    for ds, cols in columns.items():
        for i, (col, duck) in enumerate(cols, start=1):
            sql_type = druid_types(duck)[1]
            rows.append(
                {
                    "TABLE_CATALOG": "druid",
                    "TABLE_SCHEMA": "druid",
                    "TABLE_NAME": ds,
                    "COLUMN_NAME": col,
                    "ORDINAL_POSITION": i,
                    "COLUMN_DEFAULT": None,
                    "IS_NULLABLE": "NO" if col == "__time" else "YES",
                    "DATA_TYPE": sql_type,
                    "CHARACTER_MAXIMUM_LENGTH": None,
                    "CHARACTER_OCTET_LENGTH": None,
                    "NUMERIC_PRECISION": None,
                    "NUMERIC_PRECISION_RADIX": None,
                    "NUMERIC_SCALE": None,
                    "DATETIME_PRECISION": None,
                    "CHARACTER_SET_NAME": None,
                    "COLLATION_NAME": None,
                    "JDBC_TYPE": _JDBC_TYPES.get(sql_type.split(" ")[-1], 1111),
                }
            )
    fields = [
        ("TABLE_CATALOG", S),
        ("TABLE_SCHEMA", S),
        ("TABLE_NAME", S),
        ("COLUMN_NAME", S),
        ("ORDINAL_POSITION", L),
        ("COLUMN_DEFAULT", S),
        ("IS_NULLABLE", S),
        ("DATA_TYPE", S),
        ("CHARACTER_MAXIMUM_LENGTH", L),
        ("CHARACTER_OCTET_LENGTH", L),
        ("NUMERIC_PRECISION", L),
        ("NUMERIC_PRECISION_RADIX", L),
        ("NUMERIC_SCALE", L),
        ("DATETIME_PRECISION", L),
        ("CHARACTER_SET_NAME", S),
        ("COLLATION_NAME", S),
        ("JDBC_TYPE", L),
    ]
    return _table(rows, fields)


def _segments(snapshot: Snapshot) -> pa.Table:
    # is_overshadowed by Druid's timeline (broker/timeline.py); is_active: published and not overshadowed
    shadowed = {i for segs in snapshot.segments.values() for i in timeline.timeline(segs).overshadowed}
    rows = [
        {
            "segment_id": s.id,
            "datasource": s.datasource,
            "start": format_instant(s.start_ms),
            "end": format_instant(s.end_ms),
            "size": s.size,
            "version": s.version,
            "partition_num": s.partition_num,
            "num_replicas": 1,
            "num_rows": s.num_rows,
            "is_active": 0 if s.id in shadowed else 1,
            "is_published": 1,
            "is_available": 1,
            "is_realtime": 0,
            "is_overshadowed": 1 if s.id in shadowed else 0,
            "shard_spec": json.dumps(s.payload.get("shardSpec")),
            "dimensions": json.dumps(list(s.dimensions)),
            "metrics": json.dumps(list(s.metrics)),
            "last_compaction_state": None,
            "replication_factor": 1,
        }
        for segs in snapshot.segments.values()
        for s in segs
    ]
    fields = [
        ("segment_id", S),
        ("datasource", S),
        ("start", S),
        ("end", S),
        ("size", L),
        ("version", S),
        ("partition_num", L),
        ("num_replicas", L),
        ("num_rows", L),
        ("is_active", L),
        ("is_published", L),
        ("is_available", L),
        ("is_realtime", L),
        ("is_overshadowed", L),
        ("shard_spec", S),
        ("dimensions", S),
        ("metrics", S),
        ("last_compaction_state", S),
        ("replication_factor", L),
    ]
    return _table(rows, fields)


def _tasks(tasks: list[dict[str, Any]]) -> pa.Table:
    rows = []
    for t in tasks:
        loc = t.get("location") or {}
        host, port = loc.get("host"), loc.get("port", -1)
        rows.append(
            {
                "task_id": t.get("id"),
                "group_id": t.get("groupId"),
                "type": t.get("type"),
                "datasource": t.get("dataSource"),
                "created_time": t.get("createdTime"),
                "queue_insertion_time": t.get("queueInsertionTime"),
                "status": t.get("statusCode"),
                "runner_status": t.get("runnerStatusCode"),
                "duration": t.get("duration"),
                "location": f"{host}:{port}" if host else None,
                "host": host,
                "plaintext_port": port,
                "tls_port": loc.get("tlsPort", -1),
                "error_msg": t.get("errorMsg"),
            }
        )
    fields = [
        ("task_id", S),
        ("group_id", S),
        ("type", S),
        ("datasource", S),
        ("created_time", S),
        ("queue_insertion_time", S),
        ("status", S),
        ("runner_status", S),
        ("duration", L),
        ("location", S),
        ("host", S),
        ("plaintext_port", L),
        ("tls_port", L),
        ("error_msg", S),
    ]
    return _table(rows, fields)


def _supervisors(sups: list[dict[str, Any]]) -> pa.Table:
    rows = []
    for s in sups:
        spec = s.get("spec") or {}
        rows.append(
            {
                "supervisor_id": s.get("id"),
                "state": s.get("state"),
                "detailed_state": s.get("detailedState"),
                "healthy": 1 if s.get("healthy") else 0,
                "type": spec.get("type", "kafka"),
                "source": ((spec.get("spec") or spec).get("ioConfig") or {}).get("topic"),
                "suspended": 1 if s.get("suspended") else 0,
                "spec": json.dumps(spec),
            }
        )
    fields = [
        ("supervisor_id", S),
        ("state", S),
        ("detailed_state", S),
        ("healthy", L),
        ("type", S),
        ("source", S),
        ("suspended", L),
        ("spec", S),
    ]
    return _table(rows, fields)


def _servers(workers: list[dict[str, Any]], overlord_url: str) -> pa.Table:
    host = overlord_url.split("://", 1)[-1].rstrip("/")
    rows = [
        {
            "server": host,
            "host": host.rsplit(":", 1)[0],
            "plaintext_port": int(host.rsplit(":", 1)[-1]) if ":" in host else -1,
            "tls_port": -1,
            "server_type": "overlord",
            "tier": None,
            "curr_size": 0,
            "max_size": 0,
            "is_leader": 1,
            "start_time": None,
        }
    ]
    for w in workers:
        info = w.get("worker") or {}
        name = str(info.get("host", ""))
        rows.append(
            {
                "server": name,
                "host": name.rsplit(":", 1)[0],
                "plaintext_port": int(name.rsplit(":", 1)[1]) if name.rsplit(":", 1)[-1].isdigit() else -1,
                "tls_port": -1,
                "server_type": "middle_manager",
                "tier": None,
                "curr_size": 0,
                "max_size": 0,
                "is_leader": None,
                "start_time": None,
            }
        )
    fields = [
        ("server", S),
        ("host", S),
        ("plaintext_port", L),
        ("tls_port", L),
        ("server_type", S),
        ("tier", S),
        ("curr_size", L),
        ("max_size", L),
        ("is_leader", L),
        ("start_time", S),
    ]
    return _table(rows, fields)


async def tables_for(
    plan: Translated,
    snapshot: Snapshot,
    catalog: SegmentCatalog,
    columns: dict[str, list[tuple[str, str]]],
) -> dict[str, pa.Table]:
    """The metadata tables ``plan`` reads, by their engine names (``druid_sys.tasks``...)."""
    out: dict[str, pa.Table] = {}
    for name in plan.info_tables:
        out[f"{INFO_SCHEMA}.{name.lower()}"] = _info(name, snapshot, columns)
    for name in plan.system_tables:
        if name == "segments":
            table = _segments(snapshot)
        elif name == "tasks":
            table = _tasks(await catalog.system("tasks"))
        elif name == "supervisors":
            table = _supervisors(await catalog.system("supervisors"))
        else:
            table = _servers(await catalog.system("workers"), catalog.client.base_url)
        out[f"{SYS_SCHEMA}.{name}"] = table
    return out
