"""Monthly Creative Unit budgets per team: what is spent, what is left, whether a quote fits.

"Spent this month" counts every run the team launched this calendar month (in the dashboard's
time zone) at the price it is known to cost:
- the billed cu_cost when Scenario has billed it (whatever the run's state);
- otherwise its quote, unless it failed, was canceled or never started: a run still draft,
  submitting, queued or running will be billed about its quote, and counting it stops several
  launches in a row from slipping past the budget before any of them is billed;
- a failed or canceled run without a bill costs nothing, and neither does a launch Scenario
  refused before anything started (not started), whatever its quote said;
- a run whose bill cannot be read (cost unknown: Scenario lists no job for it) counts its
  quote, whatever its end: it ran on Scenario, and 0 would under-report.
A run counts in the month it was launched, even when it is billed after midnight on the 1st.

So CU is reserved (committed) from the moment a run is stored, waiting in the team queue
included, and released when it ends without a bill: the released CU are shown too.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass

from django.db.models import Q, Sum
from django.utils import timezone

from training.access import membership_of
from training.display import cu_amount, person
from training.models import Role, RunState, Team, TrainingRun

# Past this share of the budget the bar turns amber.
NEAR_SHARE = 0.8
UNBILLED_FREE_STATES = (RunState.FAILED, RunState.CANCELED, RunState.NOT_STARTED)


def month_bounds(now: dt.datetime | None = None) -> tuple[dt.datetime, dt.datetime]:
    """Return the start of this month and of the next, in the dashboard's time zone."""
    local = timezone.localtime(now or timezone.now())
    start = local.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    next_month = (start + dt.timedelta(days=32)).replace(day=1)
    return start, next_month


@dataclass(frozen=True)
class BudgetStatus:
    team: Team
    budget: int | None
    billed: float
    committed: float  # quotes of runs that will probably be billed but are not yet
    month_start: dt.datetime
    released: float = 0.0  # quotes of runs that ended without a bill: committed, then freed

    @property
    def limited(self) -> bool:
        return self.budget is not None

    @property
    def spent(self) -> float:
        return self.billed + self.committed

    @property
    def remaining(self) -> float | None:
        return None if self.budget is None else self.budget - self.spent

    @property
    def share(self) -> float:
        """Return spent ÷ budget (0 when unlimited); may exceed 1."""
        if not self.budget:
            return 0.0 if self.budget is None else (1.0 if self.spent > 0 else 0.0)
        return self.spent / self.budget

    @property
    def percent(self) -> float:
        """Return the bar's width in percent, capped at 100."""
        return round(min(self.share, 1.0) * 100, 1)

    @property
    def level(self) -> str:
        if not self.limited:
            return "unlimited"
        if self.spent > self.budget:
            return "over"
        return "near" if self.share >= NEAR_SHARE else "ok"


def _spend_by_team(team_ids: Iterable[int], now: dt.datetime | None) -> dict[int, dict]:
    start, end = month_bounds(now)
    rows = (
        TrainingRun.objects.filter(team_id__in=list(team_ids), created_at__gte=start)
        .filter(created_at__lt=end)
        .order_by()
        .values("team_id")
        .annotate(
            billed=Sum("cu_cost"),
            committed=Sum(
                "quote_cu_cost",
                filter=Q(cu_cost__isnull=True)
                & (~Q(state__in=UNBILLED_FREE_STATES) | Q(cost_unknown=True)),
            ),
            released=Sum(
                "quote_cu_cost",
                filter=Q(cu_cost__isnull=True, cost_unknown=False, state__in=UNBILLED_FREE_STATES),
            ),
        )
    )
    return {row["team_id"]: row for row in rows}


def statuses_for(teams: Iterable[Team], now: dt.datetime | None = None) -> list[BudgetStatus]:
    """Read the budget status of several teams in one query."""
    teams = list(teams)
    spend = _spend_by_team([t.pk for t in teams], now)
    start, _ = month_bounds(now)
    statuses = []
    for team in teams:
        row = spend.get(team.pk, {})
        statuses.append(
            BudgetStatus(
                team=team,
                budget=team.monthly_cu_budget,
                billed=row.get("billed") or 0.0,
                committed=row.get("committed") or 0.0,
                month_start=start,
                released=row.get("released") or 0.0,
            )
        )
    return statuses


def status_for(team: Team | None, now: dt.datetime | None = None) -> BudgetStatus | None:
    """Read the team's budget this month, for the budget bar; None without a team."""
    if team is None:
        return None
    return statuses_for([team], now)[0]


def status_for_user(user, now: dt.datetime | None = None) -> BudgetStatus | None:
    """Read the budget of the user's own team; None for people in no team (such as staff)."""
    membership = membership_of(user)
    return status_for(membership.team if membership else None, now)


def check(team: Team, quote: float | None, now: dt.datetime | None = None) -> str | None:
    """Say why launching a run at this quote would break the team's budget; None if it fits.

    Without a quote nothing can be compared, so only a team already at or over its budget is
    refused.
    """
    status = status_for(team, now)
    if status is None or not status.limited:
        return None
    budget, spent = status.budget, status.spent
    if quote is None:
        if spent < budget:
            return None
        return (
            f"{team.name} has used {cu_amount(spent)} of its {cu_amount(budget)} CU budget "
            "this month. A team lead can override."
        )
    if spent + quote <= budget:
        return None
    left = max(budget - spent, 0)
    return (
        f"This run's quote of {cu_amount(quote)} CU would take {team.name} over its monthly "
        f"budget: {cu_amount(spent)} of {cu_amount(budget)} CU are spent or committed this month, "
        f"{cu_amount(left)} CU left. A team lead can override."
    )


def overrun(status: BudgetStatus | None, quote: float | None) -> float:
    """Return how many CU past its budget a run at this quote takes the team (0 if it fits).

    The same rule as check(): spent + quote over the budget.
    """
    if status is None or not status.limited or quote is None:
        return 0.0
    return max(status.spent + quote - status.budget, 0.0)


def overrun_message(status: BudgetStatus | None, quote: float | None) -> str:
    """Say, next to a quote on the form, that it would break the budget; "" if it fits."""
    over = overrun(status, quote)
    if not over:
        return ""
    return (
        f"This run would take {status.team.name} {cu_amount(over)} CU over its "
        f"{cu_amount(status.budget)} CU monthly budget."
    )


def can_override(user, team: Team) -> bool:
    """Tell whether the user may launch past the budget: the team's lead and staff, not artists."""
    if user.is_staff:
        return True
    membership = membership_of(user)
    return membership is not None and membership.team_id == team.pk and membership.role == Role.LEAD


def override_note(user, team: Team, quote: float | None, now: dt.datetime | None = None) -> str:
    """Write the audit line of someone launching past the budget."""
    status = status_for(team, now)
    quote_text = f"{cu_amount(quote)} CU" if quote is not None else "an unknown cost"
    return (
        f"Budget override by {person(user)}: launched for {quote_text} with "
        f"{cu_amount(status.spent)} of {cu_amount(status.budget or 0)} CU already spent or "
        "committed this month."
    )
