from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from tqdm import tqdm

from personalization.models import Property
from personalization.simulation import simulate


class Command(BaseCommand):
    help = "Send realistic visitor traffic through the real ingest path."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--property", required=True, help="The property's slug or id.")
        parser.add_argument("--visitors", type=int, default=1000)
        parser.add_argument("--days", type=int, default=60)
        parser.add_argument("--seed", type=int, default=7)
        parser.add_argument(
            "--no-decisions",
            action="store_true",
            help="Only send events; do not ask for decisions.",
        )
        parser.add_argument(
            "--refuse-share", type=float, default=0.1, help="Share of visitors who refuse consent."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        ref = options["property"]
        prop = Property.objects.filter(slug=ref).first()
        if prop is None and str(ref).isdigit():
            prop = Property.objects.filter(pk=int(ref)).first()
        if prop is None:
            raise CommandError(f"No property with slug or id {ref!r}.")
        if options["visitors"] < 1 or not 1 <= options["days"] <= prop.retention_days:
            raise CommandError(
                f"--visitors must be positive and --days between 1 and {prop.retention_days}."
            )
        with tqdm(total=options["visitors"], unit="visitor", disable=None) as bar:
            totals = simulate(
                prop=prop,
                visitors=options["visitors"],
                days=options["days"],
                seed=options["seed"],
                refuse_share=options["refuse_share"],
                progress=bar.update,
                personalize=not options["no_decisions"],
            )
        self.stdout.write(
            f"{totals.visitors} visitors, {totals.sent} events sent: {totals.accepted} stored, "
            f"{totals.duplicates} duplicates, {totals.quarantined} quarantined, "
            f"{totals.dropped_no_consent} dropped for lack of consent; "
            f"{totals.decisions} decisions, {totals.adjustments} adjustments at page load, "
            f"{totals.live_fired} live adjustments fired in the page "
            f"({totals.live_applied} applied), "
            f"{totals.survey_responses} survey responses."
        )
