from __future__ import annotations

import json

from django.contrib import admin

from simulator.models import FaultRates, FaultRule, RequestLog, SimJob, SimModel, SimTrainingImage


class ImageInline(admin.TabularInline):
    model = SimTrainingImage
    fields = ["asset_id", "name", "content_type", "created_at"]
    readonly_fields = fields
    extra = 0


@admin.register(SimModel)
class SimModelAdmin(admin.ModelAdmin):
    list_display = ["id", "name", "type", "owner_id", "created_at"]
    search_fields = ["id", "name"]
    inlines = [ImageInline]


# The training parameters that are credentials (the Weights & Biases key in Scenario's
# train-endpoints document): the admin shows that one was sent, never its value.
SECRET_PARAMETERS = frozenset({"wandbKey"})
HIDDEN = "(set, hidden)"


@admin.register(SimJob)
class SimJobAdmin(admin.ModelAdmin):
    list_display = ["id", "model", "job_type", "steps", "epochs", "cost", "requested_at"]
    list_filter = ["job_type"]
    search_fields = ["id", "model__id", "model__name"]
    exclude = ["parameters"]
    readonly_fields = ["shown_parameters"]

    @admin.display(description="parameters")
    def shown_parameters(self, job):
        parameters = job.parameters if isinstance(job.parameters, dict) else {}
        shown = {
            name: HIDDEN if name in SECRET_PARAMETERS and value else value
            for name, value in parameters.items()
        }
        return json.dumps(shown, indent=2, ensure_ascii=False)


@admin.register(RequestLog)
class RequestLogAdmin(admin.ModelAdmin):
    list_display = ["at", "method", "path", "status", "dry_run", "model_id"]
    list_filter = ["method", "status", "dry_run"]
    search_fields = ["path", "model_id"]


admin.site.register(FaultRule)
admin.site.register(FaultRates)
