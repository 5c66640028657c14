"""Second-factor attempts counted per account and per pending session (issue 12 item 4, API-7).

Revision ID: 0012
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

USER_COLUMNS = ("mfa_window_start", "mfa_last_failure", "mfa_locked_until")


def upgrade() -> None:
    """Add the failure counters, the account's window and lock, and the session's count."""
    with op.batch_alter_table("users") as t:
        t.add_column(sa.Column("mfa_failures", sa.Integer, nullable=False, server_default="0"))
        for name in USER_COLUMNS:
            t.add_column(sa.Column(name, sa.BigInteger, nullable=True))
    with op.batch_alter_table("web_sessions") as t:
        t.add_column(sa.Column("mfa_failures", sa.Integer, nullable=False, server_default="0"))


def downgrade() -> None:
    """Drop them."""
    with op.batch_alter_table("web_sessions") as t:
        t.drop_column("mfa_failures")
    with op.batch_alter_table("users") as t:
        for name in ("mfa_failures", *USER_COLUMNS):
            t.drop_column(name)
