"""The training form's views: pick a model, set its parameters, estimate the cost, launch.

One page, `launch`, works with and without JavaScript: every button is a submit button that
posts the whole form back to it, and htmx, when present, swaps the re-rendered form in place
instead of reloading. Two small endpoints only exist for htmx: `launch_validate` checks the
form when a field is left, `launch_refresh` re-syncs the model list (it also works as a plain
post).

Launching needs a quote for exactly the parameters on screen. The quote travels in the form as
a signed token naming a digest of (model, image count, parameters sent); any change to what
would be sent makes the token stale. Quotes are cached per digest, so the same request is not
dry-run twice in a row. The form carries an idempotency key, so a double submit makes one run.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core import signing
from django.core.cache import cache
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import urlencode
from django.views.decorators.http import require_http_methods, require_POST
from django_htmx.http import HttpResponseClientRedirect

from training import access, budgets, params, preflight, services
from training.forms import LaunchForm
from training.models import ScenarioModel, TrainingRun
from training.scenario import ScenarioError

TEMPLATE = "training/launch.html"
QUOTE_CACHE_SECONDS = 600
# A quote older than this is not trusted for a launch: prices and discounts move.
QUOTE_MAX_AGE_SECONDS = 1800
_QUOTE_SALT = "training.launch.quote"
_MAX_TOKEN_CHARS = 1000
_MAX_ERROR_CHARS = 300


# --- Quotes ---------------------------------------------------------------------------------


@dataclass
class QuoteState:
    """What the quote panel shows."""

    cost: float | None = None
    discount: float | None = None
    token: str = ""
    stale: bool = False
    error: str = ""

    @property
    def ready(self) -> bool:
        return bool(self.token) and not self.stale


def quote_digest(model: ScenarioModel, parameters: dict) -> str:
    payload = json.dumps(
        {
            # A quote from one Scenario account or simulator says nothing about another.
            "api": settings.SCENARIO_API_URL,
            "model": model.remote_id,
            "images": model.training_images_number,
            "parameters": parameters,
        },
        sort_keys=True,
        separators=(",", ":"),
        allow_nan=False,
    )
    return hashlib.sha256(payload.encode()).hexdigest()


def fetch_quote(model: ScenarioModel, parameters: dict) -> tuple[float, float]:
    """The dry-run (cost, discount) for these parameters, from the cache when asked before."""
    key = f"launch-quote:{quote_digest(model, parameters)}"
    cached = cache.get(key)
    if cached is not None:
        return cached
    quote = services.scenario_client().quote(model.remote_id, parameters)
    value = (float(quote.cost), float(quote.discount))
    cache.set(key, value, QUOTE_CACHE_SECONDS)
    return value


def sign_quote(digest: str, cost: float, discount: float) -> str:
    return signing.dumps({"d": digest, "c": cost, "x": discount}, salt=_QUOTE_SALT)


def read_quote(token: str, digest: str | None) -> QuoteState:
    """The quote a posted token holds, stale unless it was made for `digest`."""
    if not token or len(token) > _MAX_TOKEN_CHARS:
        return QuoteState()
    try:
        data = signing.loads(token, salt=_QUOTE_SALT, max_age=QUOTE_MAX_AGE_SECONDS)
    except signing.SignatureExpired:
        return QuoteState(stale=True, error="The estimate is too old: estimate again.")
    except signing.BadSignature:
        return QuoteState()
    state = QuoteState(cost=data.get("c"), discount=data.get("x"))
    if digest is None or data.get("d") != digest:
        state.stale = True
        return state
    state.token = token
    return state


def describe_error(exc: ScenarioError) -> str:
    """A remote failure in words a person can act on."""
    message = (getattr(exc, "message", "") or "").strip()[:_MAX_ERROR_CHARS]
    retry_after = getattr(exc, "retry_after", None)
    if getattr(exc, "status", None) == 429:
        wait = f" in {int(retry_after) + 1} s" if retry_after else " in a moment"
        return f"Scenario is receiving too many requests. Try again{wait}."
    if getattr(exc, "transient", False):
        detail = f" ({message})" if message else ""
        return f"Scenario did not answer{detail}. Try again in a moment."
    if message:
        return f"Scenario refused: {message}"
    status = getattr(exc, "status", None)
    return f"Scenario refused the request (HTTP {status})." if status else "Scenario refused."


def _estimate(model: ScenarioModel, form: LaunchForm) -> QuoteState:
    parameters = form.parameters
    try:
        cost, discount = fetch_quote(model, parameters)
    except ScenarioError as exc:
        return QuoteState(error=describe_error(exc))
    digest = quote_digest(model, parameters)
    return QuoteState(cost, discount, sign_quote(digest, cost, discount))


def _quote_for(form: LaunchForm, token: str) -> QuoteState:
    """The posted quote, checked against the parameters the form holds now."""
    digest = quote_digest(form.model, form.parameters) if form.is_valid() else None
    return read_quote(token, digest)


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


def _budget_context(request, quote: QuoteState) -> dict:
    """The team's budget bar, and what launching at the quote on screen would do to it.

    An artist over budget cannot launch; the team's lead (or staff) may, by ticking the
    override box. The service decides again at launch: this only explains it beforehand.
    """
    budget = budgets.status_for_user(request.user)
    over = budgets.overrun_message(budget, quote.cost) if quote.ready else ""
    return {
        "budget": budget,
        "budget_over": over,
        "may_override": bool(over) and budgets.can_override(request.user, budget.team),
        # A new estimate asks again: a tick given for one overrun does not carry to another.
        "override_checked": _wants_override(request) and request.POST.get("action") != "estimate",
    }


def _wants_override(request) -> bool:
    return request.method == "POST" and request.POST.get("override_budget") == "true"


def _context(request, *, model=None, form=None, quote=None, key=None, **extra) -> dict:
    basic, advanced = form.sections() if form else ([], [])
    quote = quote or QuoteState()
    # Only the form shows the budget: the picker alone spends no query on it.
    budget = _budget_context(request, quote) if form else {}
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
        **preflight.form_context(request, model, form),
        **budget,
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


@login_required
@require_http_methods(["GET", "HEAD", "POST"])
def launch(request):
    if request.method == "POST":
        return _launch_post(request)
    from_run, problem, initial = None, "", None
    if "from_run" in request.GET:
        from_run = access.get_run_for_user(request.user, request.GET["from_run"])
        model = _find_model(request.user, from_run.model.remote_id)
        if model is None:
            problem = "Your team cannot train this run's model any more."
        else:
            initial = _prefill_from_run(from_run, model)
    else:
        model = _find_model(request.user, request.GET.get("model"))
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
    model = _find_model(request.user, request.POST.get("model"))
    if model is None or _problem(model):
        if request.htmx:
            # htmx does not swap an error answer: reload the page, which says what is wrong.
            query = f"?{urlencode({'model': model.remote_id})}" if model else ""
            return HttpResponseClientRedirect(reverse("launch") + query)
        context = _context(request, problem=_problem(model) if model else "Pick a model first.")
        return _render(request, context, status=400)
    form = LaunchForm(model, data=request.POST)
    action = request.POST.get("action", "")
    key = _idempotency_key(request.POST.get("idempotency_key"))
    if action == "launch":
        existing = TrainingRun.objects.filter(idempotency_key=key, created_by=request.user).first()
        if existing is not None:
            return _go_to_run(request, existing)
    _apply_action(form, action)
    quote = _quote_for(form, request.POST.get("quote_token", ""))
    if action == "estimate" and form.is_valid():
        quote = _estimate(model, form)
    elif action == "launch":
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


def _launch(request, form: LaunchForm, quote: QuoteState, key: uuid.UUID):
    """Create the run and go to it, or say on the quote panel why not (returns None)."""
    if not form.is_valid():
        quote.error = "Fix the fields marked above, then estimate the cost again."
        return None
    if not quote.ready:
        quote.error = quote.error or (
            "The parameters changed since the estimate: estimate the cost again."
            if quote.stale
            else "Estimate the cost of these parameters before launching."
        )
        return None
    refusal = preflight.refusal_for(request, form.model, form.parameters)
    if refusal:
        quote.error = refusal
        return None
    try:
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
    model = _find_model(request.user, request.POST.get("model"))
    if model is None or _problem(model):
        return HttpResponse(status=204)
    form = LaunchForm(model, data=request.POST)
    quote = _quote_for(form, request.POST.get("quote_token", ""))
    errors = form.errors
    slots = [(f.name, errors.get(f.name, "")) for f in form.family.form_fields]
    context = {
        "form": form,
        "model": model,
        "quote": quote,
        "slots": slots,
        **_budget_context(request, quote),
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
            f"The models were refreshed less than {seconds:g} s ago. Try again in a moment.",
        )
    else:
        try:
            count = services.sync_models()
        except ScenarioError as exc:
            messages.error(request, f"Could not refresh the models. {describe_error(exc)}")
        else:
            messages.success(request, f"Models refreshed from Scenario ({count}).")
    url = reverse("launch")
    model = _find_model(request.user, request.POST.get("model"))
    if model is not None:
        url += "?" + urlencode({"model": model.remote_id})
    return redirect(url)
