"""The append-only audit log and its signed tree heads (LOG-1…3).

On PostgreSQL a role ``meterguard_audit_writer`` may only SELECT and INSERT on both tables
(LOG-2: the role that writes the log cannot update or delete it); the head-end writes the
log under that role (``SET LOCAL ROLE``).

Revision ID: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

WRITER = "meterguard_audit_writer"


def upgrade() -> None:
    """Create the audit tables (and the append-only role on PostgreSQL)."""
    op.create_table(
        "audit_entries",
        sa.Column("seq", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("at", sa.BigInteger, nullable=False),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("target", sa.String(128), nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("result", sa.String(32), nullable=False),
        sa.Column("request_id", sa.String(64), nullable=False),
        sa.Column("detail", sa.Text, nullable=False),
        sa.Column("leaf", sa.LargeBinary(32), nullable=False),
    )
    op.create_table(
        "audit_tree_heads",
        sa.Column("size", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("root", sa.LargeBinary(32), nullable=False),
        sa.Column("at", sa.BigInteger, nullable=False),
        sa.Column("signature", sa.LargeBinary(96), nullable=False),
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            f"DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{WRITER}')"
            f" THEN CREATE ROLE {WRITER} NOLOGIN; END IF; END $$"
        )
        for table in ("audit_entries", "audit_tree_heads"):
            op.execute(f"REVOKE ALL ON {table} FROM {WRITER}")
            op.execute(f"GRANT SELECT, INSERT ON {table} TO {WRITER}")
        op.execute(f"GRANT SELECT ON meters TO {WRITER}")


def downgrade() -> None:
    """Drop the audit tables."""
    op.drop_table("audit_tree_heads")
    op.drop_table("audit_entries")
