"""``newsletter doctor``: the pre-flight report (the editor's settings page
shows the same). Exit 0 when nothing failed (warnings allowed, unless
``--strict``), 1 otherwise."""

from __future__ import annotations

import sys

import click
from flask import current_app
from flask.cli import with_appcontext
from rich.console import Console

from newsletter.doctor.checks import NAMES, run_checks
from newsletter.doctor.report import FAIL, WARN, summary
from newsletter.terminal import emit_json

COLOURS = {"pass": "green", "warn": "yellow", "fail": "red", "skip": "bright_black"}


@click.command("doctor")
@with_appcontext
@click.option("--only", multiple=True, type=click.Choice(NAMES), help="Run only this check (repeatable).")
@click.option("--strict", is_flag=True, help="Exit 1 on warnings too.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def doctor_command(only, strict, as_json):
    """Check the configuration and deliverability before sending: SPF, DKIM, DMARC,
    bounce domain, transport and credentials, webhooks, bounce mailbox, scheduler,
    database, secret key, BASE_URL and one-click unsubscribe."""
    settings = current_app.extensions["signal_settings"]
    console = Console(stderr=True)
    with console.status(f"Running {len(only) or len(NAMES)} checks…", spinner="dots"):
        findings = run_checks(settings, tuple(only))
    counts = summary(findings)
    if as_json:
        emit_json({"summary": counts, "checks": [f.as_dict() for f in findings]})
    else:
        for finding in findings:
            label = click.style(f"{finding.status.upper():<5}", fg=COLOURS[finding.status], bold=True)
            click.echo(f"{label} {finding.title}: {finding.detail}")
            if finding.fix and finding.status in (FAIL, WARN):
                click.echo(f"      fix: {finding.fix}")
        click.echo(", ".join(f"{n} {k}" for k, n in counts.items()))
    if counts[FAIL] or (strict and counts[WARN]):
        sys.exit(1)


def register(groups) -> None:
    """``doctor`` is a top-level command."""
    groups["doctor"] = doctor_command
