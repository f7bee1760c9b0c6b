"""The call command: target, retries, cancel requests; several attempts per leg.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27

A call now keeps what the engine needs to carry it out after a restart: the ``target`` to
play, the retry budget (``retry``, ``retry_interval``, ``attempts``) and a cancel request
from the API (``cancel_requested_at``). A leg number (1 = the first party, 2 = the second)
may now be tried more than once: parallel ringing (``a^b``) and retries add rows, ordered
by ``seq``, which replaces ``(call_id, leg)`` as the unique key.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("calls") as batch:
        batch.add_column(sa.Column("target", sa.Text(), nullable=True))
        batch.add_column(sa.Column("retry", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(
            sa.Column("retry_interval", sa.Integer(), nullable=False, server_default="60")
        )
        batch.add_column(sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(
            sa.Column("cancel_requested_at", sa.DateTime(timezone=True), nullable=True)
        )
    with op.batch_alter_table("legs") as batch:
        batch.add_column(sa.Column("seq", sa.Integer(), nullable=False, server_default="0"))
        batch.drop_constraint("uq_legs_call_id_leg", type_="unique")
    # Existing rows had one row per leg number: their order is their leg number.
    op.execute("UPDATE legs SET seq = leg")
    with op.batch_alter_table("legs") as batch:
        batch.create_unique_constraint("uq_legs_call_id_seq", ["call_id", "seq"])


def downgrade() -> None:
    with op.batch_alter_table("legs") as batch:
        batch.drop_constraint("uq_legs_call_id_seq", type_="unique")
        batch.create_unique_constraint("uq_legs_call_id_leg", ["call_id", "leg"])
        batch.drop_column("seq")
    with op.batch_alter_table("calls") as batch:
        batch.drop_column("cancel_requested_at")
        batch.drop_column("attempts")
        batch.drop_column("retry_interval")
        batch.drop_column("retry")
        batch.drop_column("target")
