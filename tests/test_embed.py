"""The sign-up box for other sites (/embed, /embed.js, /embed/box) without a browser:
who may frame or call it, the cookie-less form token, the same answers as the
front page, hostile options, and the per-source counts."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from html import unescape

import pytest
from sqlmodel import select

from newsletter import clock
from newsletter.config import ConfigError, load_settings
from newsletter.db import session_scope
from newsletter.models import Subscriber
from newsletter.readers import box, form_tokens, service, signups
from newsletter.tokens import TokenError, TokenExpired
from tests.readers_fixtures import outbox, reader

pytestmark = pytest.mark.usefixtures("running_sender")
HOST = "https://blog.example.org"
OTHER = "https://evil.example"
TOKEN = re.compile(r'name="form_token" value="([^"]+)"')


@pytest.fixture
def embed_client(make_app, topics):
    return make_app(embed_origins=(HOST,)).test_client()


def frame(client, referer=HOST + "/posts/agents", query=""):
    return client.get("/embed" + query, headers={"Referer": referer})


def token_of(response) -> str:
    return TOKEN.search(response.get_data(as_text=True)).group(1)


def post_box(client, token, origin="http://localhost", **fields):
    data = {
        "form_token": token,
        "email": "ann@example.org",
        "website": "",
        "timezone": "Europe/Berlin",
        "topics": ["agents", "models", "tools"],
    }
    data.update(fields)
    return client.post("/embed", data=data, headers={"Origin": origin})


def test_an_allowed_site_may_frame_the_box_and_nothing_needs_a_cookie(embed_client):
    response = frame(embed_client)
    assert response.status_code == 200
    csp = response.headers["Content-Security-Policy"]
    assert f"frame-ancestors 'self' {HOST}" in csp and "unsafe-inline" not in csp
    assert "X-Frame-Options" not in response.headers  # frame-ancestors decides, with a list
    assert "Set-Cookie" not in response.headers and response.headers["Cache-Control"] == "no-store"
    html = response.get_data(as_text=True)
    assert "GET THE SIGNAL" in html and "AI agent intel, sourced, verified" in html
    assert 'aria-live="polite"' in html and 'name="website"' in html and 'name="timezone"' in html
    assert "<style" not in html and " style=" not in html and "<script>" not in html


def test_a_site_not_listed_is_told_why_and_gets_no_form(embed_client):
    response = frame(embed_client, referer=OTHER + "/page")
    assert response.status_code == 403
    html = response.get_data(as_text=True)
    assert "not enabled for https://evil.example" in html and "NEWSLETTER_EMBED_ORIGINS" in html
    assert "<form" not in html and "form_token" not in html


def test_embed_origins_default_to_the_cors_origins(make_app, topics):
    client = make_app(cors_origins=(HOST,)).test_client()
    assert frame(client).status_code == 200
    assert frame(client, referer=OTHER + "/").status_code == 403
    closed = make_app(cors_origins=(HOST,), embed_origins=()).test_client()
    assert frame(closed).status_code == 403  # set but empty: nobody else may frame it
    nobody = make_app().test_client()
    assert frame(nobody).status_code == 403
    assert "frame-ancestors 'self'" in frame(nobody, referer="").headers["Content-Security-Policy"]


def test_origins_must_be_origins(tmp_path):
    for bad in ("https://blog.example.org/", "blog.example.org", "https://x.example/path", "ftp://x.example"):
        with pytest.raises(ConfigError, match="NEWSLETTER_EMBED_ORIGINS"):
            load_settings(
                environ={"NEWSLETTER_EMBED_ORIGINS": bad},
                dotenv=False,
                env="testing",
                instance_path=str(tmp_path),
            )


def test_subscribing_in_the_frame_is_double_opt_in_and_counted_for_the_site(embed_client):
    token = token_of(frame(embed_client))
    response = post_box(embed_client, token, topics=["models"])
    assert response.status_code == 200
    assert "a confirmation link is on its way" in response.get_data(as_text=True)
    sub = reader("ann@example.org")
    assert sub.status == "pending" and sub.consent_source == "embed" and sub.topics == "models"
    assert [m.to for m in outbox()] == ["ann@example.org"]
    assert signups.by_source() == [(HOST, 1)]  # the origin the Referer gave (no path across sites)


def test_the_box_records_the_readers_zone_and_counts_an_unknown_one(embed_client):
    """Both ways the box sends (the framed form's POST, and embed.js's JSON to
    the API with the box's token) keep the zone the browser reported; a zone
    the tz database does not know is dropped and counted, never an error."""
    token = token_of(frame(embed_client))
    assert (
        post_box(embed_client, token, email="kat@example.org", timezone="Asia/Kathmandu").status_code == 200
    )
    assert post_box(embed_client, token, email="mars@example.org", timezone="Mars/Olympus").status_code == 200
    script = embed_client.get("/embed/box", headers={"Origin": HOST})
    sent = embed_client.post(
        "/api/v1/subscribers",
        json={
            "email": "sj@example.org",
            "topics": ["agents"],
            "form_token": TOKEN.search(script.json["html"]).group(1),
            "timezone": "America/St_Johns",
        },
        headers={"Origin": HOST},
    )
    assert sent.status_code == 202
    assert reader("kat@example.org").timezone == "Asia/Kathmandu"
    assert reader("sj@example.org").timezone == "America/St_Johns"
    assert reader("mars@example.org").timezone == "" and reader("mars@example.org").status == "pending"
    with session_scope() as session:
        fallbacks = service.zone_fallbacks(session)
    assert fallbacks == 1


def test_the_same_answer_whatever_the_address_is(embed_client):
    token = token_of(frame(embed_client))
    first = post_box(embed_client, token, email="new@example.org")
    post_box(embed_client, token, email="known@example.org")
    second = post_box(embed_client, token, email="known@example.org")

    def visible(response):
        return re.sub(
            r'(value|id|for|aria-labelledby|aria-describedby)="[^"]*"', "", response.get_data(as_text=True)
        )

    assert first.status_code == second.status_code == 200 and visible(first) == visible(second)


def test_only_sign_ups_that_mail_a_confirmation_are_counted(embed_client):
    token = token_of(frame(embed_client))
    post_box(embed_client, token, email="one@example.org")
    with session_scope() as session:
        session.exec(select(Subscriber).where(Subscriber.email == "one@example.org")).one().status = "active"
    post_box(embed_client, token, email="one@example.org")  # already subscribed: not a sign-up
    post_box(embed_client, token, email="two@example.org")
    assert signups.by_source() == [(HOST, 2)]


def test_the_honeypot_is_answered_alike_and_does_nothing(embed_client):
    token = token_of(frame(embed_client))
    response = post_box(embed_client, token, email="bot@example.org", website="http://spam.example")
    assert response.status_code == 200 and "confirmation link is on its way" in response.get_data(
        as_text=True
    )
    assert reader("bot@example.org") is None and signups.by_source() == []


@pytest.mark.parametrize(
    "token, message",
    [
        ("", "did not come from a page of ours"),
        ("forged.token.value", "did not come from a page of ours"),
        ("other", "did not come from a page of ours"),
    ],
)
def test_a_form_without_a_genuine_token_is_refused_clearly(embed_client, settings, token, message):
    if token == "other":
        token = form_tokens.make_form_token(settings, "front-page", {"o": HOST, "p": ""})
    response = post_box(embed_client, token)
    assert response.status_code == 400 and message in response.get_data(as_text=True)
    assert reader("ann@example.org") is None
    assert TOKEN.search(response.get_data(as_text=True))  # a fresh box to try again


def test_an_old_form_is_refused_and_offered_again(embed_client):
    token = token_of(frame(embed_client))
    clock.set(clock.now() + timedelta(seconds=form_tokens.MAX_AGE_SECONDS + 5))
    response = post_box(embed_client, token)
    assert response.status_code == 400 and "open too long" in response.get_data(as_text=True)
    assert reader("ann@example.org") is None
    assert post_box(embed_client, token_of(response)).status_code == 200  # the new token works


def test_form_tokens_carry_what_they_were_bound_to(settings):
    token = form_tokens.make_form_token(settings, "embed", {"o": HOST})
    assert form_tokens.check_form_token(settings, token, "embed") == {"o": HOST}
    with pytest.raises(TokenError):
        form_tokens.check_form_token(settings, token, "front-page")
    with pytest.raises(TokenError):
        form_tokens.check_form_token(settings, token[:-2] + "xx", "embed")
    with pytest.raises(TokenError):
        form_tokens.check_form_token(settings, None, "embed")
    clock.set(clock.now() + timedelta(hours=5))
    with pytest.raises(TokenExpired):
        form_tokens.check_form_token(settings, token, "embed")


def test_a_post_from_a_site_not_listed_is_refused(embed_client):
    token = token_of(frame(embed_client))
    response = post_box(embed_client, token, origin=OTHER)
    assert response.status_code == 403 and "not enabled for https://evil.example" in response.get_data(
        as_text=True
    )
    assert reader("ann@example.org") is None


def test_bad_addresses_are_shown_in_the_box(embed_client):
    token = token_of(frame(embed_client))
    for bad in ("not an address", "ann@example.org\r\nBcc: x@example.org", "x" * 400 + "@example.org"):
        response = post_box(embed_client, token, email=bad)
        html = response.get_data(as_text=True)
        assert response.status_code == 400 and 'aria-invalid="true"' in html and "gts-error" in html
        assert "Bcc: x@example.org\n" not in html
    assert outbox() == []


def test_the_rate_limit_holds_for_the_box(make_app, topics):
    client = make_app(embed_origins=(HOST,), subscribe_rate_limit="2/minute").test_client()
    token = token_of(frame(client))
    answers = [post_box(client, token, email=f"r{i}@example.org") for i in range(3)]
    assert [a.status_code for a in answers] == [200, 200, 429]
    over = answers[2]  # said in the box, which another site's frame may show
    assert (
        "Too many sign-ups from here" in over.get_data(as_text=True) and "X-Frame-Options" not in over.headers
    )
    assert "frame-ancestors 'self' https://blog.example.org" in over.headers["Content-Security-Policy"]


def test_hostile_options_are_escaped_or_dropped(embed_client):
    query = (
        "?headline=%3Cscript%3Ealert(1)%3C/script%3E&line=a%0D%0Ab&button=Go%22%3E&accent=red;}&theme=x"
        "&layout=compact&topics=hide&preset=models,nope"
    )
    html = frame(embed_client, query=query).get_data(as_text=True)
    assert "<script>alert" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "Go&#34;&gt;" in html and "data-accent" not in html and "gts-light gts-compact" in html
    assert 'name="topics" value="models"' in html and "nope" not in html and 'type="checkbox"' not in html


def test_options_parse_and_round_trip(topics):
    options = box.parse_options(
        {"theme": "dark", "accent": "#ffcc00", "preset": "agents", "headline": "  Get  it\n"}, topics
    )
    assert options.theme == "dark" and options.headline == "Get it" and options.on_accent == "#000000"
    assert box.parse_options({"accent": "#123"}, topics).on_accent == "#ffffff"
    assert box.parse_options(options.query(), topics) == options


def test_the_script_variant_gets_the_box_by_cors_and_sends_to_the_api(embed_client):
    response = embed_client.get("/embed/box?theme=dark&page=/posts/agents", headers={"Origin": HOST})
    assert response.status_code == 200 and response.headers["Access-Control-Allow-Origin"] == HOST
    token = TOKEN.search(response.json["html"]).group(1)
    preflight = embed_client.options(
        "/api/v1/subscribers",
        headers={
            "Origin": HOST,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type",
        },
    )
    assert preflight.status_code == 204 and preflight.headers["Access-Control-Allow-Origin"] == HOST
    sent = embed_client.post(
        "/api/v1/subscribers",
        json={
            "email": "bea@example.org",
            "topics": ["agents"],
            "form_token": token,
            "timezone": "Asia/Tokyo",
        },
        headers={"Origin": HOST},
    )
    assert sent.status_code == 202 and sent.headers["Access-Control-Allow-Origin"] == HOST
    assert reader("bea@example.org").consent_source == "embed"
    assert signups.by_source() == [(HOST + "/posts/agents", 1)]
    forged = embed_client.post(
        "/api/v1/subscribers", json={"email": "cy@example.org", "form_token": "x"}, headers={"Origin": HOST}
    )
    assert forged.status_code == 422 and forged.json["field"] == "form_token"
    assert reader("cy@example.org") is None


def test_the_script_variant_refuses_other_sites_readably(embed_client):
    response = embed_client.get("/embed/box", headers={"Origin": OTHER})
    assert response.status_code == 403 and response.headers["Access-Control-Allow-Origin"] == "*"
    assert "NEWSLETTER_EMBED_ORIGINS" in response.json["message"] and "html" not in response.json
    api = embed_client.post(
        "/api/v1/subscribers", json={"email": "dee@example.org"}, headers={"Origin": OTHER}
    )
    assert api.status_code == 403 and "not enabled for https://evil.example" in api.json["message"]
    assert reader("dee@example.org") is None


def test_the_script_and_stylesheet_load_on_other_sites(embed_client):
    script = embed_client.get("/embed.js")
    assert script.status_code == 200 and script.mimetype == "text/javascript"
    assert script.headers["Cross-Origin-Resource-Policy"] == "cross-origin"
    css = embed_client.get("/embed.css")
    assert css.status_code == 200 and css.mimetype == "text/css"
    body = script.get_data(as_text=True)
    assert "innerHTML" not in body and 'setAttribute("style"' not in body  # nothing a strict CSP blocks


def test_counts_keep_no_query_and_no_reader(topics):
    assert signups.source_of(HOST, "/posts/a?email=ann@example.org#x") == HOST + "/posts/a"
    assert signups.source_of(None, "/x") == signups.UNKNOWN
    signups.count_signup(HOST)
    signups.count_signup(HOST)
    signups.count_signup("https://other.example")
    assert signups.by_source() == [(HOST, 2), ("https://other.example", 1)]


def test_the_editor_page_builds_the_snippets_and_shows_counts(editor, topics):
    signups.count_signup(HOST + "/posts/a")
    response = editor.get(
        "/editor/embed?theme=dark&accent=%23c2410c&layout=compact&preset=agents&headline=Hi+%22%3E%3Cb%3E"
    )
    html = response.get_data(as_text=True)
    assert response.status_code == 200
    assert 'src="/embed?preset=agents&amp;theme=dark' in html  # the live box, with these options
    code = re.search(
        r'<pre tabindex="0" aria-labelledby="snippet-script"><code>(.*?)</code>', html, re.S
    ).group(1)
    snippet = unescape(code)
    assert snippet.startswith(
        '<div data-gts-box data-preset="agents" data-theme="dark" data-accent="#c2410c"'
    )
    assert 'data-headline="Hi &quot;&gt;&lt;b&gt;"' in snippet  # a pasted snippet cannot break out either
    assert "<b>" not in html.split("<main")[1]
    assert "script-src http://localhost; style-src http://localhost" in html  # the host CSP to add
    assert "https://blog.example.org/posts/a" in html  # sign-ups per source
    assert "NEWSLETTER_EMBED_ORIGINS" in html  # no site allowed yet: says how


def test_the_editor_page_needs_a_login(client, topics):
    response = client.get("/editor/embed")
    assert response.status_code in (302, 401) and "/editor/login" in response.headers.get(
        "Location", "/editor/login"
    )


def test_a_box_that_offers_topics_wants_one_ticked(embed_client):
    token = token_of(frame(embed_client))
    none = post_box(embed_client, token, topics=[])  # every box unticked
    assert none.status_code == 400 and "Choose at least one topic." in none.get_data(as_text=True)
    assert reader("ann@example.org") is None
    hidden_box = frame(embed_client, query="?topics=hide").get_data(as_text=True)
    assert '<input type="hidden" name="option-topics" value="hide">' in hidden_box
    assert 'name="topics"' not in hidden_box  # no preset: nothing to send, which means every topic
    hidden = post_box(embed_client, TOKEN.search(hidden_box).group(1), topics=[])
    assert hidden.status_code == 200 and reader("ann@example.org").topics == ""
    preset = frame(embed_client, query="?topics=hide&preset=tools").get_data(as_text=True)
    assert '<input type="hidden" name="topics" value="tools">' in preset
    api = embed_client.post(  # the JSON path too: the token says the box offered topics
        "/api/v1/subscribers",
        json={"email": "bo@example.org", "topics": [], "form_token": token},
        headers={"Origin": HOST},
    )
    assert api.status_code == 422 and api.json["field"] == "topics" and reader("bo@example.org") is None


def test_the_command_line_shows_the_counts(app, topics):
    signups.count_signup(HOST + "/posts/a")
    signups.count_signup(HOST + "/posts/a")
    runner = app.test_cli_runner()
    text = runner.invoke(args=["subscribers", "sources"])
    assert text.exit_code == 0 and re.search(r"https://blog\.example\.org/posts/a\s+2", text.output)
    data = json.loads(runner.invoke(args=["subscribers", "sources", "--days", "7", "--json"]).output)
    assert data == {"days": 7, "sources": [{"source": HOST + "/posts/a", "signups": 2}]}
    assert runner.invoke(args=["subscribers", "sources", "--days", "0"]).exit_code == 2
