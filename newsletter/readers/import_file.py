"""Reading a file of readers as people's tools write it: bytes in, rows of
cells out, streamed (a million rows in flat memory).

Spreadsheet programs and mailing services write CSV in several shapes, and
each is read without asking:

- UTF-8, with or without a byte-order mark (Excel's "CSV UTF-8" has one);
- UTF-16 with a BOM (Excel's "Unicode Text"), or without one (told apart by
  its zero bytes);
- a legacy code page when the bytes are not UTF-8: Windows-1252 (Excel's
  "CSV" on a Western system) unless the detector (charset-normalizer) is
  confident of another script (Cyrillic, Japanese, …); ``--encoding`` names
  any other;
- comma, semicolon (Excel where the decimal mark is a comma), tab or bar
  delimiters, decided on the header row;
- CR LF, LF or CR-only line ends (old Mac Excel);
- a ZIP archive of CSV files (Mailchimp's, Substack's and Buttondown's
  exports), read member by member.

A byte sequence the encoding cannot decode is reported for its line; the
rest of the file is read. A file that cannot be read at all raises
``ImportFormatError`` with a sentence for people, never a traceback.
"""

from __future__ import annotations

import codecs
import csv
import io
import os
import re
import shutil
import tempfile
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from itertools import chain
from typing import IO

from charset_normalizer import from_bytes

SAMPLE_BYTES = 256 * 1024  # read ahead to choose the encoding
DELIMITERS = (",", ";", "\t", "|")
DELIMITER_NAMES = {",": "comma", ";": "semicolon", "\t": "tab", "|": "bar"}
# Single-byte Latin code pages the detector confuses with each other on
# short samples: a spreadsheet saved as "CSV" on a Western system is
# Windows-1252, so that is what these guesses mean.
_LATIN_GUESSES = re.compile(
    r"^(cp125[02478]|latin_1|iso8859_(1|2|3|4|9|10|13|14|15|16)|mac_(roman|latin2|iceland|turkish)|cp437|cp775|cp85[02])$"
)
_UNDECODED = re.compile("[\udc80-\udcff]")  # bytes surrogateescape kept for reporting
_ZIP_MAGIC = b"PK\x03\x04"
_BINARY = re.compile("[\x00-\x08\x0e-\x1a]")


class ImportFormatError(ValueError):
    """The file cannot be imported at all; the message says why, for people."""


@dataclass
class Encoding:
    codec: str  # a Python codec name
    how: str  # "BOM", "detected" or "named"

    @property
    def label(self) -> str:
        name = codecs.lookup(self.codec).name.replace("utf-8-sig", "utf-8").upper()
        names = {"CP1252": "Windows-1252", "CP1251": "Windows-1251", "CP932": "Shift_JIS (cp932)"}
        return f"{names.get(name, name)} ({'with a byte-order mark' if self.how == 'BOM' else self.how})"


def choose_encoding(sample: bytes, named: str | None = None) -> Encoding:
    """The encoding of a file from its first bytes, or the one named."""
    if named:
        try:
            return Encoding(codecs.lookup(named).name, "named")
        except LookupError:
            raise ImportFormatError(
                f"unknown encoding {named!r} (try utf-8, windows-1252, utf-16, shift_jis, koi8-r …)"
            ) from None
    if sample.startswith(codecs.BOM_UTF8):
        return Encoding("utf-8-sig", "BOM")
    if sample.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return Encoding("utf-16", "BOM")
    head = sample[:4096]
    if (
        len(head) >= 4 and head.count(0) >= len(head) // 4
    ):  # UTF-16 without a BOM: a zero byte per ASCII letter
        return Encoding("utf-16-le" if head[1::2].count(0) > head[0::2].count(0) else "utf-16-be", "detected")
    # UTF-8 when the sample is, or when its well-formed UTF-8 characters are
    # not far outnumbered by broken bytes (a UTF-8 file with a bad line or
    # two, which are then reported): a legacy code page's letters almost
    # never happen to form UTF-8 sequences.
    text = codecs.getincrementaldecoder("utf-8")("replace").decode(sample, final=False)
    broken = text.count("\ufffd")
    if not broken or 4 * sum(1 for c in text if "\x7f" < c != "\ufffd") >= broken:
        return Encoding("utf-8", "detected")
    best = from_bytes(sample).best()
    guess = best.encoding if best is not None else "cp1252"
    if _LATIN_GUESSES.match(guess):
        guess = "cp1252"
    return Encoding(guess, "detected")


class _Replay(io.RawIOBase):
    """A binary stream that gives back the bytes already read ahead, then the
    rest of the underlying stream; counts what was consumed (progress)."""

    def __init__(self, head: bytes, rest: IO[bytes]):
        self._head = memoryview(head)
        self._rest = rest
        self.consumed = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        if self._head:
            count = min(len(buffer), len(self._head))
            buffer[:count] = self._head[:count]
            self._head = self._head[count:]
        else:
            data = self._rest.read(len(buffer))
            count = len(data)
            buffer[:count] = data
        self.consumed += count
        return count


class Lines:
    """The text lines of a stream, numbered; remembers which ones held bytes
    the encoding could not decode (those lines are reported, not guessed)."""

    def __init__(self, text: Iterable[str]):
        self._text = text
        self.bad: set[int] = set()
        self.count = 0

    def __iter__(self) -> Iterator[str]:
        for number, line in enumerate(self._text, start=1):
            self.count = number
            if not line.isascii() and _UNDECODED.search(line):
                self.bad.add(number)
                line = _UNDECODED.sub("\ufffd", line)
            yield line


def choose_delimiter(header: str, recognises) -> str:
    """The delimiter that makes ``header`` a row ``recognises`` (a function
    of the cells saying whether it knows the layout); otherwise the one that
    splits it into the most cells."""
    best, most = ",", 1
    for delimiter in DELIMITERS:
        cells = next(csv.reader([header], delimiter=delimiter), [])
        if recognises(cells):
            return delimiter
        if len(cells) > most:
            best, most = delimiter, len(cells)
    return best


@dataclass
class Table:
    """One CSV file being read: ``rows()`` yields ``(line number, cells)``,
    ``cells`` None with a reason for a line that cannot be read."""

    name: str
    encoding: Encoding
    delimiter: str
    header: list[str]
    size: int | None  # bytes in the file (for progress), when known
    _reader: Iterator[list[str]]
    _lines: Lines
    _replay: _Replay

    @property
    def bytes_read(self) -> int:
        return self._replay.consumed

    @property
    def delimiter_name(self) -> str:
        return DELIMITER_NAMES.get(self.delimiter, repr(self.delimiter))

    def rows(self) -> Iterator[tuple[int, list[str] | None, str]]:
        reader, lines = self._reader, self._lines
        previous = reader.line_num
        while True:
            try:
                row = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                yield reader.line_num, None, f"not valid CSV: {exc}"
                previous = reader.line_num
                continue
            except UnicodeError as exc:  # a stateful codec (UTF-16) broken mid-file
                yield previous + 1, None, f"cannot be decoded as {self.encoding.label}: {exc.reason}"
                return
            first, last = previous + 1, reader.line_num
            previous = last
            if lines.bad and any(n in lines.bad for n in range(first, last + 1)):
                lines.bad.difference_update(range(first, last + 1))
                yield first, None, f"not valid {self.encoding.label} text (try --encoding)"
                continue
            yield first, row, ""


def _table(name: str, stream: IO[bytes], encoding: str | None, recognises, size: int | None) -> Table:
    head = stream.read(SAMPLE_BYTES)
    chosen = choose_encoding(head, encoding)
    replay = _Replay(head, stream)
    text = io.TextIOWrapper(
        io.BufferedReader(replay), encoding=chosen.codec, errors="surrogateescape", newline=""
    )
    lines = Lines(text)
    numbered = iter(lines)
    try:
        first = next(numbered, "")
    except UnicodeError as exc:
        raise ImportFormatError(f"{name}: cannot be read as {chosen.label}: {exc}") from None
    first = first.removeprefix("\ufeff")
    if _BINARY.search(first):
        raise ImportFormatError(f"{name} is not a text file (it holds binary data); export the list as CSV")
    if not first.strip():
        raise ImportFormatError(
            f"{name}: the file is empty; expected a header row such as: email,name,topics"
        )
    delimiter = choose_delimiter(first.rstrip("\r\n"), recognises)
    reader = csv.reader(chain([first], numbered), delimiter=delimiter)
    try:
        header = next(reader)
    except csv.Error as exc:
        raise ImportFormatError(f"{name}: the header row is not valid CSV: {exc}") from None
    return Table(name, chosen, delimiter, [h.strip() for h in header], size, reader, lines, replay)


def _size(stream) -> int | None:
    try:
        return os.fstat(stream.fileno()).st_size
    except (AttributeError, OSError, io.UnsupportedOperation):
        try:
            return len(stream.getbuffer())  # BytesIO
        except AttributeError:
            return None


def open_tables(stream: IO[bytes], *, name: str, encoding: str | None = None, recognises=lambda cells: False):
    """The tables of a file: one for a CSV file, one per ``.csv`` member of a
    ZIP archive (in the archive's order). ``recognises(cells)`` tells the
    delimiter chooser which header rows it knows."""
    magic = stream.read(4)
    rest = _Replay(magic, stream)
    if magic != _ZIP_MAGIC:
        yield _table(name, io.BufferedReader(rest), encoding, recognises, _size(stream))
        return
    with tempfile.TemporaryFile() as spool:  # a ZIP needs to seek; the upload or stdin may not
        shutil.copyfileobj(rest, spool, 1024 * 1024)
        spool.seek(0)
        try:
            archive = zipfile.ZipFile(spool)
        except zipfile.BadZipFile as exc:
            raise ImportFormatError(f"{name} looks like a ZIP archive but cannot be opened: {exc}") from None
        members = [
            m
            for m in archive.infolist()
            if m.filename.lower().endswith(".csv") and not m.is_dir() and "__MACOSX" not in m.filename
        ]
        if not members:
            if any(m.filename.startswith("xl/") for m in archive.infolist()):
                raise ImportFormatError(
                    f"{name} is an Excel workbook: save it as CSV (File › Save As › CSV UTF-8) and import that"
                )
            raise ImportFormatError(f"{name} is a ZIP archive with no .csv file in it")
        for member in members:
            with archive.open(member) as data:
                yield _table(f"{name}:{member.filename}", data, encoding, recognises, member.file_size)
