"""Engines for the metadata store, and its Alembic migrations.

SQLite: WAL journal, a busy timeout, and every transaction opened with ``BEGIN IMMEDIATE`` so
writers serialize on the database lock (pysqlite's own transaction handling is switched off;
the SQLAlchemy "serializable isolation / savepoints" recipe). Read-only work may ask for
``BEGIN DEFERRED`` with the ``sqlite_begin`` execution option (see ``READ_ONLY``), so readers
never wait for a writer under WAL.

PostgreSQL: a pre-pinged connection pool; writers serialize on ``SELECT ... FOR UPDATE``.

Migrations run only when asked (``migrate``, the ``overlord migrate`` command); opening a
``MetadataStore`` merely checks the schema is at head.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, event
from sqlalchemy.engine import URL, Connection, Engine, make_url
from sqlalchemy.pool import StaticPool

from supervisor.errors import InvalidInput

log = logging.getLogger(__name__)

SQLITE_BUSY_TIMEOUT_MS = 30_000
POSTGRES_POOL_SIZE = 5
POSTGRES_MAX_OVERFLOW = 10

#: Execution option naming the SQLite ``BEGIN`` flavour of a connection's transactions.
SQLITE_BEGIN_OPTION = "sqlite_begin"
#: Execution options for read-only work: a deferred transaction on SQLite (no-op elsewhere).
READ_ONLY: dict[str, Any] = {SQLITE_BEGIN_OPTION: "DEFERRED"}
_BEGIN_MODES = frozenset({"DEFERRED", "IMMEDIATE", "EXCLUSIVE"})


def make_engine(url: str) -> Engine:
    """An engine for a ``sqlite:///path`` or ``postgresql+psycopg2://...`` URL."""
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        return _sqlite_engine(parsed)
    if backend == "postgresql":
        return _postgres_engine(parsed)
    raise InvalidInput(
        f"unsupported metadata store URL {parsed.render_as_string(hide_password=True)!r}: "
        "use sqlite:///path/to/file.db or postgresql+psycopg2://user:password@host:port/database"
    )


def _sqlite_engine(url: URL) -> Engine:
    database = url.database or ""
    in_memory = database in ("", ":memory:") or url.query.get("mode") == "memory"
    if not in_memory and not database.startswith("file:"):
        Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    options: dict[str, Any] = {
        "connect_args": {"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000},
    }
    if in_memory:
        # One shared connection, or every checkout would see its own empty database.
        options["poolclass"] = StaticPool
    engine = create_engine(url, **options)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Stop pysqlite from issuing BEGIN itself (and from committing before DDL); the
        # "begin" listener below opens every transaction explicitly.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            if not in_memory:
                cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
            cursor.execute("PRAGMA foreign_keys=ON")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        mode = str(connection.get_execution_options().get(SQLITE_BEGIN_OPTION, "IMMEDIATE")).upper()
        if mode not in _BEGIN_MODES:
            raise ValueError(f"{SQLITE_BEGIN_OPTION} must be one of {sorted(_BEGIN_MODES)}, not {mode!r}")
        connection.exec_driver_sql(f"BEGIN {mode}")

    return engine


def _postgres_engine(url: URL) -> Engine:
    connect_args: dict[str, Any] = {}
    if url.get_driver_name() == "psycopg2":
        connect_args = {"connect_timeout": 10, "application_name": "overlord"}
    return create_engine(
        url,
        pool_pre_ping=True,
        pool_size=POSTGRES_POOL_SIZE,
        max_overflow=POSTGRES_MAX_OVERFLOW,
        pool_timeout=30,
        pool_recycle=1800,
        connect_args=connect_args,
    )


# --------------------------------------------------------------------------- migrations


def migrations_dir() -> Path:
    """The top-level ``migrations`` package (works from a checkout and when installed)."""
    import migrations

    return Path(migrations.__file__).resolve().parent


def alembic_config() -> Config:
    """An Alembic config pointing at ``migrations/`` with no ini file and no logging setup."""
    config = Config()
    config.set_main_option("script_location", str(migrations_dir()).replace("%", "%%"))
    return config


def head_revision() -> str:
    """The revision the code expects (the single head of ``migrations/versions``)."""
    heads = ScriptDirectory.from_config(alembic_config()).get_heads()
    if len(heads) != 1:
        raise RuntimeError(f"migrations must have exactly one head, found {sorted(heads)}")
    return heads[0]


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at (``None`` if it was never migrated)."""
    with engine.connect().execution_options(**READ_ONLY) as connection:
        heads = MigrationContext.configure(connection).get_current_heads()
    if not heads:
        return None
    return ",".join(sorted(heads))


def migrate(url: str, revision: str = "head") -> None:
    """Run Alembic ``upgrade`` to ``revision`` (default: head) on the database at ``url``."""
    _run_alembic(url, "upgrade", revision)


def downgrade(url: str, revision: str = "base") -> None:
    """Run Alembic ``downgrade`` to ``revision`` (default: base, dropping every table)."""
    _run_alembic(url, "downgrade", revision)


def _run_alembic(url: str, action: str, revision: str) -> None:
    engine = make_engine(url)
    safe_url = make_url(url).render_as_string(hide_password=True)
    try:
        # One transaction around the whole run: the migration commits (or rolls back) as a unit.
        with engine.begin() as connection:
            config = alembic_config()
            config.attributes["connection"] = connection
            log.info("metadata store %s to %s: %s", action, revision, safe_url)
            if action == "upgrade":
                command.upgrade(config, revision)
            else:
                command.downgrade(config, revision)
    finally:
        engine.dispose()
