"""Excel's and other tools' shapes of the same list: UTF-8 with and without
BOM, UTF-16 (with and without BOM, Excel's tab-separated "Unicode Text"),
Windows-1252 detected or named, other code pages, semicolon and tab
delimiters, CR-only line ends, quoted separators and line breaks; and files
that cannot be read at all, which get a sentence, never a traceback."""

from __future__ import annotations

import codecs
import io
import zipfile

import pytest
from sqlmodel import select

from newsletter.db import session_scope
from newsletter.models import Subscriber
from newsletter.readers.csv_io import ImportFormatError, import_csv

ROWS = [
    ("Email Address", "First Name", "Last Name"),
    ("zoe@example.org", "Zoë", "Müller"),
    ("jose@example.org", "José", "Núñez; Jr."),  # a separator inside a quoted field
    ("nan@example.org", "Ann “Nan”", "O’Neil – €5"),
    ("bo@example.org", "", ""),
]
EXPECTED = {
    "zoe@example.org": "Zoë Müller",
    "jose@example.org": "José Núñez; Jr.",
    "nan@example.org": "Ann “Nan” O’Neil – €5",
    "bo@example.org": "",
}


def table(rows=ROWS, delimiter=",", newline="\r\n") -> str:
    out = io.StringIO()
    import csv

    csv.writer(out, delimiter=delimiter, lineterminator=newline, quoting=csv.QUOTE_MINIMAL).writerows(rows)
    return out.getvalue()


def names() -> dict[str, str]:
    with session_scope() as session:
        return dict(session.exec(select(Subscriber.email, Subscriber.name)).all())


SHAPES = {
    "utf-8": (table().encode("utf-8"), None, "UTF-8 (detected)", "comma"),
    "utf-8 with BOM (Excel: CSV UTF-8)": (codecs.BOM_UTF8 + table().encode(), None, "UTF-8 (with a byte-order mark)", "comma"),
    "utf-16 tab (Excel: Unicode Text)": (table(delimiter="\t").encode("utf-16"), None, "UTF-16 (with a byte-order mark)", "tab"),
    "utf-16-be with BOM": (codecs.BOM_UTF16_BE + table().encode("utf-16-be"), None, "UTF-16 (with a byte-order mark)", "comma"),
    "utf-16-le without BOM": (table(delimiter=";").encode("utf-16-le"), None, "UTF-16-LE (detected)", "semicolon"),
    "windows-1252 semicolon (Excel: CSV, comma decimal mark)": (
        table(delimiter=";").encode("cp1252"), None, "Windows-1252 (detected)", "semicolon",
    ),
    "windows-1252 named": (table().encode("cp1252"), "windows-1252", "Windows-1252 (named)", "comma"),
    "CR-only line ends (old Mac Excel)": (table(newline="\r").encode("utf-8"), None, "UTF-8 (detected)", "comma"),
    "LF line ends, tab": (table(delimiter="\t", newline="\n").encode("utf-8"), None, "UTF-8 (detected)", "tab"),
    "bar-separated": (table(delimiter="|").encode("utf-8"), None, "UTF-8 (detected)", "bar"),
}  # fmt: skip


@pytest.mark.parametrize("shape", SHAPES)
def test_every_shape_reads_the_same_readers(settings, topics, shape):
    data, encoding, label, delimiter = SHAPES[shape]
    report = import_csv(settings, io.BytesIO(data), name="list.csv", encoding=encoding)
    assert report.rejected == [] and report.imported == 4
    assert (report.files[0].encoding, report.files[0].delimiter) == (label, delimiter)
    assert names() == EXPECTED


@pytest.mark.parametrize(
    "codec, rows, named",
    [
        ("cp1251", [("email", "name"), ("ivan@example.org", "Иван Петров"), ("olga@example.org", "Ольга Смирнова")], None),
        ("shift_jis", [("email", "name"), ("taro@example.org", "山田太郎"), ("hanako@example.org", "佐藤花子")], None),
        ("koi8-r", [("email", "name"), ("ivan@example.org", "Иван Петров")], "koi8-r"),
        ("cp1250", [("email", "name"), ("petr@example.org", "Petr Dvořák"), ("zofia@example.org", "Zofia Łęcka")], "windows-1250"),
    ],
)  # fmt: skip
def test_other_code_pages_detected_or_named(settings, topics, codec, rows, named):
    report = import_csv(settings, io.BytesIO(table(rows).encode(codec)), name="list.csv", encoding=named)
    assert report.rejected == []
    assert names() == dict(rows[1:])


def test_quoted_line_breaks_and_blank_lines_keep_line_numbers(settings, topics):
    data = b'email,name\r\n\r\nann@example.org,"Ann\r\nLovelace"\r\nbroken,B\r\n'
    report = import_csv(settings, io.BytesIO(data), name="list.csv")
    assert report.imported == 0 and [n for n, _ in report.rejected] == [3, 5]
    assert "line breaks" in report.rejected[0][1] and report.rejected[1][1].startswith("email:")


def test_a_utf8_file_with_a_broken_line_reports_that_line(settings, topics):
    data = "email,name\nzoe@example.org,Zoë\n".encode() + b"bad@example.org,\xff\xfe\nok@example.org,Ok\n"
    report = import_csv(settings, io.BytesIO(data), name="list.csv")
    assert [n for n, _ in report.rejected] == [3] and "not valid UTF-8" in report.rejected[0][1]
    assert names() == {"zoe@example.org": "Zoë", "ok@example.org": "Ok"}


def xlsx() -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as book:
        book.writestr("[Content_Types].xml", "<Types/>")
        book.writestr("xl/workbook.xml", "<workbook/>")
    return out.getvalue()


@pytest.mark.parametrize(
    "data, encoding, message",
    [
        (b"", None, "the file is empty"),
        (b"\r\n\r\n", None, "the file is empty"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00", None, "not a text file"),
        (b"name,topics\nAnn,agents\n", None, "no email column"),
        (xlsx(), None, "Excel workbook: save it as CSV"),
        (b"PK\x03\x04 this is not really a zip", None, "cannot be opened"),
        (b"email\nann@example.org\n", "klingon-8", "unknown encoding"),
    ],
)
def test_unreadable_files_get_a_clear_message(settings, topics, data, encoding, message):
    with pytest.raises(ImportFormatError, match=message):
        import_csv(settings, io.BytesIO(data), name="list.csv", encoding=encoding)
    assert names() == {}


@pytest.mark.parametrize(
    "data, args, message",
    [
        (b"", [], "the file is empty"),
        (xlsx(), [], "Excel workbook"),
        (b"email\nann@example.org\n", ["--encoding", "klingon-8"], "unknown encoding"),
        (b"\x00\x01\x02\x03binary", [], "not a text file"),
    ],
)
def test_cli_unreadable_file_exits_2_with_a_sentence(app, topics, tmp_path, data, args, message):
    path = tmp_path / "list.csv"
    path.write_bytes(data)
    result = app.test_cli_runner().invoke(args=["subscribers", "import", str(path), *args])
    assert result.exit_code == 2 and message in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_progress_is_reported_while_a_large_file_is_read(app, settings, topics, tmp_path):
    rows = 24_000
    path = tmp_path / "large.csv"
    path.write_text(
        "email,name\n" + "".join(f"reader{i}@example.org,Reader number {i}\n" for i in range(rows))
    )
    assert path.stat().st_size > 1_000_000
    seen = []
    with path.open("rb") as stream:
        import_csv(
            settings,
            stream,
            name=str(path),
            dry_run=True,
            progress=lambda t, n: seen.append((t.bytes_read, n)),
        )
    assert len(seen) >= rows // 500 and seen == sorted(seen) and seen[-1][1] == rows
    assert seen[-1][0] == path.stat().st_size
    result = app.test_cli_runner().invoke(args=["subscribers", "import", str(path), "--dry-run"])
    progress = [line for line in result.stderr.splitlines() if "rows read" in line]
    assert result.exit_code == 0 and 5 <= len(progress) <= 12 and "MB" in progress[-1]
