"""Articles in: one upsert for the API, JSON files, feeds and the editor.

Each item is validated on its own; bad items are reported with their index
and a message, good ones are stored (one bad article never loses the rest).
An item is matched to an existing article by its external id, else by its
canonical URL (lower-case host, no fragment, no utm_* parameters), so
posting the same batch twice changes nothing.

Matching is scoped to the item's *source* (``source_key``: the API token,
the feed URL, file imports, the editor): one source can never update
another's article by reusing its external id or URL. An item whose URL
another source already holds is skipped and reported, not stored twice.
Articles of an approved issue may still change here; the issue is sent from
the snapshot taken at approval (``issues.service``).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from newsletter import clock
from newsletter.content.sanitise import (
    MAX_URL_LENGTH,
    InvalidUrl,
    check_url,
    clean_html,
    clean_text,
    markdown_to_html,
    neutralise,
)
from newsletter.db import session_scope
from newsletter.models import Article, ArticleTag, Tag

FIELDS = frozenset({"id", "external_id", "url", "title", "synopsis", "author", "published_at", "reading_minutes",
          "image_url", "image_alt", "tags"})  # fmt: skip
# Feeds also hand over ``synopsis_html``: what the feed marked as HTML,
# cleaned by the allow-list (never accepted from the API or a file).
FEED_FIELDS = FIELDS | {"synopsis_html"}
MAX_ITEMS = 500
MAX_SYNOPSIS = 20_000
MAX_TAGS = 20
_SLUG = re.compile(r"[^a-z0-9]+")


class ArticleInvalid(ValueError):
    pass


@dataclass
class UpsertReport:
    created: int = 0
    updated: int = 0
    errors: list[tuple[int, str]] = field(default_factory=list)
    ids: list[int] = field(default_factory=list)
    skipped: list[tuple[int, str]] = field(default_factory=list)  # valid, but another source's article
    not_modified: bool = False  # feeds: the server answered 304
    note: str = ""  # feeds: something worth saying that is not an error ("the feed has no entries")

    def merge(self, other: UpsertReport) -> None:
        self.created += other.created
        self.updated += other.updated
        self.errors.extend(other.errors)
        self.ids.extend(other.ids)
        self.skipped.extend(other.skipped)

    def as_dict(self) -> dict:
        return {
            "created": self.created,
            "updated": self.updated,
            "ids": self.ids,
            "errors": [{"index": i, "message": m} for i, m in self.errors],
            "skipped": [{"index": i, "message": m} for i, m in self.skipped],
        }


def source_key(kind: str, identity: str = "") -> str:
    """The scope of a source's external ids: ``api:<digest of the token>``,
    ``feed:<digest of the URL>``, or the kind alone (``file``, ``editor``)."""
    if not identity:
        return kind
    return f"{kind}:{hashlib.sha256(identity.encode('utf-8')).hexdigest()[:32]}"


class TakenByAnotherSource(Exception):
    def __init__(self, article_id: int):
        super().__init__(article_id)
        self.article_id = article_id


# --- helpers -------------------------------------------------------------------


def slugify(value: str) -> str:
    return _SLUG.sub("-", value.strip().lower()).strip("-")[:80]


def tag_name(raw: str, slug: str) -> str:
    """A display name: the given name, or one made from a slug ("ai-ethics" → "AI Ethics")."""
    raw = clean_text(raw, field="tag")
    if raw and raw != slug:
        return raw[:120]
    return " ".join(w.upper() if len(w) <= 2 else w.capitalize() for w in slug.split("-"))[:120]


def canonical_url(url: str, field: str = "url") -> str:
    """The URL articles are matched by: tracking parameters and the fragment
    dropped, an empty path as "/", the query re-encoded. That can make it
    longer than what was sent, so the result is measured against the column."""
    parts = urlsplit(url)
    query = [
        (k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if not k.lower().startswith("utm_")
    ]
    path = parts.path or "/"
    canonical = urlunsplit((parts.scheme, parts.netloc, path, urlencode(query), ""))
    if len(canonical) > MAX_URL_LENGTH:
        raise InvalidUrl(f"{field} is longer than {MAX_URL_LENGTH} characters once normalised")
    return canonical


def parse_time(value, field_name: str = "published_at") -> datetime:
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, str) and value.strip():
        text = value.strip().replace("Z", "+00:00").replace("z", "+00:00")
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            raise ArticleInvalid(
                f"{field_name} must be an ISO 8601 time such as 2026-03-02T08:00:00Z"
            ) from None
    else:
        raise ArticleInvalid(f"{field_name} must be an ISO 8601 time")
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


@dataclass
class CleanItem:
    external_id: str | None
    url: str
    title: str
    synopsis: str
    author: str
    published_at: datetime
    reading_minutes: int | None
    image_url: str | None
    image_alt: str
    tags: list[tuple[str, str]]  # (slug, name)
    synopsis_html: str | None = None  # feeds: the source's own HTML, cleaned; None: render the Markdown


def validate_item(item, fields: frozenset[str] = FIELDS) -> CleanItem:
    """Check one incoming article; raise ArticleInvalid with every problem found."""
    if not isinstance(item, dict):
        raise ArticleInvalid("each article must be a JSON object")
    problems: list[str] = []
    unknown = sorted(set(item) - fields)
    if unknown:
        problems.append(f"unknown field(s): {', '.join(unknown)}")

    def text(name: str, limit: int, required: bool = False) -> str:
        try:
            value = clean_text(item.get(name), max_length=limit, field=name)
        except ValueError as exc:
            problems.append(str(exc))
            return ""
        if required and not value:
            problems.append(f"{name} is required")
        return value

    external = item.get("external_id", item.get("id"))
    external_id = None
    if external is not None:
        if isinstance(external, int) and not isinstance(external, bool):
            external = str(external)
        try:
            external_id = clean_text(external, max_length=300, field="external_id") or None
        except ValueError as exc:
            problems.append(str(exc))
    title = text("title", 500, required=True)
    author = text("author", 200)
    image_alt = text("image_alt", 500)
    url = image_url = None
    try:
        url = canonical_url(check_url(item.get("url"), field="url"))
    except InvalidUrl as exc:
        problems.append(str(exc))
    try:
        image_url = check_url(item.get("image_url"), field="image_url", required=False)
    except InvalidUrl as exc:
        problems.append(str(exc))
    synopsis = item.get("synopsis") or ""
    if not isinstance(synopsis, str):
        problems.append("synopsis must be text (Markdown)")
        synopsis = ""
    elif len(synopsis) > MAX_SYNOPSIS:
        problems.append(f"synopsis is longer than {MAX_SYNOPSIS} characters")
    published_at = clock.now()
    if item.get("published_at") not in (None, ""):
        try:
            published_at = parse_time(item["published_at"])
        except ArticleInvalid as exc:
            problems.append(str(exc))
    minutes = item.get("reading_minutes")
    if minutes is not None and (
        isinstance(minutes, bool) or not isinstance(minutes, int) or not 0 < minutes <= 600
    ):
        problems.append("reading_minutes must be a whole number from 1 to 600")
        minutes = None
    tags: list[tuple[str, str]] = []
    raw_tags = item.get("tags") or []
    if not isinstance(raw_tags, list) or not all(isinstance(t, str) for t in raw_tags):
        problems.append("tags must be a list of strings")
    elif len(raw_tags) > MAX_TAGS:
        problems.append(f"at most {MAX_TAGS} tags")
    else:
        for raw in raw_tags:
            slug = slugify(raw)
            if not slug:
                problems.append(f"tag {raw[:40]!r} has no letters or digits")
            elif slug not in {s for s, _ in tags}:
                tags.append((slug, tag_name(raw, slug)))
    synopsis_html = item.get("synopsis_html")
    if synopsis_html is not None and not isinstance(synopsis_html, str):
        problems.append("synopsis_html must be text")
    if problems:
        raise ArticleInvalid("; ".join(problems))
    return CleanItem(external_id, url, title, neutralise(synopsis.replace("\r\n", "\n")).strip(), author,
                     published_at, minutes, image_url, image_alt, tags,
                     clean_html(synopsis_html) if synopsis_html is not None else None)  # fmt: skip


def _find(session: Session, item: CleanItem, scope: str) -> Article | None:
    """The article ``item`` updates, within its source's scope; raises
    TakenByAnotherSource when only another source holds its URL."""
    mine = select(Article).where(Article.source_key == scope)
    if item.external_id:
        found = session.exec(mine.where(Article.external_id == item.external_id)).first()
        if found is None:
            found = session.exec(
                mine.where(Article.url == item.url, Article.external_id.is_(None)).order_by(Article.id)
            ).first()
    else:
        found = session.exec(mine.where(Article.url == item.url).order_by(Article.id)).first()
    if found is not None:
        return found
    other = session.exec(
        select(Article.id).where(Article.url == item.url, Article.source_key != scope).order_by(Article.id)
    ).first()
    if other is not None:
        raise TakenByAnotherSource(other)
    return None


def _tag_ids(
    session: Session, tags: list[tuple[str, str]], cache: dict[str, int], *, as_sections: bool
) -> list[int]:
    ids = []
    for slug, name in tags:
        if slug not in cache:
            tag = session.exec(select(Tag).where(Tag.slug == slug)).first()
            if tag is None:
                tag = Tag(slug=slug, name=name, is_section=as_sections)
                session.add(tag)
                session.flush()
            cache[slug] = tag.id
        ids.append(cache[slug])
    return ids


def store_item(
    session: Session,
    item: CleanItem,
    source: str,
    tag_cache: dict[str, int],
    *,
    scope: str,
    new_tags_are_sections: bool = True,
) -> tuple[Article, bool]:
    """Insert or update one validated article of the source ``scope``;
    returns (article, created). Raises TakenByAnotherSource."""
    article = _find(session, item, scope)
    created = article is None
    now = clock.now()
    if created:
        article = Article(url=item.url, title=item.title, source=source, source_key=scope, created_at=now)
    article.external_id = item.external_id or article.external_id
    article.url = item.url
    article.title = item.title
    article.synopsis = item.synopsis
    article.synopsis_html = (
        item.synopsis_html if item.synopsis_html is not None else markdown_to_html(item.synopsis)
    )
    article.author = item.author
    article.published_at = item.published_at
    article.reading_minutes = item.reading_minutes
    article.image_url = item.image_url
    article.image_alt = item.image_alt
    article.updated_at = now
    session.add(article)
    session.flush()
    wanted = set(_tag_ids(session, item.tags, tag_cache, as_sections=new_tags_are_sections))
    current = {
        row.tag_id: row
        for row in session.exec(select(ArticleTag).where(ArticleTag.article_id == article.id)).all()
    }
    for tag_id in wanted - current.keys():
        session.add(ArticleTag(article_id=article.id, tag_id=tag_id))
    for tag_id in current.keys() - wanted:
        session.delete(current[tag_id])
    return article, created


def upsert_articles(
    items: list,
    source: str,
    *,
    scope: str | None = None,
    new_tags_are_sections: bool = True,
    fields: frozenset[str] = FIELDS,
) -> UpsertReport:
    """Validate and store ``items`` (dicts); idempotent by external id or canonical URL.

    ``source`` is the kind (api, feed, file, editor); ``scope`` the source
    itself (``source_key(…)``; the kind alone when None), within which
    external ids and URLs are matched.

    Tags that do not exist yet are created; from the API and files they become
    sections (the editor can turn that off per tag), from feeds they do not
    (feed categories are noisy) — ``new_tags_are_sections`` says which.
    ``fields``: the keys an item may have (feeds pass ``FEED_FIELDS``).
    """
    report = UpsertReport()
    if not isinstance(items, list):
        report.errors.append((0, "expected an article object or a list of them"))
        return report
    if len(items) > MAX_ITEMS:
        report.errors.append((0, f"at most {MAX_ITEMS} articles per request"))
        return report
    cleaned: list[tuple[int, CleanItem]] = []
    for index, raw in enumerate(items):
        try:
            cleaned.append((index, validate_item(raw, fields)))
        except ArticleInvalid as exc:
            report.errors.append((index, str(exc)))
    if not cleaned:
        return report
    scope = scope or source
    for attempt in range(3):
        stored = UpsertReport()
        try:
            with session_scope() as session:
                cache: dict[str, int] = {}
                for index, item in cleaned:
                    try:
                        article, created = store_item(
                            session,
                            item,
                            source,
                            cache,
                            scope=scope,
                            new_tags_are_sections=new_tags_are_sections,
                        )
                    except TakenByAnotherSource as taken:
                        stored.skipped.append(
                            (
                                index,
                                f"article {taken.article_id} from another source has this URL: not changed",
                            )
                        )
                        continue
                    stored.ids.append(article.id)
                    if created:
                        stored.created += 1
                    else:
                        stored.updated += 1
            break
        except IntegrityError:
            # A concurrent request created the same tag or article first; the
            # retry finds it and updates instead.
            if attempt == 2:
                raise
    report.merge(stored)
    return report


# --- curation: what the editor's articles page and `newsletter articles` do ---------------


def set_held(session: Session, article_id: int, held: bool) -> Article:
    """Hold an article back from the next issue (assembly skips it), or release it."""
    article = session.get(Article, article_id)
    if article is None:
        raise ArticleInvalid(f"there is no article {article_id}")
    article.held = held
    article.updated_at = clock.now()
    session.add(article)
    return article


def list_articles(
    session: Session, *, since: datetime | None = None, tag: str | None = None, limit: int = 100
) -> list[tuple[Article, list[str]]]:
    """The newest articles (published after ``since``, carrying ``tag``), each with its tag slugs."""
    query = select(Article).order_by(Article.published_at.desc(), Article.id.desc()).limit(limit)
    if since is not None:
        query = query.where(Article.published_at > since)
    if tag:
        query = query.where(
            Article.id.in_(
                select(ArticleTag.article_id).join(Tag, Tag.id == ArticleTag.tag_id).where(Tag.slug == tag)
            )
        )
    articles = list(session.exec(query).all())
    slugs: dict[int, list[str]] = {a.id: [] for a in articles}
    if articles:
        for article_id, slug in session.exec(
            select(ArticleTag.article_id, Tag.slug)
            .join(Tag, Tag.id == ArticleTag.tag_id)
            .where(ArticleTag.article_id.in_(list(slugs)))
            .order_by(Tag.slug)
        ).all():
            slugs[article_id].append(slug)
    return [(a, slugs[a.id]) for a in articles]
