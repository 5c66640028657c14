"""WebAuthn credentials and pending ceremonies (API-5: the phishing-resistant factor).

Revision ID: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create ``webauthn_credentials`` and ``webauthn_challenges``."""
    op.create_table(
        "webauthn_credentials",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id"), nullable=False),
        sa.Column("credential_id", sa.LargeBinary(1024), nullable=False, unique=True),
        sa.Column("public_key", sa.LargeBinary, nullable=False),
        sa.Column("sign_count", sa.BigInteger, nullable=False),
        sa.Column("label", sa.String(64), nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "webauthn_challenges",
        sa.Column("token_hash", sa.LargeBinary(32), primary_key=True),
        sa.Column("purpose", sa.String(16), primary_key=True),
        sa.Column("challenge", sa.LargeBinary(64), nullable=False),
        sa.Column("expires_at", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    """Drop them."""
    op.drop_table("webauthn_challenges")
    op.drop_table("webauthn_credentials")
