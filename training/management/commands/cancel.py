"""manage.py cancel RUN_ID --as USERNAME"""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied
from django.core.management.base import BaseCommand, CommandError
from django.http import Http404

from training import access, services


class Command(BaseCommand):
    help = "Request a cancel of a run, with the same permission rules as the web page."

    def add_arguments(self, parser):
        parser.add_argument("run_id", type=int)
        parser.add_argument("--as", dest="username", required=True, help="who asks")

    def handle(self, *args, run_id, username, **options):
        user = user_named(username)
        try:
            run = access.get_run_for_user(user, run_id)
            changed = services.request_cancel(run, user)
        except Http404:
            raise CommandError(f"No run {run_id} that {username} may see.") from None
        except PermissionDenied:
            raise CommandError(f"{username} may not cancel run {run_id}.") from None
        if changed:
            self.stdout.write(f"Run {run.pk}: {run.get_state_display().lower()}")
        else:
            run.refresh_from_db()
            self.stdout.write(f"Run {run.pk} is already {run.get_state_display().lower()}")


def user_named(username: str):
    try:
        return get_user_model().objects.get(username=username)
    except get_user_model().DoesNotExist:
        raise CommandError(f"No user named {username!r}.") from None
