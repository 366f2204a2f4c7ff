"""The training form's views: pick a model, set its parameters, estimate the cost, launch.

One page, `launch`, works with and without JavaScript: every button is a submit button that
posts the whole form back to it, and htmx, when present, swaps the re-rendered form in place
instead of reloading. Two small endpoints only exist for htmx: `launch_validate` checks the
form when a field is left, `launch_refresh` re-syncs the model list (it also works as a plain
post).

Launching needs a quote for exactly the parameters on screen. Quotes stay on the server
(training.quotes): the form names one by a random key, and any change to what would be sent
makes it stale. The launch button asks for a confirmation, which shows the quote, the budget
and what will be sent, and only the confirmation's own button launches: one flow with and
without JavaScript. Whatever would refuse the launch (no team, the budget, a missing override
tick) is said on the form before the confirmation. The form carries an idempotency key, so a
double submit makes one run.

Secret parameters (an experiment tracker's key) are never sent back to the page. Once typed,
they are kept in the session under the form's idempotency key until the launch, and the page
only says that a key is set.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.cache import cache
from django.db import transaction
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import urlencode
from django.views.decorators.http import require_http_methods, require_POST
from django_htmx.http import HttpResponseClientRedirect

from training import (
    access,
    budgets,
    display,
    forecast,
    params,
    preflight,
    quotes,
    request_params,
    services,
)
from training.forms import LaunchForm
from training.fragments import page_or_fragment
from training.models import ACTIVE_STATES, ScenarioModel, TrainingRun
from training.quotes import QuoteState
from training.scenario import DryRunLaunched, ScenarioError

TEMPLATE = "training/launch.html"
_MAX_ERROR_CHARS = 300
# Posted names the confirmation does not carry on: they steer this request only.
_NOT_CARRIED = frozenset({"csrfmiddlewaretoken", "action"})
_SECRETS_SESSION_KEY = "launch-secrets"
# Forms whose secrets are kept at once: a person has a few tabs open, not dozens.
_SECRETS_KEPT_FORMS = 5


# --- Quotes ---------------------------------------------------------------------------------


def describe_error(exc: ScenarioError) -> str:
    """Say a remote failure in words a person can act on."""
    message = (getattr(exc, "message", "") or "").strip()[:_MAX_ERROR_CHARS]
    retry_after = getattr(exc, "retry_after", None)
    if getattr(exc, "status", None) == 429:
        wait = f" in {display.duration(int(retry_after) + 1)}" if retry_after else " in a moment"
        return f"Scenario is receiving too many requests. Try again{wait}."
    if getattr(exc, "transient", False):
        detail = f" ({message})" if message else ""
        return f"Scenario did not answer{detail}. Try again in a moment."
    if message:
        return f"Scenario refused: {message}"
    status = getattr(exc, "status", None)
    return f"Scenario refused the request (HTTP {status})." if status else "Scenario refused."


def _estimate(request, form: LaunchForm) -> QuoteState:
    try:
        return quotes.issue(request.user, form.model, form.parameters)
    except DryRunLaunched:
        raise
    except ScenarioError as exc:
        return QuoteState(error=describe_error(exc))


def _quote_for(request, form: LaunchForm) -> QuoteState:
    """The posted quote, checked against the parameters the form holds now."""
    current = quotes.digest(form.model, form.parameters) if form.is_valid() else None
    return quotes.read(request.user, request.POST.get("quote_id", ""), form.model, current)


# --- Secrets typed into the form ------------------------------------------------------------


def _kept_secrets(request, key: uuid.UUID, model: ScenarioModel) -> dict[str, str]:
    """The secrets typed earlier into this form (named by its idempotency key), if still fresh."""
    entry = (request.session.get(_SECRETS_SESSION_KEY) or {}).get(str(key))
    if not isinstance(entry, dict) or entry.get("model") != model.remote_id:
        return {}
    if entry.get("at", 0) < time.time() - quotes.MAX_AGE_SECONDS:
        return {}
    values = entry.get("values")
    return dict(values) if isinstance(values, dict) else {}


def _keep_secrets(request, key: uuid.UUID, model: ScenarioModel, values: dict[str, str]) -> None:
    """Keep this form's secrets for its next post; none forgets them."""
    store = dict(request.session.get(_SECRETS_SESSION_KEY) or {})
    if store.pop(str(key), None) is None and not values:
        return  # nothing kept, nothing to keep: leave the session unwritten
    if values:
        store[str(key)] = {"model": model.remote_id, "at": time.time(), "values": values}
    fresh = [item for item in store.items() if isinstance(item[1], dict)]
    fresh.sort(key=lambda item: item[1].get("at", 0))
    request.session[_SECRETS_SESSION_KEY] = dict(fresh[-_SECRETS_KEPT_FORMS:])


# --- Models a person may pick ---------------------------------------------------------------


@dataclass
class ModelChoice:
    model: ScenarioModel
    problem: str
    selected: bool

    @property
    def image(self) -> str:
        return access.card_image(self.model)

    @property
    def status(self) -> str:
        return access.card_status(self.model)

    @property
    def images_url(self) -> str:
        """The model's page, where its training images are added; "" for a voice model."""
        if preflight.needs_for(self.model.type) is None:
            return ""
        return reverse("dataset", kwargs={"remote_id": self.model.remote_id})


def _trainable(user):
    return access.trainable_models(user).filter(type__in=params.TRAINABLE_TYPES)


def _problem(model: ScenarioModel) -> str:
    """Why a model cannot be trained now, or ""."""
    if model.training_images_number <= 0:
        return "No training images yet: add some on its model page (or on Scenario, then refresh)."
    return ""


def _choices(user, selected: ScenarioModel | None) -> list[ModelChoice]:
    return [
        ModelChoice(m, _problem(m), selected is not None and m.pk == selected.pk)
        for m in _trainable(user).order_by("name", "remote_id")
    ]


def _model_param(params) -> str:
    """The remote id a page or a post names in `model` (BadParameter when unusable)."""
    return request_params.text(params, "model", max_length=100)


def _find_model(user, remote_id: object) -> ScenarioModel | None:
    if not isinstance(remote_id, str) or not remote_id or len(remote_id) > 100:
        return None
    return _trainable(user).filter(remote_id=remote_id).first()


# --- Pages ----------------------------------------------------------------------------------


def _idempotency_key(value: object) -> uuid.UUID:
    try:
        return uuid.UUID(str(value))
    except ValueError:
        return uuid.uuid4()


def _panel_context(request, quote: QuoteState) -> dict:
    """The team's budget bar, what launching at the quote on screen would do to it, and
    whether this person may launch at all.

    An artist over budget cannot launch; the team's lead (or staff) may, by ticking the
    override box. People in no team cannot launch. The service decides again at launch: this
    only says it beforehand.
    """
    budget = budgets.status_for_user(request.user)
    over = budgets.overrun_message(budget, quote.cost) if quote.ready else ""
    return {
        "budget": budget,
        "budget_over": over,
        "may_launch": access.membership_of(request.user) is not None,
        "may_override": bool(over) and budgets.can_override(request.user, budget.team),
        # A new estimate asks again: a tick given for one overrun does not carry to another.
        "override_checked": _wants_override(request) and request.POST.get("action") != "estimate",
        "override_needed": False,
    }


def _wants_override(request) -> bool:
    return request.method == "POST" and request.POST.get("override_budget") == "true"


def _training_now(user, model: ScenarioModel) -> dict:
    """The run training this model now, as far as this person may see it.

    Scenario trains a model once at a time, so the form says so before anyone asks for a
    quote. Another team's run is mentioned, never shown.
    """
    active = TrainingRun.objects.filter(model=model, state__in=ACTIVE_STATES)
    run = (
        access.visible_runs(user)
        .filter(pk__in=active.values("pk"))
        .select_related("created_by")
        .order_by("-created_at", "-id")
        .first()
    )
    return {"busy_run": run, "busy_elsewhere": run is None and active.exists()}


def _forecast_words(user, model: ScenarioModel) -> str:
    """When a run launched now would likely be done, from the team's history (or why not)."""
    membership = access.membership_of(user)
    if membership is None or model is None:
        return ""
    return forecast.for_launch(membership.team, model).words


def _context(request, *, model=None, form=None, quote=None, key=None, panel=None, **extra):
    basic, advanced = form.sections() if form else ([], [])
    quote = quote or QuoteState()
    # Only the form shows the budget: the picker alone spends no query on it.
    if form:
        panel = panel or _panel_context(request, quote)
        panel.update(_training_now(request.user, model))
        panel["launch_forecast"] = _forecast_words(request.user, model)
    return {
        "choices": _choices(request.user, model),
        "model": model,
        "form": form,
        "basic": basic,
        "advanced": advanced,
        "advanced_open": any(b.error for b in advanced),
        "other_errors": form.other_errors if form else [],
        "quote": quote,
        "idempotency_key": key or uuid.uuid4(),
        **(panel or {}),
        **preflight.form_context(request, model, form),
        **extra,
    }


def _render(request, context: dict, partial: str = "launch_body", status: int = 200):
    template = f"{TEMPLATE}#{partial}" if request.htmx else TEMPLATE
    return render(request, template, context, status=status)


def _prefill_from_run(run: TrainingRun, model: ScenarioModel) -> dict[str, object]:
    """A past run's parameters that fit the model's trainer now; secrets are typed again."""
    try:
        family = params.family_for(model.type)
    except params.UnknownModelType:
        return {}
    stored = run.parameters if isinstance(run.parameters, dict) else {}
    return {f.name: stored[f.name] for f in family.form_fields if f.name in stored and not f.secret}


@page_or_fragment
@login_required
@require_http_methods(["GET", "HEAD", "POST"])
def launch(request):
    if request.method == "POST":
        return _launch_post(request)
    from_run, problem, initial = None, "", None
    if "from_run" in request.GET:
        run_id = request_params.identifier(request.GET, "from_run")
        from_run = access.get_run_for_user(request.user, run_id)
        model = _find_model(request.user, from_run.model.remote_id)
        if model is None:
            problem = "Your team cannot train this run's model any more."
        else:
            initial = _prefill_from_run(from_run, model)
    else:
        model = _find_model(request.user, _model_param(request.GET))
        if request.GET.get("model") and model is None:
            problem = "That model is not one your team can train here."
    if model is not None and not problem:
        problem = _problem(model)
    form = LaunchForm(model, initial=initial) if model is not None and not problem else None
    context = _context(
        request,
        model=model,
        form=form,
        problem=problem,
        from_run_pk=from_run.pk if from_run else "",
    )
    return _render(request, context)


def _launch_post(request):
    model = _find_model(request.user, _model_param(request.POST))
    if model is None or _problem(model):
        if request.htmx:
            # htmx does not swap an error answer: reload the page, which says what is wrong.
            query = f"?{urlencode({'model': model.remote_id})}" if model else ""
            return HttpResponseClientRedirect(reverse("launch") + query)
        context = _context(request, problem=_problem(model) if model else "Pick a model first.")
        return _render(request, context, status=400)
    action = request_params.text(request.POST, "action", max_length=100)
    key = _idempotency_key(request.POST.get("idempotency_key"))
    if action == "launch":
        existing = _run_of_form(request, key)
        if existing is not None:
            return _go_to_run(request, existing)
    form = LaunchForm(model, data=request.POST, kept_secrets=_kept_secrets(request, key, model))
    _apply_action(form, action)
    _keep_secrets(request, key, model, form.kept_secrets)
    quote = _quote_for(request, form)
    panel = None
    if action == "estimate" and form.is_valid():
        try:
            quote = _estimate(request, form)
        except DryRunLaunched as launched:
            return _unasked_launch(request, form, launched)
    elif action == "confirm":
        panel = _panel_context(request, quote)
        if _may_confirm(request, form, quote, panel):
            return _confirm(request, form, quote, key, panel)
    elif action == "launch" and _ready(form, quote):
        # The confirmation's own button: the service decides, with the budget as it is now.
        response = _launch(request, form, quote, key)
        if response is not None:
            return response
    from_run_pk = request.POST.get("from_run", "")
    context = _context(
        request,
        model=model,
        form=form,
        quote=quote,
        key=key,
        panel=panel,
        from_run_pk=from_run_pk if _is_small_number(from_run_pk) else "",
    )
    return _render(request, context, partial="launch_form")


def _is_small_number(text: str) -> bool:
    # ASCII digits only: str.isdigit() also takes "١٢", which no URL pattern matches.
    return text.isascii() and text.isdigit() and len(text) < 12


def _apply_action(form: LaunchForm, action: str) -> None:
    if action.startswith("preset:"):
        form.apply_preset(action.removeprefix("preset:"))
    elif action == "add_prompt":
        form.add_row()
    elif action.startswith("remove_prompt:"):
        index = action.removeprefix("remove_prompt:")
        form.remove_row(int(index) if _is_small_number(index) else -1)
    elif action.startswith("forget_secret:"):
        form.forget_secret(action.removeprefix("forget_secret:"))


def _ready(form: LaunchForm, quote: QuoteState) -> bool:
    """Whether the form and its quote can be launched; if not, say why on the quote panel."""
    if not form.is_valid():
        quote.error = "Fix the fields marked above, then estimate the cost again."
    elif not quote.ready:
        quote.error = quote.error or (
            "The parameters changed since the estimate: estimate the cost again."
            if quote.stale
            else "Estimate the cost of these parameters before launching."
        )
    else:
        return True
    return False


def _may_confirm(request, form: LaunchForm, quote: QuoteState, panel: dict) -> bool:
    """Whether the launch can be confirmed: said on the form before, never after confirming.

    The panel already explains a launch past the budget and one by someone in no team, so
    those add no second message; a lead who did not tick the override is pointed to the box.
    """
    if not _ready(form, quote) or _preflight_refused(request, form, quote):
        return False
    if not panel["may_launch"] or (panel["budget_over"] and not panel["may_override"]):
        return False
    if panel["budget_over"] and not panel["override_checked"]:
        panel["override_needed"] = True
        return False
    return True


def _confirm(request, form: LaunchForm, quote: QuoteState, key: uuid.UUID, panel: dict):
    """The confirmation: the quote, the budget and what will be sent, and a launch button."""
    context = {
        "model": form.model,
        "form": form,
        "quote": quote,
        "idempotency_key": key,
        "carried": _carried(request, form),
        "sent": _sent_in_words(form),
        **panel,
        **_training_now(request.user, form.model),
    }
    if request.htmx:
        return render(request, f"{TEMPLATE}#confirm", context)
    page = {**context, "confirming": True, "choices": _choices(request.user, form.model)}
    return render(request, TEMPLATE, page)


def _carried(request, form: LaunchForm) -> list[tuple[str, str]]:
    """The posted values the confirmation posts again, secrets left on the server."""
    return [
        (name, value)
        for name, values in request.POST.lists()
        if name not in _NOT_CARRIED and name not in form.secret_names
        for value in values
    ]


def _sent_in_words(form: LaunchForm) -> list[tuple[str, str]]:
    """List what Scenario will be sent, as (label, value) in the form's words; secrets hidden."""
    shown = params.for_display(form.parameters)
    return [
        (f.label, display.parameter_value(shown[f.name]))
        for f in form.family.form_fields
        if f.name in shown
    ]


def _preflight_refused(request, form: LaunchForm, quote: QuoteState) -> bool:
    """Say on the quote panel why the dataset check stops this launch, if it does."""
    refusal = preflight.refusal_for(request, form.model, form.parameters)
    if refusal:
        quote.error = refusal
    return bool(refusal)


def _launch(request, form: LaunchForm, quote: QuoteState, key: uuid.UUID):
    """Create the run at the server's quote and go to it, or say why not (returns None)."""
    if _preflight_refused(request, form, quote):
        return None
    try:
        with transaction.atomic():
            # Refused below, the launch rolls this back: the quote stays good for a retry.
            if not quotes.consume(request.user, quote.key):
                # A double click whose twin got there first finds the run the twin made.
                run = _run_of_form(request, key)
                if run is not None:
                    return _go_to_run(request, run)
                quote.stale, quote.error = True, quotes.USED
                return None
            run = services.launch_run(
                user=request.user,
                model=form.model,
                parameters=form.parameters,
                quote_cost=quote.cost,
                quote_discount=quote.discount,
                idempotency_key=key,
                override_budget=_wants_override(request),
            )
    except services.LaunchRefused as exc:
        quote.error = str(getattr(exc, "message", "") or exc)[:_MAX_ERROR_CHARS]
        return None
    _keep_secrets(request, key, form.model, {})
    return _go_to_run(request, run)


def _run_of_form(request, key: uuid.UUID) -> TrainingRun | None:
    """The run this form (its idempotency key) already launched, if any."""
    return TrainingRun.objects.filter(idempotency_key=key, created_by=request.user).first()


def _unasked_launch(request, form: LaunchForm, launched: DryRunLaunched):
    """The estimate started a training on Scenario: record it as a run and say so loudly."""
    run = services.record_unasked_launch(
        user=request.user, model=form.model, parameters=form.parameters, launch=launched.launch
    )
    messages.error(
        request,
        "Scenario STARTED A TRAINING when only a cost estimate was asked for. It is recorded "
        "as this run and will be billed; cancel it here if it is not wanted.",
    )
    return _go_to_run(request, run)


def _go_to_run(request, run: TrainingRun):
    url = reverse("run_detail", args=[run.pk])
    if request.htmx:
        return HttpResponseClientRedirect(url)
    return redirect(url)


@login_required
@require_POST
def launch_validate(request):
    """Errors of the whole form as out-of-band swaps, and the quote panel's new state."""
    model = _find_model(request.user, _model_param(request.POST))
    if model is None or _problem(model):
        return HttpResponse(status=204)
    key = _idempotency_key(request.POST.get("idempotency_key"))
    form = LaunchForm(model, data=request.POST, kept_secrets=_kept_secrets(request, key, model))
    quote = _quote_for(request, form)
    errors = form.errors
    slots = [(f.name, errors.get(f.name, "")) for f in form.family.form_fields]
    context = {
        "form": form,
        "model": model,
        "quote": quote,
        "slots": slots,
        **_panel_context(request, quote),
    }
    return render(request, f"{TEMPLATE}#validation", context)


def _may_refresh_now(user) -> bool:
    """True at most once per REFRESH_INTERVAL_SECONDS per team (per person without one).

    Each refresh reads every page of Scenario's model list: a held-down button must not
    spend the account's rate limit for everyone.
    """
    interval = settings.MODEL_REFRESH_INTERVAL_SECONDS
    if interval <= 0:
        return True
    membership = access.membership_of(user)
    who = f"team:{membership.team_id}" if membership else f"user:{user.pk}"
    return cache.add(f"launch-refresh:{who}", True, interval)


@login_required
@require_POST
def launch_refresh(request):
    """Re-read the model list from Scenario, then come back to the picker."""
    if not _may_refresh_now(request.user):
        seconds = settings.MODEL_REFRESH_INTERVAL_SECONDS
        messages.info(
            request,
            f"The models were refreshed less than {display.duration(seconds)} ago. "
            "Try again in a moment.",
        )
    else:
        try:
            count = services.sync_models()
        except ScenarioError as exc:
            messages.error(request, f"Could not refresh the models. {describe_error(exc)}")
        else:
            messages.success(request, f"Models refreshed from Scenario ({count}).")
    url = reverse("launch")
    model = _find_model(request.user, _model_param(request.POST))
    if model is not None:
        url += "?" + urlencode({"model": model.remote_id})
    return redirect(url)
