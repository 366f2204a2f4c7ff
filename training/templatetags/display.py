"""Template filters that show a value the one way training.display says it."""

from __future__ import annotations

from django import template

from training import display as show

register = template.Library()

register.filter("duration", show.duration)
register.filter("remaining", show.remaining)
register.filter("cu", show.cu)
register.filter("cu_amount", show.cu_amount)
register.filter("person", show.person)
register.filter("moment", show.moment)
register.filter("parameter_value", show.parameter_value)
register.filter("web_url", show.web_url)
