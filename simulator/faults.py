"""The fault switch: make the simulator misbehave on purpose, from a test or the environment.

Two kinds, both stored in the simulator's tables so a test and the live server's threads
(or another process) see the same switch:

- `inject(status, times=…, method=…, path_contains=…)`: the next `times` matching requests
  get this answer (e.g. a 429 with Retry-After, a 503, an HTML 502 page, an empty 500, or
  `status=None` with `delay_ms` for a slow answer). With `after_processing=True` the
  request is carried out first and only its answer is replaced: a launch that reached
  Scenario but whose answer was lost.
- `set_rates(rate_429=…, rate_503=…, latency_ms=…)`: a random share of API requests fails,
  and every API request is slowed down. Until set_rates is called (or after clear()),
  settings.SIMULATOR_FAULTS gives these rates, e.g. "429=0.1,503=0.2,latency_ms=200".
  SIMULATOR_FAULTS also takes two faults that strike after the request was carried out:
  `hang=0.02,hang_ms=8000` (the answer comes only after hang_ms, past a client's read
  timeout) and `lost=0.03` (the answer is lost: a 502 from a gateway instead of it).

Injected rules apply to every simulator URL that matches them; random rates only to the
API (not to the sample images a browser loads). 429 answers always carry Retry-After.
"""

from __future__ import annotations

import json
import random
import time
from dataclasses import dataclass

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db.models import F
from django.http import HttpResponse

from simulator.models import FaultRates, FaultRule

DEFAULT_RETRY_AFTER = 1.0


@dataclass(frozen=True)
class Rates:
    rate_429: float = 0.0
    rate_503: float = 0.0
    latency_ms: int = 0
    # After the request was carried out: its answer hangs for hang_ms, or is lost.
    rate_hang: float = 0.0
    hang_ms: int = 0
    rate_lost: float = 0.0


HANG_MS_DEFAULT = 30_000


def inject(
    status: int | None,
    *,
    times: int = 1,
    method: str | None = None,
    path_contains: str | None = None,
    retry_after: float | None = None,
    body: str | None = None,
    content_type: str | None = None,
    delay_ms: int = 0,
    after_processing: bool = False,
) -> FaultRule:
    """Answer the next `times` matching requests with `status` (None: only `delay_ms`)."""
    return FaultRule.objects.create(
        status=status,
        remaining=times,
        method=(method or "").upper(),
        path_contains=path_contains or "",
        retry_after=retry_after,
        body=body,
        content_type=content_type or "",
        delay_ms=delay_ms,
        after_processing=after_processing,
    )


def set_rates(rate_429: float = 0.0, rate_503: float = 0.0, latency_ms: int = 0) -> Rates:
    """Fail this share of API requests at random, and slow every one down."""
    for name, rate in (("rate_429", rate_429), ("rate_503", rate_503)):
        if not 0 <= rate <= 1:
            raise ValueError(f"{name} must be between 0 and 1, not {rate!r}")
    FaultRates.objects.update_or_create(
        pk=1, defaults={"rate_429": rate_429, "rate_503": rate_503, "latency_ms": latency_ms}
    )
    return current_rates()


def clear() -> None:
    """Forget every injected rule and go back to the rates of settings.SIMULATOR_FAULTS."""
    FaultRule.objects.all().delete()
    FaultRates.objects.all().delete()


def parse_rates(text: str) -> Rates:
    """Read "429=0.1,503=0.2,latency_ms=200" (any subset, any order)."""
    values: dict[str, float] = {}
    names = {
        "429": "rate_429",
        "503": "rate_503",
        "latency_ms": "latency_ms",
        "hang": "rate_hang",
        "hang_ms": "hang_ms",
        "lost": "rate_lost",
    }
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, _, raw = item.partition("=")
        try:
            values[names[key.strip()]] = float(raw)
        except (KeyError, ValueError):
            raise ImproperlyConfigured(
                "SIMULATOR_FAULTS must look like "
                f"'429=0.1,503=0.2,latency_ms=200,hang=0.02,hang_ms=8000,lost=0.03', not {text!r}"
            ) from None
    rates = {name: values.get(name, 0.0) for name in ("rate_429", "rate_503", "rate_hang")}
    if rates["rate_429"] + rates["rate_503"] > 1 or not 0 <= values.get("rate_lost", 0) <= 1:
        raise ImproperlyConfigured(f"SIMULATOR_FAULTS rates must be shares of 1, not {text!r}")
    return Rates(
        **rates,
        latency_ms=int(values.get("latency_ms", 0)),
        hang_ms=int(values.get("hang_ms", HANG_MS_DEFAULT)),
        rate_lost=values.get("rate_lost", 0.0),
    )


def current_rates() -> Rates:
    row = FaultRates.objects.filter(pk=1).first()
    if row is not None:
        return Rates(rate_429=row.rate_429, rate_503=row.rate_503, latency_ms=row.latency_ms)
    return parse_rates(getattr(settings, "SIMULATOR_FAULTS", "") or "")


def take_rule(method: str, path: str) -> FaultRule | None:
    """Claim one use of the oldest matching rule, or None."""
    for rule in FaultRule.objects.filter(remaining__gt=0):
        if rule.method and rule.method != method.upper():
            continue
        if rule.path_contains and rule.path_contains not in path:
            continue
        # Another request may be claiming the same last use: only one UPDATE wins.
        claimed = FaultRule.objects.filter(pk=rule.pk, remaining__gt=0).update(
            remaining=F("remaining") - 1
        )
        if claimed:
            return rule
    return None


def random_fault(rates: Rates) -> HttpResponse | None:
    draw = random.random()
    if draw < rates.rate_429:
        return fault_response(429, message="Too many requests, slow down")
    if draw < rates.rate_429 + rates.rate_503:
        return fault_response(503, message="Service temporarily unavailable")
    return None


def random_late_fault(rates: Rates) -> HttpResponse | None:
    """After the work is done: hang past the client's patience, or lose the answer (None:
    answer normally)."""
    draw = random.random()
    if draw < rates.rate_hang:
        time.sleep(rates.hang_ms / 1000)
        return None
    if draw < rates.rate_hang + rates.rate_lost:
        return fault_response(
            502,
            message="",
            body="<html><head><title>502 Bad Gateway</title></head></html>",
            content_type="text/html",
        )
    return None


def rule_response(rule: FaultRule) -> HttpResponse:
    return fault_response(
        rule.status,
        retry_after=rule.retry_after,
        body=rule.body,
        content_type=rule.content_type,
        message=f"Injected fault {rule.status}",
    )


def fault_response(
    status: int,
    *,
    message: str,
    retry_after: float | None = None,
    body: str | None = None,
    content_type: str = "",
) -> HttpResponse:
    if body is None:
        body, content_type = json.dumps({"message": message}), "application/json"
    response = HttpResponse(body, status=status, content_type=content_type or "text/plain")
    if status == 429 and retry_after is None:
        retry_after = DEFAULT_RETRY_AFTER
    if retry_after is not None:
        response["Retry-After"] = f"{retry_after:g}"
    return response
