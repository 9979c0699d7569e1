"""Initial metadata store schema: supervisors, datasource_metadata, segments, tasks.

Revision ID: 0001
Revises:
Create Date: 2026-11-22
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen copy of the types at this revision (never import the live models in a migration).
_AUTO_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "supervisors",
        sa.Column("id", _AUTO_ID, primary_key=True, autoincrement=True),
        sa.Column("spec_id", sa.String(255), nullable=False),
        sa.Column("created_date", sa.String(64), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_supervisors"),
    )
    op.create_index("ix_supervisors_spec_id", "supervisors", ["spec_id"])

    op.create_table(
        "datasource_metadata",
        sa.Column("datasource", sa.String(255), nullable=False),
        sa.Column("stream", sa.String(255), nullable=False),
        sa.Column("offsets", sa.Text(), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column("updated_date", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("datasource", name="pk_datasource_metadata"),
    )

    op.create_table(
        "segments",
        sa.Column("id", sa.String(1024), nullable=False),
        sa.Column("datasource", sa.String(255), nullable=False),
        sa.Column("start", sa.String(64), nullable=False),
        sa.Column("end", sa.String(64), nullable=False),
        sa.Column("start_ms", sa.BigInteger(), nullable=False),
        sa.Column("end_ms", sa.BigInteger(), nullable=False),
        sa.Column("version", sa.String(64), nullable=False),
        sa.Column("partition_num", sa.Integer(), nullable=False),
        sa.Column("used", sa.Boolean(), nullable=False),
        sa.Column("sequence_name", sa.String(255), nullable=False),
        sa.Column("sequence_shard", sa.Integer(), nullable=False),
        sa.Column("num_rows", sa.BigInteger(), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("created_date", sa.String(64), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_segments"),
        sa.UniqueConstraint(
            "datasource",
            "start",
            "end",
            "version",
            "partition_num",
            name="uq_segments_datasource_start_end_version_partition_num",
        ),
        sa.UniqueConstraint(
            "datasource",
            "sequence_name",
            "sequence_shard",
            name="uq_segments_datasource_sequence_name_sequence_shard",
        ),
    )
    op.create_index("ix_segments_datasource", "segments", ["datasource"])
    op.create_index("ix_segments_sequence_name", "segments", ["sequence_name"])
    op.create_index("ix_segments_datasource_used_start_ms", "segments", ["datasource", "used", "start_ms"])

    op.create_table(
        "tasks",
        sa.Column("id", sa.String(255), nullable=False),
        sa.Column("datasource", sa.String(255), nullable=False),
        sa.Column("type", sa.String(64), nullable=False),
        sa.Column("group_id", sa.Integer(), nullable=True),
        sa.Column("supervisor_id", sa.String(255), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("runner_status", sa.String(16), nullable=False),
        sa.Column("worker", sa.String(255), nullable=True),
        sa.Column("host", sa.String(255), nullable=True),
        sa.Column("port", sa.Integer(), nullable=True),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("report", sa.Text(), nullable=True),
        sa.Column("created_date", sa.String(64), nullable=False),
        sa.Column("updated_date", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_tasks"),
    )
    op.create_index("ix_tasks_datasource", "tasks", ["datasource"])
    op.create_index("ix_tasks_status", "tasks", ["status"])
    op.create_index("ix_tasks_created_date", "tasks", ["created_date"])


def downgrade() -> None:
    op.drop_index("ix_tasks_created_date", table_name="tasks")
    op.drop_index("ix_tasks_status", table_name="tasks")
    op.drop_index("ix_tasks_datasource", table_name="tasks")
    op.drop_table("tasks")
    op.drop_index("ix_segments_datasource_used_start_ms", table_name="segments")
    op.drop_index("ix_segments_sequence_name", table_name="segments")
    op.drop_index("ix_segments_datasource", table_name="segments")
    op.drop_table("segments")
    op.drop_table("datasource_metadata")
    op.drop_index("ix_supervisors_spec_id", table_name="supervisors")
    op.drop_table("supervisors")
