"""sign-ups through the embedded box, counted per day and source (issue 16)

Revision ID: i16_embed_signups
Revises: i12_security_hardening
"""

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "i16_embed_signups"
down_revision = "i12_security_hardening"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "signupcount",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("source", sqlmodel.sql.sqltypes.AutoString(length=300), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("day", "source"),
    )
    with op.batch_alter_table("signupcount", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_signupcount_day"), ["day"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("signupcount", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_signupcount_day"))
    op.drop_table("signupcount")
