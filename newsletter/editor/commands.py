"""``newsletter editor create EMAIL [--role admin|editor] [--password-stdin]``."""

from __future__ import annotations

import sys

import click

from newsletter.db import session_scope
from newsletter.editor.service import EditorError, create_editor
from newsletter.models import EDITOR_ROLES


@click.command("create")
@click.argument("email")
@click.option("--role", type=click.Choice(EDITOR_ROLES), default="editor", show_default=True)
@click.option(
    "--password-stdin", is_flag=True, help="Read the password from the first line of standard input."
)
def create_command(email: str, role: str, password_stdin: bool):
    """Create an editor account (prompts for the password without echo)."""

    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    try:
        with session_scope() as session:
            editor = create_editor(session, email, password, role)
            address = editor.email
    except EditorError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"created {role} {address}")


def register(groups) -> None:
    """Add this capability's commands to the ``newsletter`` groups."""
    groups["editor"].add_command(create_command)
