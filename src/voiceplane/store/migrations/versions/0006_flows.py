"""IVR flows: flows and their versions, and each number's incoming-call routing.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-27

``flows`` holds an account's flows (state draft/published/paused and the live version),
``flow_versions`` every saved document as JSON text. ``numbers`` gains its routing: the
flow an incoming call runs (``flow_id``, set to NULL if the flow goes), the office hours
(schedule JSON) and the missed-call ring seconds. The new ``numbers`` columns are added in
batch mode, so SQLite (which cannot add a foreign key to an existing table) copies the table.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _timestamp(name: str) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=False)


def upgrade() -> None:
    op.create_table(
        "flows",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("state", sa.Text(), nullable=False),
        sa.Column("latest_version", sa.Integer(), nullable=False),
        sa.Column("live_version", sa.Integer(), nullable=True),
        _timestamp("created_at"),
        _timestamp("updated_at"),
        sa.CheckConstraint(
            "state IN ('draft', 'published', 'paused')", name=op.f("ck_flows_state")
        ),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("fk_flows_account_id_accounts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_flows")),
    )
    op.create_index("ix_flows_account_id_created_at", "flows", ["account_id", "created_at"])

    op.create_table(
        "flow_versions",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("flow_id", sa.String(length=64), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("document", sa.Text(), nullable=False),
        _timestamp("created_at"),
        sa.ForeignKeyConstraint(
            ["flow_id"],
            ["flows.id"],
            name=op.f("fk_flow_versions_flow_id_flows"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_flow_versions")),
        sa.UniqueConstraint("flow_id", "version", name=op.f("uq_flow_versions_flow_id_version")),
    )

    with op.batch_alter_table("numbers") as batch:
        batch.add_column(sa.Column("flow_id", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("hours", sa.Text(), nullable=True))
        batch.add_column(sa.Column("missed_call", sa.Integer(), nullable=True))
        batch.create_foreign_key(
            op.f("fk_numbers_flow_id_flows"),
            "flows",
            ["flow_id"],
            ["id"],
            ondelete="SET NULL",
        )
        batch.create_index(op.f("ix_numbers_flow_id"), ["flow_id"])


def downgrade() -> None:
    with op.batch_alter_table("numbers") as batch:
        batch.drop_index(op.f("ix_numbers_flow_id"))
        batch.drop_constraint(op.f("fk_numbers_flow_id_flows"), type_="foreignkey")
        batch.drop_column("missed_call")
        batch.drop_column("hours")
        batch.drop_column("flow_id")
    op.drop_table("flow_versions")
    op.drop_table("flows")
