"""Errors of the metadata store, in the project's one exception tree."""

from __future__ import annotations

from supervisor.errors import Unavailable


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
