"""Federated learning runs and the updates devices upload for them.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

# Timestamps: sa.DateTime(timezone=True), the DDL of models.UTCDateTime (never import the models).

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "federated_runs",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("release_ref", sa.String(200), nullable=False),
        sa.Column("release_id", sa.String(64), nullable=False),
        sa.Column("base_digest", sa.String(80), nullable=False),
        sa.Column("target", sa.String(2000), nullable=False),
        sa.Column("options", sa.JSON(), nullable=False),
        sa.Column("cohort", sa.JSON(), nullable=False),
        sa.Column("round", sa.Integer(), nullable=False),
        sa.Column("round_deadline", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("history", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "federated_updates",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("run_id", sa.String(32), sa.ForeignKey("federated_runs.id"), nullable=False),
        sa.Column("round", sa.Integer(), nullable=False),
        sa.Column("device_id", sa.String(32), sa.ForeignKey("devices.id"), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("reason", sa.String(500), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("samples", sa.Integer(), nullable=False),
        sa.Column("norm", sa.Float(), nullable=True),
        sa.Column("metrics", sa.JSON(), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("run_id", "round", "device_id", name="uq_federated_updates_round_device"),
    )


def downgrade() -> None:
    op.drop_table("federated_updates")
    op.drop_table("federated_runs")
