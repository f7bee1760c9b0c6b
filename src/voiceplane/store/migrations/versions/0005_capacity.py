"""Capacity: an account's channels and call rate, a call's queue time.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-27

``accounts.channels`` is how many channels the account's calls may hold at once and
``accounts.max_cps`` how many new calls a second it may start (NULL: unlimited; a bridge
number's own limit is ``numbers.channels``, there since 0001). ``calls.queue_timeout`` is how
many seconds a call may wait for a free channel before it ends MAX-USE (NULL: the engine's
default).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("accounts") as batch:
        batch.add_column(sa.Column("channels", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("max_cps", sa.Float(), nullable=True))
    with op.batch_alter_table("calls") as batch:
        batch.add_column(sa.Column("queue_timeout", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("calls") as batch:
        batch.drop_column("queue_timeout")
    with op.batch_alter_table("accounts") as batch:
        batch.drop_column("max_cps")
        batch.drop_column("channels")
