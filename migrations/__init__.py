"""Alembic migrations of the metadata store.

Run them with ``overlord migrate`` (``overlord.metadata.engine.migrate(url)``), or with the
Alembic CLI: ``alembic -c migrations/alembic.ini -x url=sqlite:///var/metadata.db upgrade head``.
"""
