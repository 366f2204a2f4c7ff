"""The access rule written in SQL for the run page's unchanged poll is visible_runs's, exactly.

A run page polls its live panel every few seconds; that poll reads its token with a statement
written by hand (training.stamps.run_token_facts), whose access condition comes from
access.visible_runs_sql. Whoever changes visible_runs must change it too: this test reads every
run through both, for every kind of viewer, and fails on any difference.
"""

from __future__ import annotations

import pytest
from django.contrib.auth.models import AnonymousUser
from django.db import connection

from tests.factories import make_sent_run
from training import access, stamps
from training.models import RunState, TrainingRun

pytestmark = pytest.mark.django_db


def _seen_through_sql(user) -> set[int]:
    condition, params = access.visible_runs_sql(user, "r")
    table = connection.ops.quote_name(TrainingRun._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT r.id FROM {table} r WHERE {condition}", params)
        return {row[0] for row in cursor.fetchall()}


def test_the_sql_rule_lets_each_viewer_see_exactly_the_runs_visible_runs_does(
    django_user_model, alice, bob, charlie, staff
):
    runs = [make_sent_run(alice), make_sent_run(bob, RunState.SUCCEEDED), make_sent_run(charlie)]
    loner = django_user_model.objects.create_user("loner")  # in no team
    for viewer in (alice, bob, charlie, staff, loner, AnonymousUser()):
        expected = set(access.visible_runs(viewer).values_list("pk", flat=True))
        assert _seen_through_sql(viewer) == expected, viewer
    assert _seen_through_sql(staff) == {run.pk for run in runs}
    assert _seen_through_sql(charlie) == {runs[2].pk}


def test_a_run_of_another_team_reads_as_missing_and_a_visible_one_as_the_orm_reads_it(
    alice, charlie
):
    run = make_sent_run(alice, RunState.WAITING)
    fields = ("state", "updated_at", "submitted_at", "remote_updated_at")
    assert stamps.run_token_facts(charlie, run.pk, fields) is None
    assert stamps.run_token_facts(alice, run.pk + 1000, fields) is None
    values, version = stamps.run_token_facts(alice, run.pk, fields)
    assert values == list(TrainingRun.objects.filter(pk=run.pk).values_list(*fields).get())
    assert version == 0  # the team's stamp, made with the team
