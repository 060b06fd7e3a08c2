from django.db import migrations, models


class Migration(migrations.Migration):
    """ImportJob.attempts and attempt_rows: the start marker that lets a redelivered import fail once instead of
    crashing its worker again on the same file."""

    dependencies = [
        ("customers", "0010_id_number_masked_last_four"),
    ]

    operations = [
        migrations.AddField(
            model_name="importjob",
            name="attempts",
            field=models.PositiveSmallIntegerField(default=0, verbose_name="处理次数"),
        ),
        migrations.AddField(
            model_name="importjob",
            name="attempt_rows",
            field=models.PositiveIntegerField(default=0),
        ),
    ]
