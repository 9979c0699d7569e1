"""DuckDB over one :class:`~broker.catalog.Snapshot`: a locked-down database per query.

Each query gets a fresh in-memory DuckDB: the views of the datasources it names (``druid."ds"``,
``__time`` as a TIMESTAMP over the segments' int64 milliseconds), the INFORMATION_SCHEMA and ``sys``
tables it names, Druid's time functions (:mod:`broker.udfs`); then file access is narrowed to the
segment files the views read (``allowed_paths``), external access turned off and the configuration
locked, so no function or statement can read or write any other file or URL (``read_csv``,
``COPY ... TO``, ``ATTACH``, ``INSTALL``, ``LOAD``, ``SET``...). The per-query database also bounds
the query's memory (``memory_limit``) and threads, and :meth:`Engine.run` interrupts it at its
deadline.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import decimal
import logging
import threading
from collections.abc import Iterable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any

import duckdb
import pyarrow as pa

from broker import timeline, udfs
from broker.catalog import Segment, Snapshot
from broker.errors import QueryError, QueryFailed, QueryTimeout, ResourceLimitExceeded
from broker.segment_cache import SegmentCache
from broker.sql import DRUID_SCHEMA, INFO_SCHEMA, SYS_SCHEMA, Translated
from supervisor.chronology import format_instant
from supervisor.expressions import values as tv

logger = logging.getLogger(__name__)

# DuckDB type -> (Druid's native type, Druid's SQL type): typesHeader, sqlTypesHeader, INFORMATION_SCHEMA
_TYPES = {
    "VARCHAR": ("STRING", "VARCHAR"),
    "BIGINT": ("LONG", "BIGINT"),
    "HUGEINT": ("LONG", "BIGINT"),
    "UBIGINT": ("LONG", "BIGINT"),
    "INTEGER": ("LONG", "INTEGER"),
    "SMALLINT": ("LONG", "SMALLINT"),
    "TINYINT": ("LONG", "TINYINT"),
    "UINTEGER": ("LONG", "BIGINT"),
    "DOUBLE": ("DOUBLE", "DOUBLE"),
    "FLOAT": ("FLOAT", "FLOAT"),
    "BOOLEAN": ("LONG", "BOOLEAN"),
    "TIMESTAMP": ("LONG", "TIMESTAMP"),
    "TIMESTAMP WITH TIME ZONE": ("LONG", "TIMESTAMP"),
    "DATE": ("LONG", "DATE"),
    "NULL": ("STRING", "VARCHAR"),
}


def druid_types(duck_type: str) -> tuple[str, str]:
    if duck_type in _TYPES:
        return _TYPES[duck_type]
    if duck_type.startswith("DECIMAL"):
        return ("DOUBLE", "DECIMAL")
    if duck_type.endswith("[]"):
        inner = druid_types(duck_type[:-2])
        return (f"ARRAY<{inner[0]}>", f"{inner[1]} ARRAY")
    return ("COMPLEX", "OTHER")


@dataclass(frozen=True)
class Limits:
    timeout_s: float
    memory_limit: str
    threads: int
    max_rows: int


@dataclass(frozen=True)
class Result:
    columns: tuple[str, ...]
    duck_types: tuple[str, ...]
    rows: list[tuple[Any, ...]]

    @property
    def types(self) -> list[str]:
        return [druid_types(t)[0] for t in self.duck_types]

    @property
    def sql_types(self) -> list[str]:
        return [druid_types(t)[1] for t in self.duck_types]


def json_value(value: Any, zone: dt.tzinfo | None = None) -> Any:
    """A DuckDB value as Druid's JSON writes it (timestamps as ISO-8601 in UTC, or in ``zone``)."""
    if isinstance(value, dt.datetime):
        ms = tv.from_datetime(value if value.tzinfo else value.replace(tzinfo=dt.UTC))
        return format_instant(ms) if zone is None or tv.is_utc(zone) else tv.format_time(ms, None, zone)
    if isinstance(value, dt.date):
        return json_value(dt.datetime(value.year, value.month, value.day), zone)
    if isinstance(value, decimal.Decimal):
        return float(value)
    if isinstance(value, list):
        return [json_value(v, zone) for v in value]
    return value


def _reader(paths: Sequence[str]) -> str:
    files = ", ".join("'" + p.replace("'", "''") + "'" for p in paths)
    return f"read_parquet([{files}], union_by_name = true)"


def _timeline_sql(segments: tuple[Segment, ...]) -> tuple[str, list[str]] | None:
    """The view of a datasource's segments as its timeline serves them (:mod:`broker.timeline`):
    overshadowed segments left out, a partly overshadowed one read only for the time it still
    holds; and the files it reads. None when no segment is visible."""
    shown = timeline.visible(segments)
    whole = [str(v.segment.path) for v in shown if v.whole]
    sources = [_reader(whole)] if whole else []
    for v in shown:
        if not v.whole:
            cond = " OR ".join(f'("__time" >= {a} AND "__time" < {b})' for a, b in v.ranges)
            sources.append(f"(SELECT * FROM {_reader([str(v.segment.path)])} WHERE {cond})")
    if not sources:
        return None
    source = (
        sources[0]
        if len(sources) == 1
        else "(" + " UNION ALL BY NAME ".join(f"SELECT * FROM {x}" for x in sources) + ")"
    )
    sql = f'SELECT * REPLACE (epoch_ms("__time") AS "__time") FROM {source}'
    return sql, [str(v.segment.path) for v in shown]


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class Engine:
    def __init__(self, limits: Limits, cache: SegmentCache | None = None) -> None:
        self.limits = limits
        self.cache = cache

    def _local(self, snapshot: Snapshot, datasources: Iterable[str]) -> AbstractContextManager[None]:
        """The segments the timeline shows of ``datasources`` on local disk (S3 ones fetched into
        the segment cache; overshadowed ones are never fetched) and kept there while the block runs."""
        if self.cache is None:
            return nullcontext()
        return self.cache.hold(
            v.segment for ds in datasources for v in timeline.visible(snapshot.segments.get(ds, ()))
        )

    def _database(
        self, snapshot: Snapshot, plan: Translated, tables: dict[str, pa.Table]
    ) -> duckdb.DuckDBPyConnection:
        con = duckdb.connect(
            ":memory:",
            config={
                "memory_limit": self.limits.memory_limit,
                "threads": self.limits.threads,
                "autoinstall_known_extensions": False,
                "autoload_known_extensions": False,
            },
        )
        con.execute("SET TimeZone = 'UTC'")
        udfs.register(con)
        con.execute(f"CREATE SCHEMA {DRUID_SCHEMA}; CREATE SCHEMA {INFO_SCHEMA}; CREATE SCHEMA {SYS_SCHEMA}")
        paths: list[str] = []
        for ds in sorted(plan.datasources):
            view = _timeline_sql(snapshot.segments.get(ds, ()))
            if view is not None:
                con.execute(f"CREATE VIEW {DRUID_SCHEMA}.{_quote(ds)} AS {view[0]}")
                paths.extend(view[1])
        for name, table in tables.items():
            con.register("_incoming", table)
            con.execute(f"CREATE TABLE {name} AS SELECT * FROM _incoming")
            con.unregister("_incoming")
        if paths:
            listed = ", ".join("'" + p.replace("'", "''") + "'" for p in paths)
            con.execute(f"SET allowed_paths = [{listed}]")
        con.execute("SET enable_external_access = false")
        con.execute("SET lock_configuration = true")
        return con

    def describe(self, snapshot: Snapshot, datasources: Sequence[str]) -> dict[str, list[tuple[str, str]]]:
        """Each datasource's columns and DuckDB types (for INFORMATION_SCHEMA.COLUMNS)."""
        out: dict[str, list[tuple[str, str]]] = {}
        con = duckdb.connect(":memory:", config={"threads": 1})
        try:
            for ds in datasources:
                view = _timeline_sql(snapshot.segments.get(ds, ()))
                if view is not None:
                    with self._local(snapshot, [ds]):
                        rows = con.execute(f"DESCRIBE {view[0]}").fetchall()
                    out[ds] = [(str(r[0]), str(r[1])) for r in rows]
        finally:
            con.close()
        return out

    def _execute(self, con: duckdb.DuckDBPyConnection, sql: str, params: Sequence[Any]) -> Result:
        try:
            cur = con.execute(sql, list(params)) if params else con.execute(sql)
            description = cur.description or []
            rows = cur.fetchmany(self.limits.max_rows + 1)
        except duckdb.InterruptException as e:
            raise QueryTimeout("Query was interrupted: it ran past its timeout") from e
        except duckdb.OutOfMemoryException as e:
            raise ResourceLimitExceeded(f"the query needs more memory than its limit: {e}") from e
        except (duckdb.ParserException, duckdb.BinderException, duckdb.CatalogException) as e:
            raise QueryError(_clean(e)) from e
        except (duckdb.PermissionException, duckdb.InvalidInputException, duckdb.ConversionException) as e:
            raise QueryError(_clean(e)) from e
        except (duckdb.NotImplementedException, duckdb.InternalException) as e:
            raise QueryFailed(_clean(e)) from e
        except duckdb.Error as e:
            raise QueryError(_clean(e)) from e
        if len(rows) > self.limits.max_rows:
            raise ResourceLimitExceeded(
                f"the query answers more than {self.limits.max_rows} rows; add a LIMIT"
            )
        return Result(tuple(d[0] for d in description), tuple(str(d[1]) for d in description), rows)

    async def run(
        self,
        snapshot: Snapshot,
        plan: Translated,
        params: Sequence[Any] = (),
        tables: dict[str, pa.Table] | None = None,
        timeout_s: float | None = None,
    ) -> Result:
        """The query's rows; interrupted (Druid's 504 ``Query timeout``) at its deadline."""
        timeout = self.limits.timeout_s if timeout_s is None else timeout_s
        holder: list[duckdb.DuckDBPyConnection] = []
        lock = threading.Lock()
        cancelled = threading.Event()

        def work() -> Result:
            with self._local(snapshot, plan.datasources):
                con = self._database(snapshot, plan, tables or {})
                with lock:
                    if cancelled.is_set():
                        con.close()
                        raise QueryTimeout("Query timed out before it started")
                    holder.append(con)
                try:
                    return self._execute(con, plan.sql, params)
                finally:
                    con.close()

        task = asyncio.ensure_future(asyncio.to_thread(work))
        try:
            return await asyncio.wait_for(asyncio.shield(task), timeout)
        except TimeoutError:
            with lock:
                cancelled.set()
                for con in holder:
                    con.interrupt()
            raise QueryTimeout(f"Query timed out after {int(timeout * 1000)} ms") from None


def _clean(e: Exception) -> str:
    text = str(e).strip()
    for prefix in (
        "Binder Error: ",
        "Catalog Error: ",
        "Parser Error: ",
        "Permission Error: ",
        "Invalid Input Error: ",
        "Conversion Error: ",
    ):
        if text.startswith(prefix):
            return text[len(prefix) :]
    return text
