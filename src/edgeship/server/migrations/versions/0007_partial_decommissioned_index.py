"""The index on ``devices.decommissioned_at`` holds only decommissioned devices.

A full index, nearly all NULL, drew the planners into scanning every active device through it
for any query with ``decommissioned_at IS NULL`` (SQLite: a check-in batch of 8+ devices,
every page of ``device list``), which made those O(fleet). The change feed's range reads
(``decommissioned_at > since``) still use the partial index.

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

_NAME = "ix_devices_decommissioned_at"


def upgrade() -> None:
    op.drop_index(_NAME, "devices")
    where = sa.text("decommissioned_at IS NOT NULL")
    op.create_index(_NAME, "devices", ["decommissioned_at"], sqlite_where=where, postgresql_where=where)


def downgrade() -> None:
    op.drop_index(_NAME, "devices")
    op.create_index(_NAME, "devices", ["decommissioned_at"])
