"""Reader-facing views (thin: the logic lives in newsletter.readers.service)."""

from flask import render_template

from newsletter.readers import bp


@bp.get("/")
def index():
    return render_template("readers/index.html")
