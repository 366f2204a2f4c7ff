"""Keep quotes: what Scenario says a training would cost, kept on the server until a launch uses it.

The launch form carries a quote's random key and nothing else about it, so there is nothing in
the page to lower or re-sign. Reading a quote back checks that it is the person's own, for the
model on screen and for exactly the parameters the form holds now (their digest), not too old
and not used yet; a launch consumes it, once. Dry runs are cached per digest, so the same
request is not asked of Scenario twice in a row.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.core.cache import cache
from django.utils import timezone

from training import scenario_client
from training.models import Quote, ScenarioModel

CACHE_SECONDS = 600
# A quote older than this is not trusted for a launch: prices and discounts move.
MAX_AGE_SECONDS = 1800
# Expired quotes stay a day, so that posting one says "too old" rather than "unknown".
KEEP_EXPIRED = timedelta(days=1)
# What secrets.token_urlsafe makes. Anything else is not looked up (a NUL byte, say, is an
# error on Postgres rather than a miss).
_KEY_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")

UNKNOWN = "That estimate is not one of yours: estimate the cost again."
USED = "That estimate was already used for a launch: estimate the cost again."
EXPIRED = "The estimate is too old: estimate again."


@dataclass
class QuoteState:
    """Hold what the quote panel shows."""

    cost: float | None = None
    discount: float | None = None
    key: str = ""
    stale: bool = False
    error: str = ""

    @property
    def ready(self) -> bool:
        return bool(self.key) and not self.stale


def digest(model: ScenarioModel, parameters: dict) -> str:
    """Return a fingerprint of one request to Scenario: account, model, images, parameters."""
    payload = json.dumps(
        {
            # A quote from one Scenario account or simulator says nothing about another.
            "api": settings.SCENARIO_API_URL,
            "model": model.remote_id,
            "images": model.training_images_number,
            "parameters": parameters,
        },
        sort_keys=True,
        separators=(",", ":"),
        allow_nan=False,
    )
    return hashlib.sha256(payload.encode()).hexdigest()


def fetch(model: ScenarioModel, parameters: dict) -> tuple[float, float]:
    """Return the dry-run (cost, discount) for these parameters, cached when asked before."""
    key = f"launch-quote:{digest(model, parameters)}"
    cached = cache.get(key)
    if cached is not None:
        return cached
    quote = scenario_client.get().quote(model.remote_id, parameters)
    value = (float(quote.cost), float(quote.discount))
    cache.set(key, value, CACHE_SECONDS)
    return value


def issue(user, model: ScenarioModel, parameters: dict) -> QuoteState:
    """Ask Scenario for the price of these parameters and keep it for this person.

    Raises ScenarioError when Scenario does not give one.
    """
    cost, discount = fetch(model, parameters)
    now = timezone.now()
    Quote.objects.filter(user=user, expires_at__lt=now - KEEP_EXPIRED).delete()
    row = Quote.objects.create(
        key=secrets.token_urlsafe(32),
        user=user,
        model=model,
        digest=digest(model, parameters),
        cost=cost,
        discount=discount,
        expires_at=now + timedelta(seconds=MAX_AGE_SECONDS),
    )
    return QuoteState(cost, discount, row.key)


def read(user, key: object, model: ScenarioModel, current: str | None) -> QuoteState:
    """Read the quote a form names, ready only if it is still good for the digest `current`.

    `current` is None when the form holds no valid parameters: any quote is then stale.
    """
    if not isinstance(key, str) or not key:
        return QuoteState()
    row = None
    if _KEY_RE.fullmatch(key):
        row = Quote.objects.filter(key=key, user=user, model=model).first()
    if row is None:
        return QuoteState(error=UNKNOWN)
    state = QuoteState(row.cost, row.discount, row.key)
    if row.used_at is not None:
        state.stale, state.error = True, USED
    elif row.expires_at <= timezone.now():
        state.stale, state.error = True, EXPIRED
    elif current is None or row.digest != current:
        state.stale = True
    return state


def consume(user, key: str) -> bool:
    """Mark the quote used by a launch; False when it is not this person's or not usable.

    Call it inside the launch's transaction, so that a refused launch leaves it unused.
    """
    now = timezone.now()
    # Two launches with one quote: only the first changes the row.
    used = Quote.objects.filter(
        key=key, user=user, used_at__isnull=True, expires_at__gt=now
    ).update(used_at=now)
    return used == 1
