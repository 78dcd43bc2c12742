"""local-time delivery: readers' time zones, the zone of each delivery row

Revision ID: i17_local_time_delivery
Revises: i18_api_tokens
"""

import sqlalchemy as sa
from alembic import op

revision = "i17_local_time_delivery"
down_revision = "i18_api_tokens"
branch_labels = None
depends_on = None

TABLES = ("subscriber", "subscriberequest", "delivery")


def upgrade() -> None:
    for table in TABLES:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(
                sa.Column("timezone", sa.String(length=64), server_default="", nullable=False)
            )
    with op.batch_alter_table("subscriber", schema=None) as batch_op:
        batch_op.create_index("ix_subscriber_timezone_status", ["timezone", "status"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("subscriber", schema=None) as batch_op:
        batch_op.drop_index("ix_subscriber_timezone_status")
    for table in reversed(TABLES):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_column("timezone")
