"""CSV import and export of readers: streamed, hostile lines reported by number, valid lines kept."""

from __future__ import annotations

import csv
import io

import pytest
from sqlmodel import select

from newsletter.db import session_scope
from newsletter.models import Subscriber
from newsletter.readers import service
from newsletter.readers.csv_io import export_csv, import_csv
from newsletter.suppression import suppress
from tests.readers_fixtures import confirm, link, outbox, reader

pytestmark = pytest.mark.usefixtures("running_sender")  # the mail sender runs, as in `serve`


def run(settings, text: str | bytes, **kwargs):
    data = text.encode("utf-8") if isinstance(text, str) else text
    return import_csv(settings, io.BytesIO(data), **kwargs)


def test_import_makes_active_readers_with_import_consent(settings, topics):
    report = run(
        settings,
        "email,name,topics\nAnn@Example.org,Ann,agents;tools\nbo@example.org,,\ncy@example.org,Cy,models|agents\n",
    )
    assert (report.imported, report.updated, report.rejected) == (3, 0, [])
    ann = reader("ann@example.org")
    assert ann.status == "active" and ann.name == "Ann" and ann.topics == "agents,tools"
    assert ann.consent_source == "import" and "before import" in ann.consent_text
    assert reader("bo@example.org").topics == "" and reader("cy@example.org").topics == "agents,models"
    assert outbox() == []  # active imports get no mail


def test_header_may_be_in_any_order_with_bom_and_extra_columns(settings, topics):
    report = run(settings, "\ufeffName,EMAIL,source\nDee,dee@example.org,crm\n")
    assert report.imported == 1 and reader("dee@example.org").name == "Dee"


def test_hostile_lines_are_reported_with_line_numbers_and_valid_ones_kept(settings, topics):
    lines = [
        b"email,name,topics",  # 1
        b"good1@example.org,Good One,agents",  # 2
        b"not-an-address,Bad,",  # 3
        b'evil@example.org,"Eve\r\nBcc: victim@example.org",',  # 4-5 (quoted line break)
        b'good2@example.org,=HYPERLINK("http://evil"),',  # 6: stored as text, escaped on export
        b"unknown@example.org,U,secrets",  # 7
        b"bytes@example.org,\xff\xfe broken,",  # 8
        b'x@example.org,"' + b"y" * 200_000 + b'",',  # 9
        b"many@example.org,M,agents,extra,columns",  # 10
        b"",  # 11 blank
        b"ann@example.org%0d%0aBcc:x@example.org,A,",  # 12
        b"nul@example.org,N\x00ul,",  # 13
        b"good3@example.org,,tools",  # 14
        "zo\u00eb@example.org,Zo\u00eb M\u00fcller,".encode(),  # 15: the file is UTF-8, line 8 is broken
    ]
    report = run(settings, b"\n".join(lines) + b"\n")
    rejected = dict(report.rejected)
    assert report.imported == 4, report.rejected
    assert sorted(rejected) == [3, 4, 7, 8, 9, 10, 12, 13]
    assert rejected[3].startswith("email:") and "line breaks" in rejected[4]
    assert "Unknown topic" in rejected[7] and "UTF-8" in rejected[8] and "CSV" in rejected[9]
    assert "columns" in rejected[10]
    assert reader("good3@example.org").topics == "tools"


def test_suppressed_refused_and_unsubscribed_never_resurrected(settings, topics):
    with session_scope() as session:
        suppress(session, "erased@example.org", "erased")
    run(settings, "email\nleft@example.org\n")
    with session_scope() as session:
        sub = session.exec(select(Subscriber).where(Subscriber.email == "left@example.org")).one()
        service.unsubscribe(session, sub, "page")
    report = run(settings, "email,name\nerased@example.org,E\nleft@example.org,L\n")
    assert report.imported == 0 and [n for n, _ in report.rejected] == [2, 3]
    assert "suppression list" in report.rejected[0][1] and "unsubscribed" in report.rejected[1][1]
    assert reader("erased@example.org") is None and reader("left@example.org").status == "unsubscribed"
    pending = run(settings, "email\nleft@example.org\n", pending=True)
    assert pending.rejected and outbox() == []  # no confirmation mail to someone who left


def test_reimport_updates_names_and_topics(settings, topics):
    run(settings, "email,name,topics\nann@example.org,Ann,agents\nbo@example.org,Bo,models\n")
    report = run(
        settings,
        "email,name,topics\nANN@example.org,Ann Smith,tools\nbo@example.org,,\nann@example.org,Ann S.,\n",
    )
    assert (report.imported, report.updated, report.rejected) == (0, 2, [])
    assert report.counts["unchanged"] == 1  # bo: empty values change nothing
    assert reader("ann@example.org").name == "Ann S." and reader("ann@example.org").topics == "tools"
    assert (
        reader("bo@example.org").name == "Bo" and reader("bo@example.org").topics == "models"
    )  # empty keeps


def test_pending_import_sends_confirmations_that_work(app, settings, topics):
    report = run(settings, "email,name\nfay@example.org,Fay\ngus@example.org,Gus\n", pending=True)
    assert report.imported == 2 and reader("fay@example.org").status == "pending"
    assert sorted(m.to for m in outbox()) == ["fay@example.org", "gus@example.org"]
    client = app.test_client()
    assert confirm(client, link(outbox()[0], "confirm")).status_code == 200
    assert reader(outbox()[0].to).status == "active"


def test_missing_email_column_or_empty_file_is_a_clear_error(settings, topics):
    import pytest

    from newsletter.readers.csv_io import ImportFormatError

    with pytest.raises(ImportFormatError, match="email"):
        run(settings, "name,topics\nAnn,agents\n")
    with pytest.raises(ImportFormatError, match="empty"):
        run(settings, "")


def test_export_streams_csv_with_status_and_escapes_formulas(settings, topics):
    run(
        settings,
        "email,name,topics\nann@example.org,Ann,agents;tools\nbo@example.org,\"=cmd|' /C calc'!A0\",\n",
    )
    with session_scope() as session:
        service.unsubscribe(
            session,
            session.exec(select(Subscriber).where(Subscriber.email == "bo@example.org")).one(),
            "page",
        )
    out = io.StringIO()
    with session_scope() as session:
        assert export_csv(session, out) == 2
    rows = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert [r["email"] for r in rows] == ["ann@example.org", "bo@example.org"]
    assert [r["status"] for r in rows] == ["active", "unsubscribed"]
    assert rows[0]["topics"] == "agents;tools" and rows[1]["name"].startswith("'=")
    assert rows[0]["consent_source"] == "import"


def test_cli_import_and_export(app, settings, topics, tmp_path):
    path = tmp_path / "readers.csv"
    path.write_text("email,name,topics\nann@example.org,Ann,agents\nbroken,,\n")
    runner = app.test_cli_runner()
    result = runner.invoke(args=["subscribers", "import", str(path)], catch_exceptions=False)
    assert result.exit_code == 1  # valid lines kept, the bad one reported
    assert "imported 1" in result.output and f"{path}:3: email:" in result.output
    exported = runner.invoke(args=["subscribers", "export"], catch_exceptions=False)
    assert exported.exit_code == 0
    assert exported.output.splitlines()[0].startswith("email,name,status,topics")
    assert "ann@example.org,Ann,active,agents" in exported.output
    only_active = runner.invoke(args=["subscribers", "export", "--status", "unsubscribed"])
    assert only_active.output.splitlines()[1:] == []
    bad = tmp_path / "bad.csv"
    bad.write_text("name\nAnn\n")
    assert runner.invoke(args=["subscribers", "import", str(bad)]).exit_code == 2
    assert runner.invoke(args=["subscribers", "import", str(tmp_path / "missing.csv")]).exit_code == 1
