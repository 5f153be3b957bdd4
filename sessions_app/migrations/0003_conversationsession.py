"""The admin's entry for conversations in Redis (no table), and who may restore an archived session."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("sessions_app", "0002_compaction_schedule"),
    ]

    operations = [
        migrations.CreateModel(
            name="ConversationSession",
            fields=[
                (
                    "conversation_id",
                    models.CharField(max_length=255, primary_key=True, serialize=False),
                ),
            ],
            options={
                "verbose_name": "conversation session",
                "verbose_name_plural": "conversation sessions",
                "permissions": [
                    ("trim_conversationsession", "Can trim the history of a conversation session"),
                    ("compact_conversationsession", "Can compact conversation sessions"),
                ],
                "managed": False,
                "default_permissions": ("view", "delete"),
            },
        ),
        migrations.AlterModelOptions(
            name="archivedsession",
            options={
                "ordering": ["-archived_at"],
                "permissions": [
                    ("restore_archivedsession", "Can restore an archived session to Redis")
                ],
                "verbose_name": "archived session",
                "verbose_name_plural": "archived sessions",
            },
        ),
        migrations.AlterModelOptions(
            name="archivedturn",
            options={
                "ordering": ["conversation_id", "seq"],
                "verbose_name": "archived turn",
                "verbose_name_plural": "archived turns",
            },
        ),
    ]
