"""the send starts before its fan-out ends: the fan-out's lease on the issue

Revision ID: i15_fan_out_while_sending
Revises: i17_local_time_delivery
"""

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "i15_fan_out_while_sending"
down_revision = "i17_local_time_delivery"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # NULL: every reader has a row, as for every issue started before this revision.
    with op.batch_alter_table("issue", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("fanning_out_until", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True)
        )


def downgrade() -> None:
    with op.batch_alter_table("issue", schema=None) as batch_op:
        batch_op.drop_column("fanning_out_until")
