"""The simulator's clock: the only source of "now" for every derived answer.

Tests may freeze it with settings.SIMULATOR_FROZEN_CLOCK (an aware datetime or an ISO
string); read at call time, so an override_settings block is enough.
"""

from __future__ import annotations

from datetime import UTC, datetime

from django.conf import settings
from django.utils import timezone


def now() -> datetime:
    frozen = getattr(settings, "SIMULATOR_FROZEN_CLOCK", None)
    if frozen is None:
        return timezone.now()
    if isinstance(frozen, str):
        frozen = datetime.fromisoformat(frozen)
    return frozen if frozen.tzinfo else frozen.replace(tzinfo=UTC)


def iso(moment: datetime) -> str:
    """Format like Scenario: 2023-02-03T11:19:41.579Z."""
    utc = moment.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def epoch_ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)
