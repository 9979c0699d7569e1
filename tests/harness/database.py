"""Databases for tests: a fresh PostgreSQL database per test, and an outage injected into an engine."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import OperationalError


@contextlib.contextmanager
def fresh_database(server_url: str, prefix: str = "t") -> Iterator[str]:
    """The URL of a new, empty database on the PostgreSQL server of ``server_url``, dropped afterwards
    (even with connections left open)."""
    name = f"{prefix}_{uuid.uuid4().hex}"
    admin = sa.create_engine(server_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        try:
            yield make_url(server_url).set(database=name).render_as_string(hide_password=False)
        finally:
            with admin.connect() as conn:
                conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()


@contextlib.contextmanager
def database_down(engine: Engine) -> Iterator[None]:
    """Every statement on ``engine`` fails as on a database whose server went away."""

    def refuse(*_args: object) -> None:
        raise OperationalError("SELECT 1", {}, Exception("server closed the connection unexpectedly\nmore"))

    event.listen(engine, "before_cursor_execute", refuse)
    try:
        yield
    finally:
        event.remove(engine, "before_cursor_execute", refuse)
