from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from dashboard.rollups import rollups_run
from dashboard.tasks import exclusive
from personalization.models import Property


class Command(BaseCommand):
    help = (
        "Compute the dashboard rollups (hourly, surveys, segments, fates, consent and "
        "retention) for one property or all; incremental unless --full."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--property", metavar="SLUG", help="Only this property.")
        parser.add_argument(
            "--full", action="store_true", help="Recompute everything, not only new input."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        properties = Property.objects.order_by("pk")
        if options["property"]:
            properties = properties.filter(slug=options["property"])
            if not properties.exists():
                raise CommandError(f"No property with the slug {options['property']!r}.")
        ids = list(properties.values_list("pk", flat=True))
        with exclusive("rollups") as held:
            if not held:
                raise CommandError("Another rollup run holds the lock; try again later.")
            results = rollups_run(
                property_ids=ids,
                full=options["full"],
                retention=True,
                progress=lambda line: self.stdout.write(line),
            )
        rows = sum(r.rows for r in results)
        seconds = sum(r.seconds for r in results)
        self.stdout.write(
            self.style.SUCCESS(
                f"{len(ids)} propert{'y' if len(ids) == 1 else 'ies'}: "
                f"{rows} rollup rows written in {seconds:.1f}s"
            )
        )
