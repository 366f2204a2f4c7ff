"""manage.py train MODEL_ID --as USERNAME [--param name=value …] [--dry-run]"""

from __future__ import annotations

import json

from django.core.management.base import BaseCommand, CommandError

from training import access, launch_request, scenario, services
from training.management.commands.cancel import user_named
from training.models import ScenarioModel


class Command(BaseCommand):
    help = (
        "Launch a training of a model as someone (prints the run id), or with --dry-run ask "
        "Scenario what it would cost. Parameters are checked as the launch form checks them."
    )

    def add_arguments(self, parser):
        parser.add_argument("model_id", help="the Scenario model id")
        parser.add_argument("--as", dest="username", required=True, help="who launches")
        parser.add_argument(
            "--param",
            dest="params",
            action="append",
            default=[],
            metavar="NAME=VALUE",
            help="a training parameter; repeat a name to give a list, or give a JSON list",
        )
        parser.add_argument("--dry-run", action="store_true", help="only print the CU quote")

    def handle(self, *args, model_id, username, params, dry_run, **options):
        user = user_named(username)
        model = trainable_model(user, model_id)
        sent = checked_parameters(model, parse_params(params))
        try:
            cost, discount = launch_request.price(model, sent)
        except scenario.DryRunLaunched as launched:
            # A training started: record it, never launch a second one.
            run = services.record_unasked_launch(
                user=user, model=model, parameters=sent, launch=launched.launch
            )
            self.stderr.write(
                f"Scenario STARTED A TRAINING when only a quote was asked for: run {run.pk}"
            )
            self.stdout.write(str(run.pk))
            return
        except scenario.ScenarioError as error:
            if dry_run:
                raise CommandError(f"Scenario could not quote this training: {error}") from error
            self.stderr.write(f"No quote ({error}); launching without one")
            cost = discount = None
        if dry_run:
            self.stdout.write(f"Quote: {cost:g} CU (discount {discount:g} CU)")
            return
        try:
            run = services.launch_run(
                user=user,
                model=model,
                parameters=sent,
                quote_cost=cost,
                quote_discount=discount,
            )
        except services.LaunchRefused as refused:
            raise CommandError(refused.message) from None
        self.stdout.write(str(run.pk))


def trainable_model(user, remote_id: str) -> ScenarioModel:
    model = ScenarioModel.objects.filter(remote_id=remote_id).first()
    if model is None:
        raise CommandError(f"No model {remote_id!r} here; run sync_models first?")
    if not access.trainable_models(user).filter(pk=model.pk).exists():
        raise CommandError(f"{user.username} may not train {model}.")
    return model


def parse_params(items: list[str]) -> dict[str, object]:
    """NAME=VALUE pairs as the form would send them: text, or a JSON list; a repeated name
    gathers its values into a list."""
    raw: dict[str, object] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise CommandError(f"--param takes NAME=VALUE, not {item!r}")
        name = name.strip()
        parsed = _value(value)
        if name in raw:
            previous = raw[name] if isinstance(raw[name], list) else [raw[name]]
            parsed = previous + (parsed if isinstance(parsed, list) else [parsed])
        raw[name] = parsed
    return raw


def _value(text: str) -> object:
    if text.strip().startswith(("[", "{")):
        try:
            return json.loads(text)
        except ValueError:
            raise CommandError(f"Not valid JSON: {text}") from None
    return text


def checked_parameters(model: ScenarioModel, raw: dict) -> dict:
    """Return what would be sent to Scenario, or raise a CommandError listing every problem."""
    clean, errors = launch_request.validate(model, raw)
    if errors:
        lines = [f"  {name}: {message}" for name, message in errors.items()]
        raise CommandError("These parameters cannot be used:\n" + "\n".join(lines))
    return launch_request.request_parameters(model, clean)
