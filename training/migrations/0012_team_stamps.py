from django.db import migrations, models


def stamp_every_team(apps, schema_editor):
    Team = apps.get_model("training", "Team")
    TeamStamp = apps.get_model("training", "TeamStamp")
    TeamStamp.objects.bulk_create(
        [TeamStamp(team_id=pk, version=0) for pk in Team.objects.values_list("pk", flat=True)],
        ignore_conflicts=True,
    )


class Migration(migrations.Migration):
    dependencies = [
        ("training", "0011_listing_lease"),
    ]

    operations = [
        migrations.CreateModel(
            name="TeamStamp",
            fields=[
                (
                    "team",
                    models.OneToOneField(
                        on_delete=models.deletion.CASCADE,
                        primary_key=True,
                        related_name="stamp",
                        serialize=False,
                        to="training.team",
                    ),
                ),
                ("version", models.BigIntegerField(default=0)),
            ],
        ),
        migrations.RunPython(stamp_every_team, migrations.RunPython.noop),
    ]
