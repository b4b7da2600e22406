"""Shared TUF metadata (the database is its source of truth) and the rollout job's lease row.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

# Timestamps are sa.DateTime(timezone=True), the DDL of models.UTCDateTime: a migration never
# imports the models, which change after it has run.

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "repo_metadata",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.Column("generation", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("written_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_repo_metadata_generation", "repo_metadata", ["generation"])
    locks = sa.table("locks", sa.column("name", sa.String), sa.column("holder", sa.String))
    op.bulk_insert(locks, [{"name": "rollout_job", "holder": ""}])


def downgrade() -> None:
    op.execute("DELETE FROM locks WHERE name = 'rollout_job'")
    op.drop_index("ix_repo_metadata_generation", table_name="repo_metadata")
    op.drop_table("repo_metadata")
