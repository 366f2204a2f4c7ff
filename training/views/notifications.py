"""Pages for being told when a run ends, and the doorbell Scenario rings.

Everyone sets their own email preference; a team's lead sets its chat and signed webhooks,
sees the doorbell URL to give Scenario, and reads the delivery log. Plain forms: no JavaScript
is needed. A webhook's signing secret is shown once, on the page that made it.
"""

from __future__ import annotations

import json
import re
import secrets

from django import forms
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpResponseBadRequest, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from training import access, doorbell, webhooks
from training.models import Delivery, NotificationPreference, Role, TeamHooks

MAX_DOORBELL_BODY = 64 * 1024
DELIVERY_LOG_ROWS = 200


class PreferenceForm(forms.Form):
    email = forms.BooleanField(required=False, label="Email me when a run of mine ends")
    address = forms.EmailField(required=False, label="Email address")

    def clean(self):
        data = super().clean()
        if data.get("email") and not data.get("address"):
            self.add_error("address", "Give the address to send to, or turn email off.")
        return data


class HooksForm(forms.Form):
    chat_url = forms.URLField(
        required=False,
        max_length=1000,
        assume_scheme="https",
        label="Chat webhook (Slack or Discord)",
        help_text="Slack's incoming webhook URL, or Discord's channel webhook URL.",
    )
    webhook_url = forms.URLField(
        required=False,
        max_length=1000,
        assume_scheme="https",
        label="Signed webhook",
        help_text="Receives a signed JSON body; see the README for the check.",
    )


@login_required
def preferences(request):
    preference, _ = NotificationPreference.objects.get_or_create(user=request.user)
    initial = {"email": preference.email, "address": request.user.email}
    form = PreferenceForm(request.POST or None, initial=initial)
    if request.method == "POST" and form.is_valid():
        preference.email = form.cleaned_data["email"]
        preference.save(update_fields=["email"])
        request.user.email = form.cleaned_data["address"]
        request.user.save(update_fields=["email"])
        messages.success(request, "Your notification settings are saved.")
        return redirect("notification_preferences")
    membership = access.membership_of(request.user)
    is_lead = membership is not None and membership.role == Role.LEAD
    return render(request, "training/notifications.html", {"form": form, "is_lead": is_lead})


def _team_hooks(request) -> TeamHooks:
    """The hooks of the team the signed-in person leads; 403 for anyone else."""
    membership = access.membership_of(request.user)
    if membership is None or membership.role != Role.LEAD:
        raise PermissionDenied("Only a team's lead manages its hooks.")
    hooks, _ = TeamHooks.objects.get_or_create(
        team_id=membership.team_id, defaults={"doorbell_token": _token()}
    )
    return hooks


def _token() -> str:
    return secrets.token_urlsafe(24)


@login_required
def team_hooks(request):
    hooks = _team_hooks(request)
    initial = {"chat_url": hooks.chat_url, "webhook_url": hooks.webhook_url}
    form = HooksForm(request.POST or None, initial=initial)
    new_secret = ""
    if request.method == "POST" and form.is_valid():
        hooks.chat_url = form.cleaned_data["chat_url"]
        hooks.webhook_url = form.cleaned_data["webhook_url"]
        if hooks.webhook_url and (not hooks.webhook_secret or "new_secret" in request.POST):
            hooks.webhook_secret = new_secret = webhooks.new_secret()
        if not hooks.webhook_url:
            hooks.webhook_secret = ""
        if "new_doorbell" in request.POST:
            hooks.doorbell_token = _token()
        hooks.save()
        if not new_secret:
            messages.success(request, "The team's hooks are saved.")
            return redirect("team_hooks")
    context = {
        "form": form,
        "hooks": hooks,
        "new_secret": new_secret,
        "doorbell_url": settings.DASHBOARD_BASE_URL
        + reverse("doorbell", args=[hooks.doorbell_token]),
        "header": webhooks.HEADER,
    }
    return render(request, "training/team_hooks.html", context)


@login_required
def delivery_log(request):
    hooks = _team_hooks(request)
    deliveries = (
        Delivery.objects.filter(run__team_id=hooks.team_id)
        .select_related("run__model")
        .order_by("-created_at", "-id")[:DELIVERY_LOG_ROWS]
    )
    return render(request, "training/deliveries.html", {"deliveries": deliveries})


DOORBELL_TOKEN = re.compile(r"[A-Za-z0-9_-]{1,100}")


@csrf_exempt
@require_POST
def ring_doorbell(request, token: str):
    """Scenario's training event: make the model's run due for a poll (nothing else)."""
    # Tokens are URL-safe base64 (secrets.token_urlsafe): anything else names no doorbell,
    # and a NUL byte would not even reach Postgres.
    if not DOORBELL_TOKEN.fullmatch(token):
        raise Http404("No such doorbell")
    hooks = TeamHooks.objects.filter(doorbell_token=token).first()
    if hooks is None or not secrets.compare_digest(hooks.doorbell_token, token):
        raise Http404("No such doorbell")
    if len(request.body) > MAX_DOORBELL_BODY:
        return HttpResponseBadRequest("The event is too large.")
    try:
        payload = json.loads(request.body or b"null")
    except (ValueError, UnicodeDecodeError):
        return HttpResponseBadRequest("The event is not JSON.")
    run = doorbell.ring(hooks, payload)
    return JsonResponse({"polling": run.pk if run else None}, status=202)
