"""``newsletter token create|list|revoke``: API tokens from the command line,
thin faces over ``access.tokens`` (the functions the editor's tokens page uses)."""

from __future__ import annotations

import click
from flask.cli import AppGroup, with_appcontext

from newsletter.access.tokens import TokenInvalid, create_token, list_tokens, revoke_token
from newsletter.db import session_scope
from newsletter.models import API_SCOPES
from newsletter.terminal import emit_columns, emit_json, fail, when


@click.command("create")
@with_appcontext
@click.option("--name", required=True, help="Who or what uses the token.")
@click.option(
    "--scope",
    "scopes",
    multiple=True,
    required=True,
    help=f"Repeat, or comma-separate: {', '.join(API_SCOPES)}; '*' for all.",
)
@click.option("--by", "created_by", default="cli", show_default=True, help="Recorded as its creator.")
def create_command(name: str, scopes: tuple[str, ...], created_by: str):
    """Make a token; it is printed once (only its hash is kept)."""
    try:
        with session_scope() as session:
            row, secret = create_token(session, name=name, scopes=scopes, created_by=created_by)
            token_id, chosen = row.id, row.scopes
    except TokenInvalid as exc:
        fail(str(exc))
    click.echo(f"token {token_id} ({name}) with scopes {chosen}; shown once, keep it now:", err=True)
    click.echo(secret)


@click.command("list")
@with_appcontext
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def list_command(as_json: bool):
    """Tokens: id, name, scopes, last use, state (never the secret)."""
    with session_scope() as session:
        rows = [
            {
                "id": t.id,
                "name": t.name,
                "prefix": t.prefix,
                "scopes": t.scope_list,
                "created_by": t.created_by,
                "created_at": t.created_at,
                "last_used_at": t.last_used_at,
                "revoked_at": t.revoked_at,
            }
            for t in list_tokens(session)
        ]
    if as_json:
        emit_json(rows)
        return
    table = (
        (
            str(r["id"]),
            r["name"],
            r["prefix"] + "…",
            ",".join(r["scopes"]),
            when(r["last_used_at"]) or "never",
            "revoked" if r["revoked_at"] else "active",
        )
        for r in rows
    )
    if not emit_columns(table, ("ID", "NAME", "PREFIX", "SCOPES", "LAST USED", "STATE"), (4, 24, 12, 40, 18)):
        click.echo("no tokens yet: `newsletter token create --name NAME --scope issues:read`", err=True)


@click.command("revoke")
@with_appcontext
@click.argument("token_id", type=int)
def revoke_command(token_id: int):
    """Revoke a token by id; it stops working at once."""
    try:
        with session_scope() as session:
            name = revoke_token(session, token_id).name
    except LookupError as exc:
        fail(str(exc))
    click.echo(f"token {token_id} ({name}) is revoked")


def register(groups) -> None:
    group = groups.setdefault(
        "token", AppGroup("token", help="API tokens: create (shown once), list, revoke.")
    )
    for command in (create_command, list_command, revoke_command):
        group.add_command(command)
