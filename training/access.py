"""Decide who may see, launch and cancel which runs, and who is in which team.

Every view, fragment and command asks here.
"""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.db import DEFAULT_DB_ALIAS, connections, transaction
from django.db.models import Q, QuerySet
from django.http import Http404

from training.models import Membership, Role, ScenarioModel, Team, TrainingRun


def membership_of(user) -> Membership | None:
    """Return the user's membership of their team, or None."""
    if not user.is_authenticated:
        return None
    try:
        return user.membership
    except Membership.DoesNotExist:
        return None


def visible_runs(user) -> QuerySet[TrainingRun]:
    """Return the runs the user may see: staff every run, everyone else their own team's.

    One SQL condition, with no query for the membership, so live fragments stay cheap.
    """
    runs = TrainingRun.objects.all()
    if user.is_staff:
        return runs
    if not user.is_authenticated:
        return runs.none()
    return runs.filter(team__memberships__user=user)


def visible_runs_sql(user, runs: str, using: str = DEFAULT_DB_ALIAS) -> tuple[str, list]:
    """Return visible_runs's rule as an SQL condition on the run table named `runs` (an alias).

    For the one read written by hand, a run page's unchanged poll, the most frequent request
    of all (the ORM took longer to build it than the database to answer it).
    tests/security/test_access_sql.py holds it to visible_runs for every kind of viewer.
    """
    if not user.is_authenticated:
        return "1 = 0", []
    if user.is_staff:
        return "1 = 1", []
    quote = connections[using].ops.quote_name
    members = Membership._meta
    team, member_team = TrainingRun._meta.get_field("team").column, members.get_field("team").column
    condition = (
        f"{runs}.{quote(team)} IN (SELECT {quote(member_team)} FROM {quote(members.db_table)}"
        f" WHERE {quote(members.get_field('user').column)} = %s)"
    )
    return condition, [user.pk]


def get_run_for_user(user, pk, *, related: tuple[str, ...] = (), **annotations) -> TrainingRun:
    """Return the run, or 404 when it does not exist or is of a team the user may not see.

    `related` names further relations, and `annotations` further values, to read in the same
    query.
    """
    runs = visible_runs(user).select_related("model", "team", "created_by", *related)
    runs = runs.annotate(**annotations)
    try:
        return runs.get(pk=pk)
    except (TrainingRun.DoesNotExist, ValueError):
        raise Http404("No such run") from None


# What `role` defaults to when the caller did not read the user's role in the run's team.
UNREAD = object()


def role_in_team(user, team_id) -> str | None:
    """Return the user's role in a team, or None when they are not in it."""
    membership = membership_of(user)
    if membership is None or membership.team_id != team_id:
        return None
    return membership.role


def can_cancel(user, run: TrainingRun, *, role=UNREAD) -> bool:
    """Tell whether the user may cancel the run: staff anything, a lead their team's runs, an
    artist their own runs.

    `role` is the user's role in the run's team (None: not in it) when the caller read it
    along with the run; otherwise it is read here, with a query the first time.
    """
    if user.is_staff:
        return True
    role = role_in_team(user, run.team_id) if role is UNREAD else role
    return role is not None and (role == Role.LEAD or run.created_by_id == user.pk)


def may_settle(user, run: TrainingRun, *, role=UNREAD) -> bool:
    """Tell whether the user may end a run by hand: staff, or a lead of the run's team.

    `role` is as for can_cancel.
    """
    if user.is_staff:
        return True
    role = role_in_team(user, run.team_id) if role is UNREAD else role
    return role == Role.LEAD


def trainable_models(user) -> QuerySet[ScenarioModel]:
    """Return the models the user's team may see in the picker and train.

    A model belongs to one team: the one staff assigned, else the team of its first launch
    (claim_model, at launch). Until someone launches it, an unassigned model is open to every
    team. A model staff marked shared is open to every team for good. Models Scenario no
    longer lists are gone for everyone; their runs stay in the history.
    """
    models = ScenarioModel.objects.filter(gone_at__isnull=True)
    if user.is_staff:
        return models
    membership = membership_of(user)
    if membership is None:
        return models.none()
    return models.filter(Q(team_id=membership.team_id) | Q(shared=True) | Q(team__isnull=True))


def claim_model(model: ScenarioModel, team) -> bool:
    """Make an unassigned, unshared model the team's; False when another team has it now.

    Call it in the transaction that stores the launch: the compare-and-set UPDATE only takes
    a model nobody owns, so of two teams launching it at once exactly one gets it, and a
    launch that fails to be stored gives the model back.
    """
    ScenarioModel.objects.filter(pk=model.pk, team__isnull=True, shared=False).update(team=team)
    open_to_team = Q(team=team) | Q(shared=True)
    return ScenarioModel.objects.filter(open_to_team, pk=model.pk).exists()


def card_image(model: ScenarioModel) -> str:
    """Return the image the picker shows for a model, or "".

    Scenario makes a trained model's thumbnail from its last training's samples. A team's own
    model may show it; a shared model shows its first training image instead, so no team sees
    a sample another team's run produced.
    """
    if not model.shared:
        return model.thumbnail_url
    for image in model.training_images or []:
        if isinstance(image, dict) and isinstance(image.get("url"), str) and image["url"]:
            return image["url"]
    return ""


def card_status(model: ScenarioModel) -> str:
    """Return the Scenario status the picker shows: none for a shared model, whose status is
    that of whichever team trained it last."""
    return "" if model.shared else model.status


def add_member(team_name: str, username: str, role: str, password: str | None = None):
    """Put someone in a team with a role, creating the team and the user when they are new."""
    if role not in Role.values:
        raise ValueError(f"role must be one of {', '.join(Role.values)}, not {role!r}")
    with transaction.atomic():
        team, _ = Team.objects.get_or_create(name=team_name)
        user, created = get_user_model().objects.get_or_create(username=username)
        if password:
            user.set_password(password)
        elif created:
            user.set_unusable_password()
        user.save()
        membership, _ = Membership.objects.update_or_create(
            user=user, defaults={"team": team, "role": role}
        )
    return membership
