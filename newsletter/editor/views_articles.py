"""Articles: list, search, filter by tag, edit tags, hold back."""

from __future__ import annotations

from flask import flash, redirect, render_template, request, url_for

from newsletter import queries
from newsletter.content.service import ArticleInvalid, set_held
from newsletter.content.tagging import ArticleError, parse_tags, set_article_tags
from newsletter.db import session_scope
from newsletter.editor.forms import ActionForm, ArticleTagsForm
from newsletter.editor.views import bp
from newsletter.web import int_arg, text_arg


@bp.get("/articles")
def articles():
    q = text_arg("q", 200)
    tag = text_arg("tag", 80)
    held = request.args.get("held", "")
    with session_scope() as db:
        page = queries.search_articles(db, q=q, tag=tag, held=held, before=int_arg("before"))
        tags = queries.all_tags(db)
        article_tags = queries.tags_by_article(db, [a.id for a in page.rows])
    return render_template(
        "editor/articles.html",
        page=page,
        tags=tags,
        article_tags=article_tags,
        q=q,
        tag=tag,
        held=held,
        action=ActionForm(),
        tags_form=ArticleTagsForm(),
    )


def _back():
    target = request.form.get("back", "")
    return redirect(target if target.startswith("/editor/articles") else url_for("editor.articles"))


@bp.post("/articles/<int:article_id>/tags")
def article_tags(article_id: int):
    form = ArticleTagsForm()
    if not form.validate_on_submit():
        flash("The tags could not be read.", "error")
        return _back()
    try:
        slugs = parse_tags(form.tags.data or "")
        with session_scope() as db:
            article = set_article_tags(db, article_id, slugs)
            title = article.title
        flash(f"Tags saved for “{title}”.", "success")
    except ArticleError as exc:
        flash(f"Tags not saved: {exc}.", "error")
    return _back()


@bp.post("/articles/<int:article_id>/hold")
def article_hold(article_id: int):
    hold = request.form.get("held") == "1"
    try:
        with session_scope() as db:
            article = set_held(db, article_id, hold)
            title = article.title
        flash(f"“{title}” is {'held back from' if hold else 'back in'} the next issue.", "success")
    except ArticleInvalid as exc:
        flash(str(exc).capitalize() + ".", "error")
    return _back()
