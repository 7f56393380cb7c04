from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from personalization.services.properties import property_create


class Command(BaseCommand):
    help = "Create a property with its consent policy and print a publishable and a secret key."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--name", required=True)
        parser.add_argument(
            "--origin", action="append", default=[], help="An allowed origin; repeat for more."
        )
        parser.add_argument("--timezone", default="UTC")
        parser.add_argument("--retention-days", type=int, default=395)

    def handle(self, *args: Any, **options: Any) -> None:
        for origin in options["origin"]:
            if not origin.startswith(("http://", "https://")):
                raise CommandError(f"{origin!r} is not an origin (scheme://host[:port]).")
        if not 1 <= options["retention_days"] <= 3650:
            raise CommandError("--retention-days is between 1 and 3650.")
        prop, keys = property_create(
            name=options["name"],
            origins=options["origin"],
            timezone_name=options["timezone"],
            retention_days=options["retention_days"],
        )
        self.stdout.write(f"Property {prop.name!r} created (slug {prop.slug}, id {prop.pk}).")
        self.stdout.write("Keys, shown only now; store them safely:")
        self.stdout.write(f"  publishable: {keys['publishable']}")
        self.stdout.write(f"  secret:      {keys['secret']}")
