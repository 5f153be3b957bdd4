"""Template filters of the sessions admin: durations, TTLs, times of the indexes, JSON."""

from datetime import UTC, datetime, timedelta

import orjson
from django import template
from django.contrib.admin.utils import quote
from django.utils import formats, timezone
from django.utils.timesince import timesince, timeuntil
from django.utils.translation import gettext as _

register = template.Library()

JSON_LIMIT = 100_000
"""Characters of JSON a page shows; a 200 KB record would make the page slow to read."""


@register.filter
def duration(seconds):
    """0.000612 -> "612 µs", 0.0123 -> "12.3 ms", 1.5 -> "1.50 s", 1e300 -> "1e+300 s"."""
    if seconds is None:
        return "—"
    if seconds < 1e-3:
        return f"{seconds * 1e6:.0f} µs"
    if seconds < 1:
        return f"{seconds * 1e3:.3g} ms"
    return f"{seconds:.2f} s" if seconds < 1e6 else f"{seconds:.3g} s"


@register.filter
def ttl(seconds):
    """Seconds left before a key expires, in words; "never" when it does not."""
    if seconds is None:
        return _("never")
    now = timezone.now()
    try:
        return timeuntil(now + timedelta(seconds=seconds), now) if seconds >= 60 else f"{seconds} s"
    except OverflowError:  # later than any date: a TTL of thousands of years
        return f"{seconds} s"


@register.filter
def age(when):
    """How long ago ``when`` was, truthfully: "just now" under a minute (Django's timesince
    would say "0 minutes"), else "5 minutes ago"."""
    if when is None:
        return "—"
    seconds = (timezone.now() - when).total_seconds()
    if seconds < 60:
        return _("just now")
    return _("%(time)s ago") % {"time": timesince(when)}


@register.filter
def unixtime(value):
    """A score of the seen index (unix seconds) as an aware datetime; None when it is no time."""
    try:
        return None if value is None else datetime.fromtimestamp(value, tz=UTC)
    except (OverflowError, ValueError, OSError):
        return None


@register.filter
def turn_time(value):
    """A turn's ``created_at`` (ISO 8601 text, as the robot writes it) written as every other
    date of the admin (SHORT_DATETIME_FORMAT, local time); anything else as it is."""
    try:
        when = datetime.fromisoformat(value)
    except (TypeError, ValueError):
        return "" if value is None else value
    if timezone.is_aware(when):
        when = timezone.localtime(when)
    return formats.date_format(when, "SHORT_DATETIME_FORMAT")


@register.filter
def pretty_json(value):
    text = orjson.dumps(value, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS).decode()
    if len(text) <= JSON_LIMIT:
        return text
    return (
        text[:JSON_LIMIT]
        + "\n… "
        + _("(%(count)s more characters)") % {"count": len(text) - JSON_LIMIT}
    )


@register.filter
def admin_quote(value):
    """A conversation id escaped for an admin URL (ids may hold "/", "_" and spaces)."""
    return quote(value)


@register.filter
def share(part, whole):
    return f"{100 * part / whole:.1f} %" if whole else ""
