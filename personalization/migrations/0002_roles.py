from django.contrib.auth.management import create_permissions
from django.db import migrations

ROLES = ["Marketing", "Analysts", "Privacy officers"]


def create_roles(apps, schema_editor):
    # Permissions are normally created after all migrations; create them now so
    # the roles can be given theirs in the same migration.
    for app_config in apps.get_app_configs():
        app_config.models_module = True
        create_permissions(app_config, apps=apps, verbosity=0)
        app_config.models_module = None
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    for name in ROLES:
        Group.objects.get_or_create(name=name)
    marketing = Group.objects.get(name="Marketing")
    add_property = Permission.objects.get(
        codename="add_property", content_type__app_label="personalization"
    )
    marketing.permissions.add(add_property)


def remove_roles(apps, schema_editor):
    apps.get_model("auth", "Group").objects.filter(name__in=ROLES).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("personalization", "0001_initial"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]
    operations = [migrations.RunPython(create_roles, remove_roles)]
