"""The fleet's change feed: the rollout job reads only devices that checked in, enrolled,
left or had events folded since its last pass.

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("device_reports") as batch:
        batch.add_column(sa.Column("folded_at", sa.DateTime(timezone=True), nullable=True))
    op.create_index("ix_device_reports_folded_at", "device_reports", ["folded_at"])
    op.create_index("ix_devices_last_seen_at", "devices", ["last_seen_at"])
    op.create_index("ix_devices_enrolled_at", "devices", ["enrolled_at"])
    op.create_index("ix_devices_decommissioned_at", "devices", ["decommissioned_at"])


def downgrade() -> None:
    for name, table in (("ix_devices_decommissioned_at", "devices"), ("ix_devices_enrolled_at", "devices"),
                        ("ix_devices_last_seen_at", "devices"), ("ix_device_reports_folded_at", "device_reports")):
        op.drop_index(name, table)
    with op.batch_alter_table("device_reports") as batch:
        batch.drop_column("folded_at")
