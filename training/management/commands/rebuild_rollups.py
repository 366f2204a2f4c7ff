"""manage.py rebuild_rollups"""

from __future__ import annotations

import time

from django.core.management.base import BaseCommand

from training import rollups


class Command(BaseCommand):
    help = (
        "Recompute history's rollups (the sums of final runs per team, day, model type, artist "
        "and outcome) from the runs: after a bulk load or a fix made straight in the database. "
        "Safe to run at any time, as often as wanted."
    )

    def handle(self, *args, **options):
        started = time.perf_counter()
        written = rollups.rebuild()
        rows = ", ".join(f"{count:,} in {table}" for table, count in written.items())
        self.stdout.write(f"Rollups rebuilt in {time.perf_counter() - started:.1f} s: {rows}.")
