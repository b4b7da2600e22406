"""Rollouts and experiments, the devices' materialized assignments, event-folded reports, webhooks.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

# Timestamps are sa.DateTime(timezone=True), the DDL of models.UTCDateTime: a migration never
# imports the models, which change after it has run.

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "rollouts",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("release_ref", sa.String(200), nullable=False),
        sa.Column("release_id", sa.String(64), nullable=False),
        sa.Column("previous_ref", sa.String(200)),
        sa.Column("previous_release_id", sa.String(64)),
        sa.Column("target", sa.String(2000), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("live", sa.Boolean(), nullable=False),
        sa.Column("document", sa.JSON(), nullable=False),
        sa.Column("summary", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_rollouts_live", "rollouts", ["live", "created_at"])
    op.create_table(
        "rollout_assignments",
        sa.Column("device_id", sa.String(32), sa.ForeignKey("devices.id"), primary_key=True),
        sa.Column("rollout_id", sa.String(32), sa.ForeignKey("rollouts.id"), nullable=False),
        sa.Column("release_name", sa.String(64), nullable=False),
        sa.Column("release_version", sa.String(128), nullable=False),
        sa.Column("release_id", sa.String(64), nullable=False),
        sa.Column("rollback", sa.Boolean(), nullable=False),
        sa.Column("window", sa.JSON()),
        sa.Column("notice_s", sa.Integer(), nullable=False),
    )
    op.create_index("ix_rollout_assignments_rollout", "rollout_assignments", ["rollout_id"])
    op.create_table(
        "device_reports",
        sa.Column("device_id", sa.String(32), sa.ForeignKey("devices.id"), primary_key=True),
        sa.Column("state", sa.String(32)),
        sa.Column("target_release_id", sa.String(64)),
        sa.Column("health_release_id", sa.String(64)),
        sa.Column("health", sa.JSON()),
    )
    cursors = op.create_table(
        "job_cursors",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("position", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
    )
    op.bulk_insert(cursors, [{"name": "device_reports", "position": 0}])
    op.create_table(
        "webhooks",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("url", sa.String(2000), nullable=False),
        sa.Column("secret", sa.String(200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "webhook_deliveries",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("webhook_id", sa.String(32), sa.ForeignKey("webhooks.id", ondelete="CASCADE"), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("delivered_at", sa.DateTime(timezone=True)),
        sa.Column("last_error", sa.String(500), nullable=False),
    )
    op.create_index("ix_webhook_deliveries_due", "webhook_deliveries", ["delivered_at", "next_attempt_at"])


def downgrade() -> None:
    for table in ("webhook_deliveries", "webhooks", "job_cursors", "device_reports", "rollout_assignments", "rollouts"):
        op.drop_table(table)
