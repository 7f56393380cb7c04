from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("dashboard", "0001_rollup_tables"),
    ]

    operations = [
        migrations.AddField(
            model_name="rollupstate",
            name="cursor",
            field=models.JSONField(
                blank=True,
                default=dict,
                help_text="Highest input row id folded in, per input table.",
            ),
        ),
    ]
