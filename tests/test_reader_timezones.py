"""Readers' time zones (local-time delivery): every entry path records one,
an unknown or hostile one falls back to NEWSLETTER_TIMEZONE and is counted."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime

import pytest
from sqlmodel import select

from newsletter import zones
from newsletter.db import session_scope
from newsletter.models import Subscriber
from newsletter.readers import service
from newsletter.readers.csv_io import export_csv, import_csv
from tests.readers_fixtures import confirm, events, link, outbox, post_form, reader, subscribe

pytestmark = pytest.mark.usefixtures("running_sender")

HOSTILE = [
    "Europe/Nowhere",
    "../../../etc/passwd",
    "Europe/Berlin\r\nBcc: x@example.org",
    "Asia/Kathmandu\x00",
    "A" * 10_000,
    "<script>alert(1)</script>",
    "/usr/share/zoneinfo/UTC",
]


def _fallbacks() -> int:
    with session_scope() as session:
        return service.zone_fallbacks(session)


def test_zone_names_are_checked_against_the_tz_database():
    assert zones.clean_zone("Asia/Kathmandu") == ("Asia/Kathmandu", False)
    assert zones.clean_zone("  asia/kathmandu ") == ("Asia/Kathmandu", False)  # canonical spelling
    assert zones.clean_zone("America/St_Johns") == ("America/St_Johns", False)
    assert zones.clean_zone(None) == ("", False) and zones.clean_zone("") == ("", False)
    for raw in [*HOSTILE, 42, ["Europe/Berlin"], {"tz": "UTC"}]:
        assert zones.clean_zone(raw) == ("", True), raw


def test_wall_clock_in_every_kind_of_zone():
    # Monday 30 March 2026 08:00 in Berlin (CEST since the day before).
    slot = datetime(2026, 3, 30, 6, 0, tzinfo=UTC)
    moments = zones.local_moments(
        slot,
        "Europe/Berlin",
        ["Pacific/Kiritimati", "Asia/Kathmandu", "America/St_Johns", "Pacific/Pago_Pago", ""],
    )
    assert moments["Pacific/Kiritimati"] == datetime(2026, 3, 29, 18, 0, tzinfo=UTC)  # +14
    assert moments["Asia/Kathmandu"] == datetime(2026, 3, 30, 2, 15, tzinfo=UTC)  # +05:45
    assert moments["America/St_Johns"] == datetime(2026, 3, 30, 10, 30, tzinfo=UTC)  # −02:30 (NDT)
    assert moments["Pacific/Pago_Pago"] == datetime(2026, 3, 30, 19, 0, tzinfo=UTC)  # −11
    assert moments[""] == slot  # no zone: the newsletter's own
    # A wall time in a DST gap is the moment the clocks jumped past it; a repeated one is the first.
    gap = zones.wall_moment(datetime(2026, 3, 29, 2, 30), "Europe/Berlin")
    assert gap == datetime(2026, 3, 29, 1, 30, tzinfo=UTC)  # 03:30 CEST
    twice = zones.wall_moment(datetime(2026, 10, 25, 2, 30), "Europe/Berlin")
    assert twice == datetime(2026, 10, 25, 0, 30, tzinfo=UTC)  # 02:30 CEST, the first


def test_form_records_the_browsers_zone(client, topics):
    page = client.get("/").get_data(as_text=True)
    assert 'name="timezone"' in page and "data-timezone" in page and "/static/timezone.js" in page
    assert (
        subscribe(client, "kat@example.org", topics=["agents"], timezone="Asia/Kathmandu").status_code == 302
    )
    assert reader("kat@example.org").timezone == "Asia/Kathmandu"
    assert (
        subscribe(client, "nojs@example.org", topics=["agents"]).status_code == 302
    )  # no script: no zone, no fallback
    assert reader("nojs@example.org").timezone == "" and _fallbacks() == 0


def test_api_takes_a_timezone_field_and_counts_unknown_ones(client, topics):
    ok = client.post("/api/v1/subscribers", json={"email": "sj@example.org", "timezone": "America/St_Johns"})
    assert ok.status_code == 202 and reader("sj@example.org").timezone == "America/St_Johns"
    for n, raw in enumerate([*HOSTILE, 12, ["UTC"]]):
        response = client.post("/api/v1/subscribers", json={"email": f"x{n}@example.org", "timezone": raw})
        assert response.status_code == 202, raw  # never an error: the reader is kept, in our zone
        assert reader(f"x{n}@example.org").timezone == ""
    assert _fallbacks() == len(HOSTILE) + 2
    assert all("passwd" not in e.detail and "script" not in e.detail for e in events("timezone_fallback"))
    stats = client.get("/api/v1/stats", headers={"Authorization": "Bearer test-token"})
    # the dashboard's figures: none of these pending readers is active yet, so none is "without"
    assert stats.status_code == 200 and stats.json["timezones"] == {
        "without": 0,
        "unknown_given": _fallbacks(),
    }
    spec = client.get("/api/v1/openapi.json").json
    assert "timezone" in spec["components"]["schemas"]["SubscribeRequest"]["properties"]


def test_preferences_page_changes_the_zone(client, topics):
    subscribe(client, "pp@example.org", topics=["agents"], timezone="Europe/Berlin")
    confirm(client, link(outbox()[0], "confirm"))
    prefs = link(outbox()[1], "preferences")
    page = client.get(prefs).get_data(as_text=True)
    assert '<option selected value="Europe/Berlin">' in page and "Pacific/Pago_Pago" in page
    saved = post_form(
        client, prefs, {"name": "", "topics": ["agents"], "timezone": "Pacific/Pago_Pago"}, prefs
    )
    assert saved.status_code == 302 and reader("pp@example.org").timezone == "Pacific/Pago_Pago"
    bad = post_form(client, prefs, {"name": "", "topics": ["agents"], "timezone": "Mars/Olympus"}, prefs)
    assert bad.status_code == 400 and "Unknown time zone" in bad.get_data(as_text=True)
    assert reader("pp@example.org").timezone == "Pacific/Pago_Pago"  # nothing lost
    back = post_form(client, prefs, {"name": "", "topics": ["agents"], "timezone": ""}, prefs)
    assert back.status_code == 302 and reader("pp@example.org").timezone == ""  # the newsletter's time
    kept = post_form(
        client, prefs, {"name": "Pp", "topics": ["agents"]}, prefs
    )  # an old page without the field
    assert kept.status_code == 302 and reader("pp@example.org").timezone == ""


def test_import_may_carry_a_timezone_column(settings, topics):
    data = (
        b"email,name,Time Zone\n"
        b"ki@example.org,Ki,Pacific/Kiritimati\n"
        b"bad@example.org,Bad,Atlantis/Capital\n"
        b"none@example.org,None,\n"
    )
    report = import_csv(settings, io.BytesIO(data))
    assert report.imported == 3 and report.timezone_fallbacks == 1
    assert reader("ki@example.org").timezone == "Pacific/Kiritimati"
    assert reader("bad@example.org").timezone == reader("none@example.org").timezone == ""
    assert _fallbacks() == 1
    # A re-import fills a missing zone but never replaces one the reader has.
    again = b"email,timezone\nnone@example.org,Asia/Kathmandu\nki@example.org,Europe/Berlin\n"
    import_csv(settings, io.BytesIO(again))
    assert reader("none@example.org").timezone == "Asia/Kathmandu"
    assert reader("ki@example.org").timezone == "Pacific/Kiritimati"


def test_a_zone_asked_for_an_existing_address_waits_for_its_confirmation(client, topics):
    subscribe(client, "twice@example.org", topics=["agents"])
    subscribe(client, "twice@example.org", topics=["agents"], timezone="Pacific/Kiritimati")
    assert reader("twice@example.org").timezone == ""  # a stranger cannot change it
    first, second = outbox()
    confirm(client, link(second, "confirm"))
    assert reader("twice@example.org").timezone == "Pacific/Kiritimati"  # the address's owner agreed


def test_a_mailchimp_export_carries_its_timezone_column(settings, topics):
    data = (
        b"Email Address,First Name,Last Name,MEMBER_RATING,OPTIN_TIME,TIMEZONE,LEID\n"
        b"ny@example.org,Ny,C,4,2024-01-05 10:00:00,America/New_York,101\n"
        b"old@example.org,Old,C,4,2024-01-05 10:00:00,GMT+5 Made Up,102\n"
    )
    report = import_csv(settings, io.BytesIO(data), name="subscribed_members_export.csv")
    assert report.files[0].layout == "Mailchimp" and report.imported == 2
    assert reader("ny@example.org").timezone == "America/New_York"
    assert reader("old@example.org").timezone == "" and report.timezone_fallbacks == 1 == _fallbacks()


def test_the_export_carries_the_zone_so_moving_the_list_keeps_it(settings, topics):
    """`subscribers export` (and the editor's and the API's CSV) writes the
    zone; importing that file into an empty list gives every reader theirs back."""
    for address, zone in (("ki@example.org", "Pacific/Kiritimati"), ("sj@example.org", "America/St_Johns"),
                          ("home@example.org", None)):  # fmt: skip
        service.subscribe(settings, email=address, timezone=zone, source="editor", double_opt_in=False)
    out = io.StringIO()
    with session_scope() as session:
        export_csv(session, out)
        for sub in session.exec(select(Subscriber)).all():
            session.delete(sub)
    header, *rows = out.getvalue().splitlines()
    assert header.split(",")[-1] == "timezone"
    report = import_csv(settings, io.BytesIO(out.getvalue().encode()), name="export.csv")
    assert report.files[0].layout == "GET THE SIGNAL" and report.imported == 3
    assert reader("ki@example.org").timezone == "Pacific/Kiritimati"
    assert reader("sj@example.org").timezone == "America/St_Johns"
    assert reader("home@example.org").timezone == "" and report.timezone_fallbacks == 0


def test_the_readers_own_data_download_includes_the_zone(client, topics):
    subscribe(client, "dl@example.org", topics=["agents"], timezone="Asia/Kathmandu")
    confirm(client, link(outbox()[0], "confirm"))
    prefs = link(outbox()[1], "preferences")
    data = json.loads(post_form(client, prefs + "/export", {}, token_from=prefs).get_data(as_text=True))
    assert data["email"] == "dl@example.org" and data["timezone"] == "Asia/Kathmandu"


def test_the_api_changes_a_readers_zone_and_refuses_an_unknown_one(client, topics):
    token = {"Authorization": "Bearer test-token"}
    client.post("/api/v1/subscribers", json={"email": "mv@example.org", "timezone": "Europe/Berlin"})
    sid = reader("mv@example.org").id
    moved = client.patch(f"/api/v1/subscribers/{sid}", json={"timezone": "pacific/pago_pago"}, headers=token)
    assert moved.status_code == 200 and moved.json["timezone"] == "Pacific/Pago_Pago"  # canonical spelling
    bad = client.patch(f"/api/v1/subscribers/{sid}", json={"timezone": "Mars/Olympus"}, headers=token)
    assert bad.status_code == 422 and bad.json["field"] == "timezone"
    assert reader("mv@example.org").timezone == "Pacific/Pago_Pago"  # nothing lost
    named = client.patch(f"/api/v1/subscribers/{sid}", json={"name": "Mo"}, headers=token)
    assert named.json["timezone"] == "Pacific/Pago_Pago"  # a change of something else keeps it
    home = client.patch(f"/api/v1/subscribers/{sid}", json={"timezone": ""}, headers=token)
    assert home.status_code == 200 and reader("mv@example.org").timezone == ""  # the newsletter's own
    assert _fallbacks() == 0  # an editor's or agent's mistake is refused, not a reader's guess counted
