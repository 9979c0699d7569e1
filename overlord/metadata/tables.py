"""The metadata store's tables (SQLAlchemy 2.0 typed declarative models).

The schema itself is created by the Alembic migrations in ``migrations/versions``; these
models must stay in step with them (``tests/unit/test_metadata_store.py`` checks it).

Dates are stored as Druid-style ISO strings in UTC with milliseconds
(``2026-11-22T00:00:00.000Z``), which sort lexicographically. JSON documents are stored as text.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Boolean, Index, Integer, MetaData, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# BIGINT autoincrement on PostgreSQL; INTEGER PRIMARY KEY (the rowid alias) on SQLite.
_AutoId = BigInteger().with_variant(Integer(), "sqlite")


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class SupervisorEntry(Base):
    """Append-only history of supervisor specs (Druid's ``druid_supervisors``).

    The newest row of a ``spec_id`` is its current spec; terminating a supervisor appends a
    tombstone (``{"type": "NoopSupervisorSpec", ...}``).
    """

    __tablename__ = "supervisors"

    id: Mapped[int] = mapped_column(_AutoId, primary_key=True, autoincrement=True)
    spec_id: Mapped[str] = mapped_column(String(255), index=True)
    created_date: Mapped[str] = mapped_column(String(64))
    payload: Mapped[str] = mapped_column(Text)


class DatasourceMetadataEntry(Base):
    """Committed stream offsets per datasource (Druid's ``druid_dataSource``).

    ``offsets`` is JSON ``{"partition": next_offset}``; ``version`` is the compare-and-set counter,
    bumped by every write.
    """

    __tablename__ = "datasource_metadata"

    datasource: Mapped[str] = mapped_column(String(255), primary_key=True)
    stream: Mapped[str] = mapped_column(String(255))
    offsets: Mapped[str] = mapped_column(Text)
    version: Mapped[int] = mapped_column(BigInteger)
    updated_date: Mapped[str] = mapped_column(String(64))


class SegmentEntry(Base):
    """Published segments (Druid's ``druid_segments``) plus the sequence that published them."""

    __tablename__ = "segments"
    __table_args__ = (
        UniqueConstraint("datasource", "start", "end", "version", "partition_num"),
        UniqueConstraint("datasource", "sequence_name", "sequence_shard"),
        Index("ix_segments_datasource_used_start_ms", "datasource", "used", "start_ms"),
    )

    id: Mapped[str] = mapped_column(String(1024), primary_key=True)
    datasource: Mapped[str] = mapped_column(String(255), index=True)
    start: Mapped[str] = mapped_column(String(64))
    end: Mapped[str] = mapped_column(String(64))
    start_ms: Mapped[int] = mapped_column(BigInteger)
    end_ms: Mapped[int] = mapped_column(BigInteger)
    version: Mapped[str] = mapped_column(String(64))
    partition_num: Mapped[int] = mapped_column(Integer)
    used: Mapped[bool] = mapped_column(Boolean)
    sequence_name: Mapped[str] = mapped_column(String(255), index=True)
    sequence_shard: Mapped[int] = mapped_column(Integer)
    num_rows: Mapped[int] = mapped_column(BigInteger)
    size: Mapped[int] = mapped_column(BigInteger)
    created_date: Mapped[str] = mapped_column(String(64))
    payload: Mapped[str] = mapped_column(Text)


class TaskEntry(Base):
    """Indexing tasks and their state (Druid's ``druid_tasks``)."""

    __tablename__ = "tasks"

    id: Mapped[str] = mapped_column(String(255), primary_key=True)
    datasource: Mapped[str] = mapped_column(String(255), index=True)
    type: Mapped[str] = mapped_column(String(64))
    group_id: Mapped[int | None] = mapped_column(Integer)
    supervisor_id: Mapped[str | None] = mapped_column(String(255))
    status: Mapped[str] = mapped_column(String(16), index=True)
    runner_status: Mapped[str] = mapped_column(String(16))
    worker: Mapped[str | None] = mapped_column(String(255))
    host: Mapped[str | None] = mapped_column(String(255))
    port: Mapped[int | None] = mapped_column(Integer)
    payload: Mapped[str] = mapped_column(Text)
    error: Mapped[str | None] = mapped_column(Text)
    report: Mapped[str | None] = mapped_column(Text)
    created_date: Mapped[str] = mapped_column(String(64), index=True)
    updated_date: Mapped[str] = mapped_column(String(64))


metadata = Base.metadata
