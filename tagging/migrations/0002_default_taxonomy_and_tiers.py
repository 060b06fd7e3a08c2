from django.db import migrations


def load(apps, schema_editor):
    from tagging.defaults import defaults_load

    defaults_load(apps.get_model)


class Migration(migrations.Migration):
    dependencies = [("tagging", "0001_tags_and_tiers")]
    operations = [migrations.RunPython(load, migrations.RunPython.noop)]
