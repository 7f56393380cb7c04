"""Reads of the core domain used by other apps (the dashboards)."""

from dataclasses import dataclass, field
from datetime import datetime

from django.db.models import QuerySet, Sum

from .models import Fate, IngestStat, Property


@dataclass
class FateRow:
    property_name: str
    event_type: str
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(Fate.values, 0))

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def problem_share(self) -> float:
        bad = self.counts[Fate.QUARANTINED]
        return bad / self.total if self.total else 0.0


def ingest_fates(properties: QuerySet[Property], since: datetime) -> list[FateRow]:
    """Counts of each fate per property and event type since a time, from the hourly rollup."""
    rows: dict[tuple[str, str], FateRow] = {}
    query = (
        IngestStat.objects.filter(property__in=properties, hour__gte=since)
        .values("property__name", "event_type", "fate")
        .annotate(n=Sum("count"))
        .order_by("property__name", "event_type")
    )
    for item in query:
        key = (item["property__name"], item["event_type"])
        row = rows.setdefault(key, FateRow(*key))
        row.counts[item["fate"]] = item["n"]
    return list(rows.values())
