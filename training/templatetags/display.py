"""Template filters that show a value the one way training.display says it."""

from __future__ import annotations

from django import template

from training import display as show

register = template.Library()

register.filter("duration", show.duration)
register.filter("remaining", show.remaining)
register.filter("cu", show.cu)
register.filter("cu_amount", show.cu_amount)
register.filter("count", show.count)
register.filter("percent", show.percent)
register.filter("forecast_miss", show.forecast_miss)
register.filter("person", show.person)
register.filter("web_url", show.web_url)


@register.filter
def moment(value, precision: str = "minutes") -> str:
    """Say a moment as display.moment does; `|moment:"seconds"` adds the seconds."""
    return show.moment(value, seconds=precision == "seconds")


@register.filter
def clock(value, precision: str = "seconds") -> str:
    """Say a time of day as display.clock does; `|clock:"minutes"` leaves the seconds out."""
    return show.clock(value, seconds=precision == "seconds")
