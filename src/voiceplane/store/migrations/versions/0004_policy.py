"""Pre-dial policy: blocklists, dialing permissions per account and per number, and
whether a call is promotional.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27

``blocklist`` holds each account's blocklisted numbers (E.164). ``account_policies`` and
``number_policies`` hold the dialing permissions of an account and of one of its numbers
(allowed countries, international dialing, allowed number types and networks; a NULL list
means "any"), and, per account, whether its calls are promotional by default, whether its
blocklist also applies to outgoing calls, and its DND preference category.
``calls.promotional`` is the per-call choice (NULL: the account's default). Plain types
only (JSON lists), so it runs on SQLite and PostgreSQL.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _flag(name: str, default: str) -> sa.Column[object]:
    return sa.Column(name, sa.Boolean(), nullable=False, server_default=sa.text(default))


def _rules() -> list[sa.Column[object]]:
    """The dialing-permission columns both policy tables have."""
    return [
        sa.Column("countries", sa.JSON(), nullable=True),
        _flag("international", "true"),
        sa.Column("number_types", sa.JSON(), nullable=True),
        sa.Column("networks", sa.JSON(), nullable=True),
        sa.Column("blocked_networks", sa.JSON(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    ]


def upgrade() -> None:
    op.create_table(
        "blocklist",
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("e164", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("fk_blocklist_account_id_accounts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("account_id", "e164", name=op.f("pk_blocklist")),
    )
    op.create_table(
        "account_policies",
        sa.Column("account_id", sa.Integer(), nullable=False),
        *_rules(),
        _flag("promotional", "false"),
        _flag("block_outgoing", "false"),
        sa.Column("dnd_category", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("fk_account_policies_account_id_accounts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("account_id", name=op.f("pk_account_policies")),
    )
    op.create_table(
        "number_policies",
        sa.Column("number_id", sa.Integer(), nullable=False),
        *_rules(),
        sa.ForeignKeyConstraint(
            ["number_id"],
            ["numbers.id"],
            name=op.f("fk_number_policies_number_id_numbers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("number_id", name=op.f("pk_number_policies")),
    )
    with op.batch_alter_table("calls") as batch:
        batch.add_column(sa.Column("promotional", sa.Boolean(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("calls") as batch:
        batch.drop_column("promotional")
    op.drop_table("number_policies")
    op.drop_table("account_policies")
    op.drop_table("blocklist")
