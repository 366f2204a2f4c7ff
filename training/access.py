"""Who may see, launch and cancel which runs. Every view, fragment and command asks here."""

from __future__ import annotations

from django.db.models import QuerySet
from django.http import Http404

from training.models import Membership, Role, ScenarioModel, TrainingRun


def membership_of(user) -> Membership | None:
    if not user.is_authenticated:
        return None
    try:
        return user.membership
    except Membership.DoesNotExist:
        return None


def visible_runs(user) -> QuerySet[TrainingRun]:
    """Staff see every run; everyone else sees their own team's runs.

    One SQL condition, with no query for the membership, so live fragments stay cheap.
    """
    runs = TrainingRun.objects.all()
    if user.is_staff:
        return runs
    if not user.is_authenticated:
        return runs.none()
    return runs.filter(team__memberships__user=user)


def get_run_for_user(user, pk, *, related: tuple[str, ...] = (), **annotations) -> TrainingRun:
    """The run, or 404 when it does not exist or belongs to a team the user may not see.

    `related` names further relations, and `annotations` further values, to read in the same
    query.
    """
    runs = visible_runs(user).select_related("model", "team", "created_by", *related)
    runs = runs.annotate(**annotations)
    try:
        return runs.get(pk=pk)
    except (TrainingRun.DoesNotExist, ValueError):
        raise Http404("No such run") from None


def can_cancel(user, run: TrainingRun) -> bool:
    """Staff cancel anything, a lead their team's runs, an artist their own runs."""
    if user.is_staff:
        return True
    membership = membership_of(user)
    if membership is None or membership.team_id != run.team_id:
        return False
    return membership.role == Role.LEAD or run.created_by_id == user.pk


def trainable_models(user) -> QuerySet[ScenarioModel]:
    """Models the user's team may train: those assigned to it and those assigned to nobody."""
    models = ScenarioModel.objects.all()
    if user.is_staff:
        return models
    membership = membership_of(user)
    if membership is None:
        return models.none()
    return models.filter(team__isnull=True) | models.filter(team_id=membership.team_id)
