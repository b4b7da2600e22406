"""Initial schema: tokens, devices, assignments, events, locks.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

# Timestamps are sa.DateTime(timezone=True), the DDL of models.UTCDateTime: a migration never
# imports the models, which change after it has run.

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "admin_tokens",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("secret_hash", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True)),
    )
    op.create_table(
        "enroll_tokens",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("secret_hash", sa.String(64), nullable=False),
        sa.Column("tags", sa.JSON(), nullable=False),
        sa.Column("uses_allowed", sa.Integer()),
        sa.Column("uses", sa.Integer(), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True)),
        sa.Column("revoked_at", sa.DateTime(timezone=True)),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "devices",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("secret_hash", sa.String(64), nullable=False),
        sa.Column("tags", sa.JSON(), nullable=False),
        sa.Column("facts", sa.JSON(), nullable=False),
        sa.Column("state", sa.String(32), nullable=False),
        sa.Column("current", sa.JSON()),
        sa.Column("previous", sa.JSON()),
        sa.Column("enroll_token_id", sa.String(32), sa.ForeignKey("enroll_tokens.id")),
        sa.Column("enrolled_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen_at", sa.DateTime(timezone=True)),
        sa.Column("decommissioned_at", sa.DateTime(timezone=True)),
    )
    op.create_table(
        "assignments",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("release_name", sa.String(64), nullable=False),
        sa.Column("release_version", sa.String(128), nullable=False),
        sa.Column("release_id", sa.String(64), nullable=False),
        sa.Column("rollback", sa.Boolean(), nullable=False),
        sa.Column("device_id", sa.String(32), sa.ForeignKey("devices.id")),
        sa.Column("tag_key", sa.String(64)),
        sa.Column("tag_value", sa.String(256)),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_assignments_device", "assignments", ["device_id"])
    op.create_index("ix_assignments_tag", "assignments", ["tag_key", "tag_value"])
    op.create_table(
        "events",
        sa.Column("seq", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True),
        sa.Column("device_id", sa.String(32), sa.ForeignKey("devices.id"), nullable=False),
        sa.Column("event_id", sa.String(64), nullable=False),
        sa.Column("time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("type", sa.String(32), nullable=False),
        sa.Column("state", sa.String(32)),
        sa.Column("release", sa.String(200)),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("device_id", "event_id", name="uq_events_device_event"),
    )
    op.create_index("ix_events_device_seq", "events", ["device_id", "seq"])
    locks = op.create_table(
        "locks",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("holder", sa.String(200), nullable=False),
        sa.Column("acquired_at", sa.DateTime(timezone=True)),
    )
    op.bulk_insert(locks, [{"name": "repository", "holder": ""}])


def downgrade() -> None:
    for table in ("locks", "events", "assignments", "devices", "enroll_tokens", "admin_tokens"):
        op.drop_table(table)
