"""manage.py member TEAM USERNAME --role artist|lead [--password PW]"""

from __future__ import annotations

from django.core.management.base import BaseCommand

from training import access
from training.models import Role


class Command(BaseCommand):
    help = (
        "Add someone to a team or change their role, creating the team and the user when "
        "they do not exist yet."
    )

    def add_arguments(self, parser):
        parser.add_argument("team", help="team name")
        parser.add_argument("username")
        parser.add_argument("--role", choices=Role.values, required=True)
        parser.add_argument("--password", help="set this password (a new user gets none)")

    def handle(self, *args, team, username, role, password, **options):
        membership = access.add_member(team, username, role, password)
        self.stdout.write(
            f"{membership.user.username} is now {membership.get_role_display().lower()} "
            f"of {membership.team.name}"
        )
