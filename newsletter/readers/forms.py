"""Flask-WTF forms of the public pages (CSRF on every one of them).

Field validators call the same checks as the service (normalise_email,
clean_name), so an inline error and a service refusal can never disagree.
"""

from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import BooleanField, HiddenField, SelectField, SelectMultipleField, StringField
from wtforms.validators import DataRequired, ValidationError
from wtforms.widgets import CheckboxInput, EmailInput, ListWidget

from newsletter import zones
from newsletter.extensions import settings
from newsletter.readers import service


class TopicsField(SelectMultipleField):
    """Checkboxes; the choices are the newsletter's sections, set per request."""

    widget = ListWidget(prefix_label=False)
    option_widget = CheckboxInput()


def _email_ok(form, field):

    try:
        field.data = service.normalise_email(field.data, settings())
    except service.InvalidAddress as exc:
        raise ValidationError(str(exc)) from None


def _name_ok(form, field):
    try:
        field.data = service.clean_name(field.data)
    except service.InvalidInput as exc:
        raise ValidationError(str(exc)) from None


def _some_topic(form, field):
    if field.choices and not field.data:
        raise ValidationError("Choose at least one topic.")


class _TopicsForm(FlaskForm):
    def set_topics(self, tags, chosen: str | None = None) -> None:
        """Offer ``tags``; on a GET (or a form not fed the request), tick ``chosen`` ("" = all)."""
        self.topics.choices = [(t.slug, t.name) for t in tags]
        # not submitted, or built without the request's data (another form on the page failed)
        if chosen is not None and (not self.is_submitted() or self.topics.data is None):
            wanted = [s for s in chosen.split(",") if s]
            self.topics.data = wanted or [t.slug for t in tags]


class SubscribeForm(_TopicsForm):
    """The form on ``/``: its CSRF token is ``form_tokens``' cookie-less one
    (checked by the view), so the page carries no session and can be cached."""

    class Meta:
        csrf = False

    csrf_token = HiddenField()
    email = StringField(
        "Email address",
        validators=[_email_ok],
        widget=EmailInput(),
        render_kw={"autocomplete": "email", "required": True, "maxlength": 320},
    )
    name = StringField(
        "Name (optional)", validators=[_name_ok], render_kw={"autocomplete": "name", "maxlength": 200}
    )
    topics = TopicsField("Topics", validators=[_some_topic])
    # The browser's IANA zone, filled in by static/timezone.js (local-time
    # delivery); the service drops and counts a zone it does not know.
    timezone = HiddenField(render_kw={"data-timezone": "", "maxlength": zones.MAX_LENGTH})
    # Honeypot: hidden from people (class "hp"), filled in by naive bots.
    website = StringField("Leave this empty", render_kw={"tabindex": "-1", "autocomplete": "off"})


class PreferencesForm(_TopicsForm):
    name = StringField("Name", validators=[_name_ok], render_kw={"autocomplete": "name", "maxlength": 200})
    topics = TopicsField("Topics", validators=[_some_topic])
    # checked by the service (an unknown zone is refused there); not posted = unchanged
    timezone = SelectField("Time zone", choices=[], validate_choice=False)

    def set_zones(self, home: str, current: str | None = None) -> None:
        """Every zone the tz database knows, and "" = the newsletter's own."""
        self.timezone.choices = [("", f"The newsletter's time ({home})")] + [(z, z) for z in zones.names()]
        if current is not None and not self.is_submitted():
            self.timezone.data = current


class EraseForm(FlaskForm):
    confirm = BooleanField(
        "I understand: my address and everything about me will be deleted, and this address can never be subscribed again.",
        validators=[DataRequired("Tick the box to confirm.")],
    )


class NewLinkForm(FlaskForm):
    """Ask for a fresh confirmation link: by the expired token, or by address."""

    token = HiddenField()
    email = StringField(
        "Email address", widget=EmailInput(), render_kw={"autocomplete": "email", "maxlength": 320}
    )


class ActionForm(FlaskForm):
    """A button (unsubscribe, resubscribe, download): only the CSRF token."""
