"""security hardening (issue 12)

Per-render marker nonces, article snapshots at approval, external ids scoped
to their source, subscribe requests kept aside until confirmed, editor
session versions and per-client login throttling.

Revision ID: i12_security_hardening
Revises: 0001
"""

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "i12_security_hardening"
down_revision = "i14_operator_week"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "loginthrottle",
        sa.Column("key", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("blocked_until", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.Column("updated_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("key"),
    )
    with op.batch_alter_table("loginthrottle", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_loginthrottle_updated_at"), ["updated_at"], unique=False)

    op.create_table(
        "subscriberequest",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("subscriber_id", sa.Integer(), nullable=False),
        sa.Column("name", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("topics", sqlmodel.sql.sqltypes.AutoString(length=1000), nullable=False),
        sa.Column("consent_source", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
        sa.Column("consent_text", sa.Text(), server_default="", nullable=False),
        sa.Column("consent_ip", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["subscriber_id"], ["subscriber.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("subscriberequest", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_subscriberequest_created_at"), ["created_at"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_subscriberequest_subscriber_id"), ["subscriber_id"], unique=False
        )

    # Existing articles keep their kind of source as their scope ("api",
    # "feed", "file", "editor"); new ones are scoped to their token or feed.
    with op.batch_alter_table("article", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "source_key", sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False, server_default=""
            )
        )
    op.execute("UPDATE article SET source_key = source")
    with op.batch_alter_table("article", schema=None) as batch_op:
        batch_op.alter_column("source_key", server_default=None)
        batch_op.drop_index(batch_op.f("ix_article_external_id"))
        batch_op.create_unique_constraint("uq_article_source_external_id", ["source_key", "external_id"])

    with op.batch_alter_table("editor", schema=None) as batch_op:
        batch_op.add_column(sa.Column("session_version", sa.Integer(), nullable=False, server_default="0"))
        batch_op.drop_column("locked_until")
    with op.batch_alter_table("editor", schema=None) as batch_op:
        batch_op.alter_column("session_version", server_default=None)

    with op.batch_alter_table("issuearticle", schema=None) as batch_op:
        batch_op.add_column(sa.Column("snapshot", sa.Text(), nullable=True))

    # Renders frozen before markers had nonces are refused by the sender
    # (their fixed markers are what content could forge).
    with op.batch_alter_table("issuerender", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("nonce", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False, server_default="")
        )
    with op.batch_alter_table("issuerender", schema=None) as batch_op:
        batch_op.alter_column("nonce", server_default=None)


def downgrade() -> None:
    with op.batch_alter_table("issuerender", schema=None) as batch_op:
        batch_op.drop_column("nonce")
    with op.batch_alter_table("issuearticle", schema=None) as batch_op:
        batch_op.drop_column("snapshot")
    with op.batch_alter_table("editor", schema=None) as batch_op:
        batch_op.add_column(sa.Column("locked_until", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True))
        batch_op.drop_column("session_version")
    with op.batch_alter_table("article", schema=None) as batch_op:
        batch_op.drop_constraint("uq_article_source_external_id", type_="unique")
        batch_op.create_index(batch_op.f("ix_article_external_id"), ["external_id"], unique=True)
        batch_op.drop_column("source_key")
    with op.batch_alter_table("subscriberequest", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_subscriberequest_subscriber_id"))
        batch_op.drop_index(batch_op.f("ix_subscriberequest_created_at"))
    op.drop_table("subscriberequest")
    with op.batch_alter_table("loginthrottle", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_loginthrottle_updated_at"))
    op.drop_table("loginthrottle")
