"""The admin: teams and members, model assignment to teams, and a read-only view of runs.

A run's state is never edited here: only training.services changes it (with a RunEvent).
"""

from __future__ import annotations

import json

from django.contrib import admin

from training import params
from training.models import EpochSample, Membership, RunEvent, ScenarioModel, Team, TrainingRun


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    autocomplete_fields = ["user"]


@admin.register(Team)
class TeamAdmin(admin.ModelAdmin):
    list_display = ["name", "monthly_cu_budget", "parallel_trainings", "created_at"]
    search_fields = ["name"]
    inlines = [MembershipInline]
    fields = [
        "name",
        "monthly_cu_budget",
        "parallel_trainings",
        "learned_limit",
        "learned_limit_probe_at",
        "cooldown_until",
    ]
    # Learned from Scenario's answers; staff set parallel_trainings.
    readonly_fields = ["learned_limit", "learned_limit_probe_at", "cooldown_until"]


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    list_display = ["user", "team", "role"]
    list_filter = ["team", "role"]
    search_fields = ["user__username", "team__name"]
    autocomplete_fields = ["user", "team"]


@admin.register(ScenarioModel)
class ScenarioModelAdmin(admin.ModelAdmin):
    list_display = [
        "name",
        "remote_id",
        "type",
        "status",
        "training_images_number",
        "team",
        "shared",
        "gone_at",
    ]
    list_filter = ["type", "status", "team", "shared"]
    list_editable = ["team", "shared"]
    search_fields = ["name", "remote_id"]
    # Everything but the team and sharing comes from Scenario and is overwritten by the next
    # sync (gone_at too: the sync sets it when Scenario stops listing the model).
    readonly_fields = [
        "remote_id",
        "name",
        "type",
        "status",
        "training_images_number",
        "training_images",
        "thumbnail_url",
        "synced_at",
        "gone_at",
    ]


class RunEventInline(admin.TabularInline):
    model = RunEvent
    extra = 0
    can_delete = False
    fields = ["at", "from_state", "to_state", "source", "actor", "message"]
    readonly_fields = fields

    def has_add_permission(self, request, obj=None):
        return False


class EpochSampleInline(admin.TabularInline):
    model = EpochSample
    extra = 0
    can_delete = False
    fields = ["epoch_index", "prompt_index", "prompt", "asset_id", "url"]
    readonly_fields = fields

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(TrainingRun)
class TrainingRunAdmin(admin.ModelAdmin):
    list_display = [
        "pk", "model", "team", "created_by", "outcome", "stage", "cu_cost", "created_at",
    ]  # fmt: skip
    list_filter = ["state", "team", "model_type"]
    search_fields = ["model__name", "model__remote_id", "job_id", "created_by__username"]
    date_hierarchy = "created_at"
    list_select_related = ["model", "team", "created_by"]
    inlines = [RunEventInline, EpochSampleInline]
    exclude = ["parameters"]

    def get_readonly_fields(self, request, obj=None):
        # The whole run is a record of what happened; none of it is edited by hand.
        fields = [field.name for field in TrainingRun._meta.fields]
        fields[fields.index("parameters")] = "shown_parameters"
        fields.insert(fields.index("state") + 1, "outcome")
        return fields

    @admin.display(description="state", ordering="state")
    def outcome(self, run):
        return run.outcome

    @admin.display(description="parameters")
    def shown_parameters(self, run):
        return json.dumps(params.for_display(run.parameters or {}), indent=2, ensure_ascii=False)

    def has_add_permission(self, request):
        return False
