"""The witness's cosignatures of the audit log's tree heads (issue 12 item 10).

Appended by the same append-only role as the log itself on PostgreSQL (LOG-2).

Revision ID: 0011
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

WRITER = "meterguard_audit_writer"


def upgrade() -> None:
    """Create ``audit_cosignatures`` (one per head the witness cosigned)."""
    op.create_table(
        "audit_cosignatures",
        sa.Column("size", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("root", sa.LargeBinary(32), nullable=False),
        sa.Column("at", sa.BigInteger, nullable=False),
        sa.Column("signature", sa.LargeBinary(96), nullable=False),
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"REVOKE ALL ON audit_cosignatures FROM {WRITER}")
        op.execute(f"GRANT SELECT, INSERT ON audit_cosignatures TO {WRITER}")


def downgrade() -> None:
    """Drop it."""
    op.drop_table("audit_cosignatures")
