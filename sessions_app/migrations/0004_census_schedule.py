"""The admin's count of sessions every 5 minutes (totals per bot, list filters), editable there.

Idempotent: an existing schedule, even one an operator changed, is left as it is.
"""

from django.db import migrations

TASK_NAME = "Count sessions for the admin"


def create_schedule(apps, schema_editor):
    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    every_5_minutes, _ = IntervalSchedule.objects.get_or_create(every=5, period="minutes")
    PeriodicTask.objects.get_or_create(
        name=TASK_NAME,
        defaults={
            "task": "sessions_app.tasks.count_sessions_for_admin",
            "interval": every_5_minutes,
            "description": "Totals per bot, legacy blobs and the oversized set for the admin.",
        },
    )


def delete_schedule(apps, schema_editor):
    apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(name=TASK_NAME).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("sessions_app", "0003_conversationsession"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(create_schedule, delete_schedule)]
