"""Flask-WTF forms of the workspace (every POST carries a CSRF token)."""

from __future__ import annotations

from flask_wtf import FlaskForm
from flask_wtf.file import FileField, FileRequired
from wtforms import (
    BooleanField,
    DateTimeLocalField,
    EmailField,
    IntegerField,
    PasswordField,
    SelectField,
    StringField,
    TextAreaField,
)
from wtforms.validators import DataRequired, Email, Length, Optional

from newsletter.models import EDITOR_ROLES


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


class ImportForm(FlaskForm):
    file = FileField("CSV file", validators=[FileRequired()])
    pending = BooleanField("Ask each new reader to confirm (double opt-in)")


class EditorForm(FlaskForm):
    email = EmailField("Email address", validators=[DataRequired(), Email(), Length(max=320)])
    role = SelectField("Role", choices=list(EDITOR_ROLES), default="editor")
    password = PasswordField("Password", validators=[DataRequired(), Length(min=10, max=1024)])


class ArticleTagsForm(FlaskForm):
    tags = StringField("Tags (comma-separated slugs)", validators=[Length(max=1000)])
