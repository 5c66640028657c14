"""Initial schema: meters, readings (time-partitioned on PostgreSQL), counters, alarms, events.

Revision ID: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create the schema."""
    op.create_table(
        "meters",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("serial", sa.String(16), nullable=False, unique=True),
        sa.Column("system_title", sa.LargeBinary(8), nullable=False, unique=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
    )
    if op.get_bind().dialect.name == "postgresql":
        # Range-partitioned by interval start; a default partition takes any range not yet created.
        op.execute(
            """
            CREATE TABLE readings (
                meter_id VARCHAR(32) NOT NULL REFERENCES meters (id),
                interval_start BIGINT NOT NULL,
                import_wh BIGINT NOT NULL,
                export_wh BIGINT NOT NULL,
                received_at BIGINT NOT NULL,
                PRIMARY KEY (meter_id, interval_start)
            ) PARTITION BY RANGE (interval_start)
            """
        )
        op.execute("CREATE TABLE readings_default PARTITION OF readings DEFAULT")
    else:
        op.create_table(
            "readings",
            sa.Column("meter_id", sa.String(32), sa.ForeignKey("meters.id"), primary_key=True),
            sa.Column("interval_start", sa.BigInteger, primary_key=True),
            sa.Column("import_wh", sa.BigInteger, nullable=False),
            sa.Column("export_wh", sa.BigInteger, nullable=False),
            sa.Column("received_at", sa.BigInteger, nullable=False),
        )
    op.create_table(
        "counters",
        sa.Column("meter_id", sa.String(32), sa.ForeignKey("meters.id"), primary_key=True),
        sa.Column("key_kind", sa.Integer, primary_key=True),
        sa.Column("last_ic", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "alarms",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("meter_id", sa.String(32), sa.ForeignKey("meters.id"), nullable=False),
        sa.Column("sequence", sa.BigInteger, nullable=False),
        sa.Column("code", sa.Integer, nullable=False),
        sa.Column("raised_at", sa.BigInteger, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.UniqueConstraint("meter_id", "sequence"),
    )
    op.create_table(
        "security_events",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("at", sa.BigInteger, nullable=False),
        sa.Column("meter_id", sa.String(32), nullable=True),
        sa.Column("event", sa.String(64), nullable=False),
        sa.Column("detail", sa.Text, nullable=False),
    )
    op.create_index("security_events_at", "security_events", ["at"])
    op.create_table(
        "quarantine",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("at", sa.BigInteger, nullable=False),
        sa.Column("topic", sa.String(128), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("payload", sa.LargeBinary, nullable=False),
    )


def downgrade() -> None:
    """Drop the schema."""
    for table in ("quarantine", "security_events", "alarms", "counters", "readings", "meters"):
        op.drop_table(table)
