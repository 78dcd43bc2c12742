"""Lists migrated from other services: the exports of Mailchimp, Substack,
Ghost, listmonk, Buttondown, Kit, beehiiv, MailerLite and our own, in the
layouts they document (tests/exports/), recognised by their headers.

Readers who had unsubscribed, bounced, complained or were blocklisted there
come in suppressed, never active, and the report counts them by reason;
names, tags and consent dates come across; a dry run writes nothing and
reports exactly what the import then does; an import never overrides a
reader's own choices unless asked (issue 19, item 8)."""

from __future__ import annotations

import io
import zipfile
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import func
from sqlmodel import select

from newsletter.db import session_scope
from newsletter.models import Event, Subscriber, Suppression
from newsletter.readers import service
from newsletter.readers.csv_io import export_csv, import_csv
from newsletter.suppression import suppress, suppression_reason
from tests.readers_fixtures import outbox, reader

EXPORTS = Path(__file__).parent / "exports"
MAILCHIMP = sorted((EXPORTS / "mailchimp").glob("*.csv"))


def run(settings, path_or_bytes, name: str = "file.csv", **kwargs):
    data = path_or_bytes.read_bytes() if isinstance(path_or_bytes, Path) else path_or_bytes
    if isinstance(path_or_bytes, Path):
        name = str(path_or_bytes.relative_to(EXPORTS))
    return import_csv(settings, io.BytesIO(data), name=name, **kwargs)


def statuses() -> dict[str, str]:
    with session_scope() as session:
        return dict(session.exec(select(Subscriber.email, Subscriber.status)).all())


def suppressed(address: str) -> str | None:
    with session_scope() as session:
        return suppression_reason(session, address)


def table_sizes() -> tuple[int, int, int]:
    with session_scope() as session:
        return tuple(
            session.exec(select(func.count()).select_from(model)).one()
            for model in (Subscriber, Event, Suppression)
        )


# (file, layout, {address: status stored, or None when not imported}, hard opt-outs, counts)
SERVICES = [
    (
        "mailchimp/subscribed_email_audience_export_6f1c2a.csv", "Mailchimp",
        {"ann@example.org": "active", "zoe@example.org": "active", "bo@example.org": "active"}, {},
        {"added": 3},
    ),
    (
        "mailchimp/unsubscribed_email_audience_export_6f1c2a.csv", "Mailchimp",
        {"gone@example.org": "unsubscribed", "spam@example.org": "complained"}, {"spam@example.org": "complaint"},
        {"unsubscribed": 1, "complained": 1},
    ),
    (
        "mailchimp/cleaned_email_audience_export_6f1c2a.csv", "Mailchimp",
        {"dead@example.org": "bounced"}, {"dead@example.org": "hard_bounce"}, {"bounced": 1},
    ),
    (
        "mailchimp/nonsubscribed_email_audience_export_6f1c2a.csv", "Mailchimp",
        {"shopper@example.org": None}, {}, {"unconfirmed": 1},
    ),
    (
        "substack/email_list.the-signal.csv", "Substack",
        {"ann@example.org": "active", "paid@example.org": "active", "off@example.org": "unsubscribed"}, {},
        {"added": 2, "unsubscribed": 1},
    ),
    (
        "ghost/members.csv", "Ghost",
        {"ann@example.org": "active", "ivan@example.org": "active", "quiet@example.org": "unsubscribed"}, {},
        {"added": 2, "unsubscribed": 1},
    ),
    (
        "listmonk/subscribers.csv", "listmonk",
        {"ann@example.org": "active", "off@example.org": "unsubscribed", "block@example.org": "unsubscribed"},
        {"block@example.org": "blocklisted"}, {"added": 1, "unsubscribed": 1, "blocklisted": 1},
    ),
    (
        "buttondown/subscribers.csv", "Buttondown",
        {"ann@example.org": "active", "paid@example.org": "active", "new@example.org": None,
         "gone@example.org": "unsubscribed", "bot@example.org": "unsubscribed", "removed@example.org": "unsubscribed"},
        {"bot@example.org": "blocklisted"}, {"added": 2, "unconfirmed": 1, "unsubscribed": 2, "blocklisted": 1},
    ),
    (
        "kit/subscribers.csv", "Kit (ConvertKit)",
        {"ann@example.org": "active", "cold@example.org": "active", "unconfirmed@example.org": None,
         "cancel@example.org": "unsubscribed", "bounce@example.org": "bounced", "complain@example.org": "complained"},
        {"bounce@example.org": "hard_bounce", "complain@example.org": "complaint"},
        {"added": 2, "unconfirmed": 1, "unsubscribed": 1, "bounced": 1, "complained": 1},
    ),
    (
        "beehiiv/subscribers.csv", "beehiiv",
        {"ann@example.org": "active", "gone@example.org": "unsubscribed", "wait@example.org": None,
         "bad@example.org": "bounced", "late@example.org": "unsubscribed"},
        {"bad@example.org": "hard_bounce"}, {"added": 1, "unsubscribed": 2, "unconfirmed": 1, "bounced": 1},
    ),
    (
        "mailerlite/subscribers.csv", "MailerLite",
        {"ann@example.org": "active", "gone@example.org": "unsubscribed", "wait@example.org": None,
         "bounce@example.org": "bounced", "junk@example.org": "complained"},
        {"bounce@example.org": "hard_bounce", "junk@example.org": "complaint"},
        {"added": 1, "unsubscribed": 1, "unconfirmed": 1, "bounced": 1, "complained": 1},
    ),
]  # fmt: skip


@pytest.mark.parametrize("file, layout, expected, hard, counts", SERVICES, ids=[s[0] for s in SERVICES])
def test_each_services_export_is_recognised_and_opt_outs_are_never_active(
    settings, topics, file, layout, expected, hard, counts
):
    report = run(settings, EXPORTS / file)
    assert [f.layout for f in report.files] == [layout]
    assert report.rejected == []
    assert {key: n for key, _, n in report.summary if n} == counts
    stored = statuses()
    assert {address: stored.get(address) for address in expected} == expected
    for address in expected:
        assert suppressed(address) == hard.get(address)
    assert outbox() == []  # an import mails nobody (without --pending)


def test_names_tags_and_consent_dates_come_across(settings, topics):
    run(settings, EXPORTS / "mailchimp/subscribed_email_audience_export_6f1c2a.csv")
    ann, zoe, bo = reader("ann@example.org"), reader("zoe@example.org"), reader("bo@example.org")
    assert (ann.name, ann.topics) == ("Ann Lovelace", "agents")  # "VIP" is no section: ignored
    assert (zoe.name, zoe.topics) == ("Zoë Müller-Lüdenscheidt", "tools")
    assert (bo.name, bo.topics) == ("", "")
    assert ann.consent_source == "import" and ann.consent_at == datetime(2020, 1, 5, 10, 2, 13, tzinfo=UTC)
    assert "Mailchimp on 2020-01-05" in ann.consent_text
    run(settings, EXPORTS / "ghost/members.csv")  # Ghost: labels; names in another script
    assert reader("ivan@example.org").name == "Иван Петров" and reader("ivan@example.org").topics == "tools"
    run(settings, EXPORTS / "listmonk/subscribers.csv")  # Go's time format
    assert reader("block@example.org").consent_at == datetime(2024, 1, 4, 10, 0, tzinfo=UTC)
    run(settings, EXPORTS / "buttondown/subscribers.csv")  # names from metadata, tags as a list
    assert reader("paid@example.org").consent_at == datetime(2023, 5, 2, 10, 0, tzinfo=UTC)
    run(settings, EXPORTS / "beehiiv/subscribers.csv")
    assert reader("late@example.org").unsubscribed_at == datetime(2024, 3, 13, 11, 33, 53, tzinfo=UTC)
    report = run(settings, EXPORTS / "kit/subscribers.csv")
    assert reader("cold@example.org").topics == "tools" and reader("cold@example.org").name == "Benito"
    assert report.unmatched_tags["VIP"] == 1


def test_the_history_says_why_a_reader_is_not_active(settings, topics):
    run(settings, EXPORTS / "mailchimp/unsubscribed_email_audience_export_6f1c2a.csv")
    gone = reader("gone@example.org")
    with session_scope() as session:
        history = session.exec(select(Event.kind, Event.detail).where(Event.subscriber_id == gone.id)).all()
    assert history == [("import", "imported not active: unsubscribed at Mailchimp on 2023-06-06")]
    assert gone.unsubscribed_at == datetime(2023, 6, 6, 12, 56, 15, tzinfo=UTC)


def test_mailchimps_zip_is_read_file_by_file(settings, topics):
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as out:
        for path in MAILCHIMP:
            out.writestr(f"members_export_6f1c2a/{path.name}", path.read_bytes())
        out.writestr("__MACOSX/._junk.csv", b"\x00\x05\x16\x07")
    report = run(settings, archive.getvalue(), name="members_export_6f1c2a.zip")
    assert len(report.files) == 4 and {f.layout for f in report.files} == {"Mailchimp"}
    assert {key: n for key, _, n in report.summary if n} == {
        "added": 3, "unsubscribed": 1, "complained": 1, "bounced": 1, "unconfirmed": 1,
    }  # fmt: skip
    assert statuses()["dead@example.org"] == "bounced" and "shopper@example.org" not in statuses()


def test_our_own_export_reimports_with_its_statuses(settings, topics):
    for address, status in (("a@example.org", "active"), ("u@example.org", "unsubscribed"),
                            ("b@example.org", "bounced"), ("c@example.org", "complained"), ("p@example.org", "pending")):  # fmt: skip
        service.subscribe(settings, email=address, name="X", source="editor", double_opt_in=False)
        with session_scope() as session:
            sub = session.exec(select(Subscriber).where(Subscriber.email == address)).one()
            sub.status = status
    out = io.StringIO()
    with session_scope() as session:
        export_csv(session, out)
        for sub in session.exec(select(Subscriber)).all():
            session.delete(sub)
    report = run(settings, out.getvalue().encode(), name="export.csv")
    assert report.files[0].layout == "GET THE SIGNAL"
    assert statuses() == {
        "a@example.org": "active",
        "u@example.org": "unsubscribed",
        "b@example.org": "bounced",
        "c@example.org": "complained",
    }
    assert report.counts["unconfirmed"] == 1  # pending there: not imported without --pending


def test_unknown_status_values_reject_the_line_never_activate_it(settings, topics):
    report = run(settings, b"email,status\nx@example.org,paused-forever\ny@example.org,active\n")
    assert [line for line, _ in report.rejected] == [2] and "unknown status" in report.rejected[0][1]
    assert statuses() == {"y@example.org": "active"}


def test_named_source_is_checked_against_the_header(settings, topics):
    from newsletter.readers.csv_io import ImportFormatError

    with pytest.raises(ImportFormatError, match="not a Mailchimp export"):
        run(settings, EXPORTS / "ghost/members.csv", from_service="mailchimp")
    report = run(settings, EXPORTS / "substack/email_list.the-signal.csv", from_service="csv")
    assert report.files[0].layout == "CSV"  # told: a plain CSV (email column only)


# --- readers we already have ------------------------------------------------------------


def test_an_opt_out_there_makes_an_active_reader_here_not_active_unless_they_confirmed_since(
    settings, topics
):
    service.subscribe(settings, email="gone@example.org", name="G", source="editor", double_opt_in=False)
    service.subscribe(settings, email="spam@example.org", name="S", source="editor", double_opt_in=False)
    with session_scope() as session:  # spam@ confirmed here after complaining there (2023-07-01)
        sub = session.exec(select(Subscriber).where(Subscriber.email == "spam@example.org")).one()
        sub.confirmed_at = datetime(2024, 1, 1, tzinfo=UTC)
    report = run(settings, EXPORTS / "mailchimp/unsubscribed_email_audience_export_6f1c2a.csv")
    assert statuses() == {"gone@example.org": "unsubscribed", "spam@example.org": "active"}
    assert report.counts["unsubscribed"] == 1 and report.counts["kept"] == 1
    changes = {address: what for _, address, what in report.changes}
    assert "status: active → unsubscribed" in changes["gone@example.org"]
    assert "confirmed here on 2024-01-01" in changes["spam@example.org"]


def test_erased_or_unsubscribed_readers_are_never_brought_back_or_stored_again(settings, topics):
    with session_scope() as session:
        suppress(session, "gone@example.org", "erased")
    report = run(settings, EXPORTS / "mailchimp/unsubscribed_email_audience_export_6f1c2a.csv")
    assert "gone@example.org" not in statuses()  # erased: only the hash stays, nothing is stored again
    assert report.counts["unchanged"] == 1
    again = run(settings, b"email,name\nspam@example.org,S\n")
    assert again.counts["suppressed"] == 1 and statuses()["spam@example.org"] == "complained"


def own_reader(settings, address="ann@example.org", name="Ann", topics="agents"):
    """A reader who chose their name and topics themselves (confirmed a subscription)."""
    service.subscribe(settings, email=address, name=name, topics=topics, source="form", consent_text="yes")
    with session_scope() as session:
        sub = session.exec(select(Subscriber).where(Subscriber.email == address)).one()
        sub.status, sub.confirmed_at = "active", datetime(2025, 1, 1, tzinfo=UTC)
        return sub.id


def test_an_import_never_overrides_a_readers_own_choices_by_default(settings, topics):
    sid = own_reader(settings)
    service.subscribe(settings, email="bo@example.org", name="Bo", source="editor", double_opt_in=False)
    report = run(
        settings, b"email,name,topics\nann@example.org,Ann Smith,tools\nbo@example.org,Robert,models\n"
    )
    ann, bo = reader("ann@example.org"), reader("bo@example.org")
    assert (ann.name, ann.topics) == ("Ann", "agents")  # her own choices, kept
    assert (bo.name, bo.topics) == ("Robert", "models")  # made by an operator: the file may change it
    assert (report.counts["kept"], report.counts["updated"]) == (1, 1)
    changes = {address: what for _, address, what in report.changes}
    assert (
        changes["ann@example.org"]
        == "kept the reader's name 'Ann' (file: 'Ann Smith'); kept the reader's topics agents (file: tools)"
    )
    assert changes["bo@example.org"] == "name: 'Bo' → 'Robert'; topics: (all) → models"
    with session_scope() as session:
        assert (
            session.exec(select(Event).where(Event.subscriber_id == sid, Event.kind == "import")).all() == []
        )
        bo_history = session.exec(
            select(Event.detail).where(Event.subscriber_id == bo.id, Event.kind == "import")
        ).all()
    assert bo_history == ["name: 'Bo' → 'Robert'; topics: (all) → models"]


def test_preferences_changed_by_the_reader_count_as_their_own(settings, topics):
    service.subscribe(settings, email="cy@example.org", name="Cy", source="editor", double_opt_in=False)
    with session_scope() as session:
        sid = session.exec(select(Subscriber.id).where(Subscriber.email == "cy@example.org")).one()
    service.update_preferences(settings, sid, name="Cyrus", topics=["tools"])
    run(settings, b"email,name,topics\ncy@example.org,Cy,agents\n")
    assert (reader("cy@example.org").name, reader("cy@example.org").topics) == ("Cyrus", "tools")


def test_update_overrides_and_the_history_records_it(settings, topics):
    sid = own_reader(settings)
    report = run(settings, b"email,name,topics\nann@example.org,Ann Smith,tools\n", update=True)
    assert (reader("ann@example.org").name, reader("ann@example.org").topics) == ("Ann Smith", "tools")
    assert report.counts["updated"] == 1
    with session_scope() as session:
        history = session.exec(
            select(Event.detail).where(Event.subscriber_id == sid, Event.kind == "import")
        ).all()
    assert history == ["name: 'Ann' → 'Ann Smith'; topics: agents → tools"]


# --- dry runs -------------------------------------------------------------------------------


@pytest.mark.parametrize("file", [s[0] for s in SERVICES])
def test_a_dry_run_writes_nothing_and_says_what_the_import_does(settings, topics, file):
    own_reader(settings)
    before = table_sizes()
    preview = run(settings, EXPORTS / file, dry_run=True)
    assert table_sizes() == before and preview.dry_run
    done = run(settings, EXPORTS / file)
    assert preview.summary == done.summary and preview.changes == done.changes
    assert preview.rejected == done.rejected


def test_a_dry_run_sends_no_confirmation(settings, topics):
    preview = run(settings, b"email\nnew@example.org\n", dry_run=True, pending=True)
    assert preview.imported == 1 and outbox() == [] and statuses() == {}


def test_a_form_reader_activated_by_an_import_keeps_their_choices(settings, topics):
    service.subscribe(
        settings, email="fay@example.org", name="Fay", topics=["tools"], source="form", consent_text="y"
    )
    first = run(settings, b"email,name,topics\nfay@example.org,Faye,agents\n")
    fay = reader("fay@example.org")
    assert (fay.status, fay.name, fay.topics) == ("active", "Fay", "tools")
    assert (
        "status: pending → active" in first.changes[0][2]
        and "kept the reader's name 'Fay'" in first.changes[0][2]
    )
    second = run(settings, b"email,name,topics\nfay@example.org,Faye,agents\n")
    assert second.counts["kept"] == 1 and reader("fay@example.org").name == "Fay"
