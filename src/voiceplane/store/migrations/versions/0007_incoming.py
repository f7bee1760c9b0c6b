"""Incoming calls: a call's keys and recording, a number's callback URL.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-27

``calls`` gains ``keypress`` (the keys pressed in an incoming call's flow, "1,2") and
``recording`` (its voicemail's file); ``numbers`` gains ``callback_url``, where incoming
calls to the number are reported. Plain nullable columns: no table copy on SQLite.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("calls", sa.Column("keypress", sa.Text(), nullable=True))
    op.add_column("calls", sa.Column("recording", sa.Text(), nullable=True))
    op.add_column("numbers", sa.Column("callback_url", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("numbers") as batch:
        batch.drop_column("callback_url")
    with op.batch_alter_table("calls") as batch:
        batch.drop_column("recording")
        batch.drop_column("keypress")
