"""manage.py sync_models"""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from training import scenario, services


class Command(BaseCommand):
    help = "Pull the list of models from Scenario now (every page)."

    def handle(self, *args, **options):
        try:
            count = services.sync_models()
        except scenario.ScenarioError as error:
            raise CommandError(f"Could not read the models from Scenario: {error}") from error
        self.stdout.write(f"Synced {count} models from Scenario")
