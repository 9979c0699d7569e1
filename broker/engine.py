"""DuckDB over one :class:`~broker.catalog.Snapshot`: locked-down databases, kept warm per view set.

A query runs on a database holding the views of the datasources it names (``druid."ds"``: the
segments their timeline shows, :mod:`broker.timeline`; ``__time`` as a TIMESTAMP over the segments'
int64 milliseconds; then the in-flight rows of its running task groups, Arrow tables registered for
the query, so no file is written) and Druid's time functions (:mod:`broker.udfs`); once those are
set up, file access is narrowed to the segment files the views read (``allowed_paths``), external
access turned off and the configuration locked, so no function or statement can read or write any
other file or URL (``read_csv``, ``COPY ... TO``, ``ATTACH``,
``INSTALL``, ``LOAD``, ``SET``...). The INFORMATION_SCHEMA and ``sys`` tables a query names are
copied in for that query only (in-memory tables: no file access) and dropped after it.

Opening a DuckDB database costs about 30 ms, as much as a ``GROUP BY`` over a million rows, so a
database is not thrown away after its query: :class:`DatabasePool` keeps a few idle ones per *view
set* (each named datasource with its view and the exact list of segment files it reads). A publish
changes the view, so the next query gets a new view set and a new database; the old ones age out. A
database serves one query at a time (each has its own ``memory_limit`` and ``threads``, so the limits
stay per query), and one whose query failed, timed out or was interrupted is closed, never reused.
:meth:`Engine.run` interrupts a query at its deadline.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import decimal
import logging
import threading
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field, replace
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
    # Druid's response context of the snapshot read (partial: uncoveredIntervals)
    context: dict[str, Any] = field(default_factory=dict, compare=False)

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


def _inflight_name(ds: str, index: int) -> str:
    return f"_inflight_{ds}_{index}"


def _inflight_tables(snapshot: Snapshot, datasources: Iterable[str]) -> dict[str, pa.Table]:
    """The running task groups' in-flight rows of ``datasources``, by the name their view reads."""
    return {
        _inflight_name(ds, index): source.table
        for ds in datasources
        for index, source in enumerate(snapshot.inflight.get(ds, ()))
    }


def _datasource_sql(snapshot: Snapshot, ds: str) -> tuple[str, list[str]] | None:
    """The view of ``ds``: its segments as the timeline shows them, then each running task group's
    in-flight rows (Arrow tables registered on the connection under :func:`_inflight_name`: no file
    is written; they have the segments' columns, so the union by name reads as one table); and the
    segment files it reads. None when it has no rows anywhere."""
    view = _timeline_sql(snapshot.segments.get(ds, ()))
    parts = [view[0]] if view is not None else []
    for index, source in enumerate(snapshot.inflight.get(ds, ())):
        name = _quote(_inflight_name(ds, index))
        if "__time" in source.table.column_names:
            parts.append(f'SELECT * REPLACE (epoch_ms("__time") AS "__time") FROM {name}')
        else:  # only the columns the query reads were asked of the task (catalog.snapshot)
            parts.append(f"SELECT * FROM {name}")
    if not parts:
        return None
    return " UNION ALL BY NAME ".join(parts), view[1] if view is not None else []


def _register(con: duckdb.DuckDBPyConnection, tables: dict[str, pa.Table]) -> None:
    for name, table in tables.items():
        con.register(name, table)


def _unregister(con: duckdb.DuckDBPyConnection, tables: dict[str, pa.Table]) -> None:
    for name in tables:
        con.unregister(name)


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


# A view set: each datasource a query names, with its view (the timeline's visible segments, then the
# in-flight rows of its running task groups, by name) and the segment files that view reads.
ViewSet = tuple[tuple[str, str, tuple[str, ...]], ...]

# Idle databases kept per view set, and view sets kept (least recently used dropped first).
POOL_IDLE_PER_VIEW_SET = 2
POOL_VIEW_SETS = 8


def view_set(snapshot: Snapshot, datasources: frozenset[str]) -> ViewSet:
    out = []
    for ds in sorted(datasources):
        view = _datasource_sql(snapshot, ds)
        out.append((ds, "", ()) if view is None else (ds, view[0], tuple(view[1])))
    return tuple(out)


class DatabasePool:
    """Idle locked-down databases by view set; :meth:`take` hands one out for one query."""

    def __init__(self, per_view_set: int = POOL_IDLE_PER_VIEW_SET, view_sets: int = POOL_VIEW_SETS) -> None:
        self.per_view_set = per_view_set
        self.view_sets = view_sets
        self._idle: OrderedDict[ViewSet, list[duckdb.DuckDBPyConnection]] = OrderedDict()
        self._lock = threading.Lock()

    def take(self, key: ViewSet) -> duckdb.DuckDBPyConnection | None:
        with self._lock:
            idle = self._idle.get(key)
            if not idle:
                return None
            self._idle.move_to_end(key)
            return idle.pop()

    def give(self, key: ViewSet, con: duckdb.DuckDBPyConnection) -> None:
        """Keep ``con`` (its query succeeded and its per-query tables are dropped) for the next query."""
        closing: list[duckdb.DuckDBPyConnection] = []
        with self._lock:
            idle = self._idle.setdefault(key, [])
            self._idle.move_to_end(key)
            if len(idle) < self.per_view_set:
                idle.append(con)
            else:
                closing.append(con)
            while len(self._idle) > self.view_sets:
                _, evicted = self._idle.popitem(last=False)
                closing.extend(evicted)
        for c in closing:
            c.close()

    def idle(self) -> int:
        with self._lock:
            return sum(len(v) for v in self._idle.values())

    def close(self) -> None:
        with self._lock:
            closing = [c for idle in self._idle.values() for c in idle]
            self._idle.clear()
        for c in closing:
            c.close()


class Engine:
    def __init__(
        self, limits: Limits, cache: SegmentCache | None = None, pool: DatabasePool | None = None
    ) -> None:
        self.limits = limits
        self.cache = cache
        self.pool = pool if pool is not None else DatabasePool()

    def _local(self, snapshot: Snapshot, datasources: Iterable[str]) -> AbstractContextManager[None]:
        """The segments the timeline shows of ``datasources`` on local disk (S3 ones fetched into
        the segment cache; overshadowed ones are never fetched) and kept there while the block runs."""
        if self.cache is None:
            return nullcontext()
        return self.cache.hold(
            v.segment for ds in datasources for v in timeline.visible(snapshot.segments.get(ds, ()))
        )

    def _database(
        self, views: ViewSet, inflight: dict[str, pa.Table] | None = None
    ) -> duckdb.DuckDBPyConnection:
        """A new database with the views of ``views``, then locked down (``inflight``: the Arrow
        tables the views read, registered while they are made)."""
        con = duckdb.connect(
            ":memory:",
            config={
                "memory_limit": self.limits.memory_limit,
                "threads": self.limits.threads,
                "autoinstall_known_extensions": False,
                "autoload_known_extensions": False,
            },
        )
        try:
            con.execute("SET TimeZone = 'UTC'")
            udfs.register(con)
            con.execute(
                f"CREATE SCHEMA {DRUID_SCHEMA}; CREATE SCHEMA {INFO_SCHEMA}; CREATE SCHEMA {SYS_SCHEMA}"
            )
            paths: list[str] = []
            _register(con, inflight or {})
            for ds, view, files in views:
                if view:
                    con.execute(f"CREATE VIEW {DRUID_SCHEMA}.{_quote(ds)} AS {view}")
                    paths.extend(files)
            if paths:
                listed = ", ".join("'" + p.replace("'", "''") + "'" for p in paths)
                con.execute(f"SET allowed_paths = [{listed}]")
            con.execute("SET enable_external_access = false")
            con.execute("SET lock_configuration = true")
        except BaseException:
            con.close()
            raise
        return con

    def _checkout(self, views: ViewSet, inflight: dict[str, pa.Table]) -> duckdb.DuckDBPyConnection:
        con = self.pool.take(views)
        return con if con is not None else self._database(views, inflight)

    @staticmethod
    def _add_tables(con: duckdb.DuckDBPyConnection, tables: dict[str, pa.Table]) -> None:
        """The query's own tables (sys, INFORMATION_SCHEMA), in memory, on the locked database."""
        for name, table in tables.items():
            con.register("_incoming", table)
            try:
                con.execute(f"CREATE TABLE {name} AS SELECT * FROM _incoming")
            finally:
                con.unregister("_incoming")

    def describe(self, snapshot: Snapshot, datasources: Sequence[str]) -> dict[str, list[tuple[str, str]]]:
        """Each datasource's columns and DuckDB types (for INFORMATION_SCHEMA.COLUMNS)."""
        out: dict[str, list[tuple[str, str]]] = {}
        con = duckdb.connect(":memory:", config={"threads": 1})
        try:
            for ds in datasources:
                view = _datasource_sql(snapshot, ds)
                if view is not None:
                    inflight = _inflight_tables(snapshot, [ds])
                    _register(con, inflight)
                    with self._local(snapshot, [ds]):
                        rows = con.execute(f"DESCRIBE {view[0]}").fetchall()
                    _unregister(con, inflight)
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

        views = view_set(snapshot, plan.datasources)
        extra = tables or {}
        inflight = _inflight_tables(snapshot, plan.datasources)
        context = snapshot.response_context()

        def work() -> Result:
            with self._local(snapshot, plan.datasources):  # the files stay while the query reads them
                result = on_database()
            return replace(result, context=context) if context else result

        def on_database() -> Result:
            con = self._checkout(views, inflight)
            reusable = False
            try:
                with lock:
                    if cancelled.is_set():
                        raise QueryTimeout("Query timed out before it started")
                    holder.append(con)
                self._add_tables(con, extra)
                _register(con, inflight)  # this query's in-flight rows, under the names the views read
                result = self._execute(con, plan.sql, params)
                _unregister(con, inflight)  # an idle database holds no rows of a task
                for name in extra:
                    con.execute(f"DROP TABLE {name}")
                with lock:  # an interrupt that came after the answer still spoils the database
                    reusable = not cancelled.is_set()
                return result
            finally:
                if reusable:
                    self.pool.give(views, con)
                else:
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
