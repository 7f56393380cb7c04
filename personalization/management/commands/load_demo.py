import secrets
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandParser

from personalization.models import Property
from personalization.permissions import ANALYSTS, MARKETING, PRIVACY_OFFICERS, role_grant
from personalization.services.properties import property_create
from personalization.simulation import demo_live_rules, demo_snapshots_backfill, demo_targeting

DEMO_SLUG = "demo-shop"


class Command(BaseCommand):
    help = "Create the demo property, its staff and simulated traffic (once), and print logins."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--visitors", type=int, default=2000)
        # nine whole weeks: the retention heatmap has real cohorts
        parser.add_argument("--days", type=int, default=63)

    def handle(self, *args: Any, **options: Any) -> None:
        User = get_user_model()
        password = secrets.token_urlsafe(9)
        admin, _ = User.objects.get_or_create(
            username="admin", defaults={"is_staff": True, "is_superuser": True}
        )
        admin.set_password(password)
        admin.save()
        prop = Property.objects.filter(slug=DEMO_SLUG).first()
        keys: dict[str, str] = {}
        if prop is None:
            prop, keys = property_create(
                name="Demo shop", origins=["http://127.0.0.1:8000", "http://localhost:8000"]
            )
            Property.objects.filter(pk=prop.pk).update(slug=DEMO_SLUG)
            prop.refresh_from_db()
        for username, role in (
            ("marketing", MARKETING),
            ("analyst", ANALYSTS),
            ("privacy", PRIVACY_OFFICERS),
        ):
            user, _ = User.objects.get_or_create(username=username, defaults={"is_staff": True})
            user.set_password(password)
            user.save()
            role_grant(user, prop, role)
        if keys:
            demo_targeting(prop)
        # The live rules also reach a demo property loaded before they existed.
        demo_live_rules(prop)
        if keys:
            call_command(
                "simulate_traffic",
                property=DEMO_SLUG,
                visitors=options["visitors"],
                days=options["days"],
                stdout=self.stdout,
            )
            snapshots = demo_snapshots_backfill(prop, days=options["days"])
            self.stdout.write(f"{snapshots} experiment results snapshots backfilled.")
        self.stdout.write(self.style.SUCCESS("Demo ready."))
        self.stdout.write(f"  Admin login: admin / {password}  (http://127.0.0.1:8000/admin/)")
        self.stdout.write("  Staff logins (same password): marketing, analyst, privacy")
        if keys:
            self.stdout.write(f"  Demo property keys: {keys['publishable']}  {keys['secret']}")
        else:
            self.stdout.write(
                "  Demo property existed; its keys were shown when it was created "
                "(issue new ones under API keys)."
            )
