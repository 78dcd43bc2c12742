"""the JSON API for agents and integrations (issue 18)

Scoped API tokens (hashed), Idempotency-Key records, the audit log and outgoing webhook endpoints.

Revision ID: i18_api_tokens
Revises: i16_embed_signups
"""

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "i18_api_tokens"
down_revision = "i16_embed_signups"
branch_labels = None
depends_on = None

S = sqlmodel.sql.sqltypes.AutoString
T = sqlmodel.sql.sqltypes.UTCDateTime


def upgrade() -> None:
    op.create_table(
        "apitoken",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", S(length=100), nullable=False),
        sa.Column("token_hash", S(length=64), nullable=False),
        sa.Column("prefix", S(length=16), nullable=False),
        sa.Column("scopes", S(length=300), nullable=False),
        sa.Column("created_by", S(length=320), nullable=False),
        sa.Column("created_at", T(), nullable=False),
        sa.Column("last_used_at", T(), nullable=True),
        sa.Column("revoked_at", T(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("apitoken", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_apitoken_token_hash"), ["token_hash"], unique=True)

    op.create_table(
        "idempotencyrecord",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("token_ref", S(length=80), nullable=False),
        sa.Column("key", S(length=200), nullable=False),
        sa.Column("method", S(length=10), nullable=False),
        sa.Column("path", S(length=500), nullable=False),
        sa.Column("request_hash", S(length=64), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=False),
        sa.Column("response_body", sa.Text(), server_default="", nullable=False),
        sa.Column("response_headers", sa.Text(), server_default="{}", nullable=False),
        sa.Column("created_at", T(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("token_ref", "key"),
    )
    with op.batch_alter_table("idempotencyrecord", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_idempotencyrecord_created_at"), ["created_at"], unique=False)

    op.create_table(
        "auditentry",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("at", T(), nullable=False),
        sa.Column("actor", S(length=400), nullable=False),
        sa.Column("action", S(length=100), nullable=False),
        sa.Column("target", S(length=500), nullable=False),
        sa.Column("status", sa.Integer(), nullable=False),
        sa.Column("detail", S(length=1000), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("auditentry", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_auditentry_at"), ["at"], unique=False)

    op.create_table(
        "webhookendpoint",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("url", S(length=2000), nullable=False),
        sa.Column("secret", S(length=100), nullable=False),
        sa.Column("events", S(length=300), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_by", S(length=320), nullable=False),
        sa.Column("created_at", T(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )


def downgrade() -> None:
    op.drop_table("webhookendpoint")
    op.drop_table("auditentry")
    op.drop_table("idempotencyrecord")
    op.drop_table("apitoken")
