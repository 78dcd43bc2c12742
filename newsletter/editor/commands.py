"""``newsletter editor create|list|set-password|disable|enable``: thin faces over
``editor.service`` (the functions the editors page uses). Exit codes as in
``newsletter.terminal``."""

from __future__ import annotations

import sys

import click
from flask.cli import with_appcontext

from newsletter.db import session_scope
from newsletter.editor.service import (
    EditorError,
    create_editor,
    disable_editor,
    enable_editor,
    find_editor,
    list_editors,
    set_password,
)
from newsletter.models import EDITOR_ROLES
from newsletter.terminal import emit_columns, emit_json, fail, when


def _password(password_stdin: bool) -> str:
    if password_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    return click.prompt("Password", hide_input=True, confirmation_prompt=True)


@click.command("create")
@click.argument("email")
@click.option("--role", type=click.Choice(EDITOR_ROLES), default="editor", show_default=True)
@click.option(
    "--password-stdin", is_flag=True, help="Read the password from the first line of standard input."
)
def create_command(email: str, role: str, password_stdin: bool):
    """Create an editor account (prompts for the password without echo)."""
    password = _password(password_stdin)
    try:
        with session_scope() as session:
            editor = create_editor(session, email, password, role)
            address = editor.email
    except EditorError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"created {role} {address}")


@click.command("list")
@with_appcontext
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def list_command(as_json: bool):
    """Editor accounts: address, role, state, last login."""
    with session_scope() as session:
        accounts = [
            {
                "email": e.email,
                "role": e.role,
                "disabled": e.disabled_at is not None,
                "disabled_at": e.disabled_at,
                "last_login_at": e.last_login_at,
                "created_at": e.created_at,
            }
            for e in list_editors(session)
        ]
    if as_json:
        emit_json(accounts)
        return
    rows = (
        (a["email"], a["role"], "disabled" if a["disabled"] else "active", when(a["last_login_at"]))
        for a in accounts
    )
    if not emit_columns(rows, ("EMAIL", "ROLE", "STATE", "LAST LOGIN"), (36, 7, 9)):
        click.echo("no editors yet: `newsletter editor create EMAIL --role admin`", err=True)


@click.command("set-password")
@with_appcontext
@click.argument("email")
@click.option(
    "--password-stdin", is_flag=True, help="Read the password from the first line of standard input."
)
def set_password_command(email: str, password_stdin: bool):
    """Set a new password for EMAIL (also lifts a lockout)."""
    password = _password(password_stdin)
    try:
        with session_scope() as session:
            editor = find_editor(session, email)
            set_password(session, editor, password)
            address = editor.email
    except EditorError as exc:
        fail(str(exc))
    click.echo(f"new password set for {address}")


@click.command("disable")
@with_appcontext
@click.argument("email")
def disable_command(email: str):
    """Stop EMAIL from logging in (their sessions end); `editor enable` undoes it."""
    try:
        with session_scope() as session:
            address = disable_editor(session, email).email
    except EditorError as exc:
        fail(str(exc))
    click.echo(f"{address} is disabled")


@click.command("enable")
@with_appcontext
@click.argument("email")
def enable_command(email: str):
    """Let a disabled editor log in again."""
    try:
        with session_scope() as session:
            address = enable_editor(session, email).email
    except EditorError as exc:
        fail(str(exc))
    click.echo(f"{address} can log in")


def register(groups) -> None:
    """Add this capability's commands to the ``newsletter`` groups."""
    for command in (create_command, list_command, set_password_command, disable_command, enable_command):
        groups["editor"].add_command(command)
