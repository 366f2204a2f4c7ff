from __future__ import annotations

from django.apps import AppConfig


class TrainingConfig(AppConfig):
    name = "training"
    verbose_name = "Trainings"

    def ready(self):
        # Connects the receiver that keeps history's rollups right when a run is deleted.
        from training import rollups, stamps  # noqa: F401

        stamps.connect()
