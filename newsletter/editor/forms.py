"""Flask-WTF forms of the workspace (every POST carries a CSRF token)."""

from __future__ import annotations

from flask_wtf import FlaskForm
from flask_wtf.file import FileField, FileRequired
from wtforms import (
    BooleanField,
    DateTimeLocalField,
    EmailField,
    HiddenField,
    IntegerField,
    PasswordField,
    SelectField,
    SelectMultipleField,
    StringField,
    TextAreaField,
)
from wtforms.fields.choices import SelectChoice
from wtforms.validators import AnyOf, DataRequired, Email, Length, Optional, Regexp

from newsletter.models import API_SCOPES, EDITOR_ROLES, WEBHOOK_EVENTS
from newsletter.readers.import_formats import LAYOUTS


class ActionForm(FlaskForm):
    """A button that changes state: only the CSRF token."""


class LoginForm(FlaskForm):
    email = EmailField("Email address", validators=[DataRequired(), Length(max=320)])
    password = PasswordField("Password", validators=[DataRequired(), Length(max=1024)])


class IssueForm(FlaskForm):
    title = StringField("Title", validators=[Length(max=300)])
    theme = StringField("Theme", validators=[Length(max=200)])
    subject = StringField("Subject line", validators=[DataRequired(), Length(max=300)])
    preheader = StringField("Preheader", validators=[Length(max=300)])
    intro = TextAreaField("Introduction (Markdown)", validators=[Length(max=20000)])


class TestSendForm(FlaskForm):
    addresses = TextAreaField("Send a test to", validators=[DataRequired(), Length(max=5000)])
    topics = StringField("As a reader of", validators=[Optional(), Length(max=1000)])


class ScheduleForm(FlaskForm):
    when = DateTimeLocalField("Send at", format="%Y-%m-%dT%H:%M", validators=[DataRequired()])


class ConfirmSendForm(FlaskForm):
    confirm_number = IntegerField("Type the issue number to confirm", validators=[DataRequired()])


SOURCE_CHOICES = [("", "Recognise it by its header row")] + [(layout.key, layout.label) for layout in LAYOUTS]
ENCODING_CHOICES = [
    ("", "Detect it"),
    ("utf-8", "UTF-8"),
    ("utf-16", "UTF-16 (Excel's Unicode Text)"),
    ("windows-1252", "Windows-1252 (Western Europe, the Americas)"),
    ("windows-1250", "Windows-1250 (Central Europe)"),
    ("windows-1251", "Windows-1251 (Cyrillic)"),
    ("iso-8859-1", "ISO-8859-1 (Latin-1)"),
    ("iso-8859-15", "ISO-8859-15 (Latin-9)"),
    ("mac-roman", "Mac Roman (old Mac Excel)"),
    ("shift_jis", "Shift_JIS (Japanese)"),
    ("gb18030", "GB18030 (Chinese)"),
    ("euc-kr", "EUC-KR (Korean)"),
]


def _options(choices: list[tuple[str, str]]) -> list[SelectChoice]:
    return [SelectChoice(value, label) for value, label in choices]


class ImportForm(FlaskForm):
    file = FileField("File: a CSV, or the ZIP a service exported", validators=[FileRequired()])
    source = SelectField("Exported from", choices=_options(SOURCE_CHOICES), default="")
    encoding = SelectField("Encoding", choices=_options(ENCODING_CHOICES), default="")
    pending = BooleanField("Ask each new reader to confirm (double opt-in)")
    update = BooleanField("Let the file change names and topics readers chose themselves")


class ImportRunForm(FlaskForm):
    """The preview's "Import" button: the kept upload and the same options."""

    upload = HiddenField(validators=[DataRequired(), Regexp(r"^[A-Za-z0-9_-]{32}$")])
    name = HiddenField(validators=[Length(max=200)])
    source = HiddenField(validators=[AnyOf([key for key, _ in SOURCE_CHOICES])])
    encoding = HiddenField(validators=[AnyOf([key for key, _ in ENCODING_CHOICES])])
    pending = HiddenField(validators=[AnyOf(["", "y"])])
    update = HiddenField(validators=[AnyOf(["", "y"])])


class EditorForm(FlaskForm):
    email = EmailField("Email address", validators=[DataRequired(), Email(), Length(max=320)])
    role = SelectField("Role", choices=list(EDITOR_ROLES), default="editor")
    password = PasswordField("Password", validators=[DataRequired(), Length(min=10, max=1024)])


class ArticleTagsForm(FlaskForm):
    tags = StringField("Tags (comma-separated slugs)", validators=[Length(max=1000)])


class TokenForm(FlaskForm):
    """A new API token: who uses it and what it may do (scopes are checked by ``access.tokens``)."""

    name = StringField("Name (who or what uses it)", validators=[DataRequired(), Length(max=100)])
    scopes = SelectMultipleField(
        "Scopes", choices=_options([(s, s) for s in API_SCOPES]), validators=[DataRequired()]
    )


class WebhookForm(FlaskForm):
    """A new outgoing webhook (``delivery.webhooks`` checks the URL and events)."""

    url = StringField("Endpoint URL (https://…)", validators=[DataRequired(), Length(max=2000)])
    events = SelectMultipleField(
        "Events", choices=_options([(e, e) for e in WEBHOOK_EVENTS]), validators=[DataRequired()]
    )
