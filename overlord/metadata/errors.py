"""Errors of the metadata store, in the project's one exception tree."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy.exc import DBAPIError, DisconnectionError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from supervisor.errors import MetadataStoreUnavailable, Unavailable

__all__ = ["MetadataStoreUnavailable", "SchemaNotMigrated", "outage", "unavailable_on_outage"]


class SchemaNotMigrated(Unavailable):
    """The database schema is not at the revision this code needs.

    Migrations never run as a side effect of opening the store: the operator runs
    ``overlord migrate`` (``overlord.metadata.engine.migrate``) explicitly.
    """

    retriable = False

    def __init__(self, current: str, expected: str) -> None:
        super().__init__(
            f"metadata store is not migrated: run `overlord migrate` "
            f"(database schema revision: {current}; this code needs: {expected})"
        )
        self.current = current
        self.expected = expected


def outage(error: BaseException) -> MetadataStoreUnavailable | None:
    """``MetadataStoreUnavailable`` for an error that says the database cannot be reached now.

    That is: the pool gave no connection in time (``sqlalchemy.exc.TimeoutError``), a connection
    was lost (any ``DBAPIError`` SQLAlchemy saw as a disconnect, ``DisconnectionError``), or the
    driver failed at the connection or server level (``OperationalError``, ``InterfaceError``:
    connection refused, server shutting down, database locked). Anything else (a constraint
    violation, a programming error) is not an outage: None.
    """
    if isinstance(error, PoolTimeoutError):
        detail = str(error)
    elif isinstance(error, DBAPIError) and (
        error.connection_invalidated or isinstance(error, OperationalError | InterfaceError)
    ):
        detail = str(error.orig)
    elif isinstance(error, DisconnectionError):
        detail = str(error)
    else:
        return None
    first_line = next((line.strip() for line in detail.splitlines() if line.strip()), "")
    return MetadataStoreUnavailable(
        f"metadata store unavailable, retry later: {type(error).__name__}: {first_line}".rstrip(": ")
    )


@contextmanager
def unavailable_on_outage() -> Iterator[None]:
    """Raise ``MetadataStoreUnavailable`` (chained to the cause) for an outage error in the block."""
    try:
        yield
    except (DBAPIError, DisconnectionError, PoolTimeoutError) as error:
        unavailable = outage(error)
        if unavailable is None:
            raise
        raise unavailable from error
