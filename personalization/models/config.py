"""What the decision engine compiles: a change to any of it must reach every process.

Saves and deletes send Django's model signals; bulk writes (``QuerySet.update``,
``bulk_update``, ``bulk_create``) send none. Configuration models use ``ConfigQuerySet``,
whose bulk writes send ``config_changed`` with the properties they touched, so no write
path can skip the invalidation (``personalization/config_version.py`` receives both).
"""

from collections.abc import Iterable
from typing import Any

from django.db import models
from django.dispatch import Signal

# Sent with ``property_ids`` (a set of ints) after a bulk write to configuration.
config_changed = Signal()


class ConfigQuerySet(models.QuerySet):
    # The lookup from a row to its property, set per model by ``ConfigManager``'s owner.
    def _property_path(self) -> str:
        return getattr(self.model, "CONFIG_PROPERTY_PATH", "property_id")

    def _property_ids(self) -> set[int]:
        return set(self.values_list(self._property_path(), flat=True).distinct().order_by())

    def _changed(self, property_ids: Iterable[int | None]) -> None:
        ids = {pk for pk in property_ids if pk is not None}
        if ids:
            config_changed.send(sender=self.model, property_ids=ids)

    def update(self, **kwargs: Any) -> int:
        ids = self._property_ids()
        count = super().update(**kwargs)
        self._changed(ids | self._property_ids())
        return count

    def bulk_update(self, objs: Iterable[Any], *args: Any, **kwargs: Any) -> int:
        objs = list(objs)
        count = super().bulk_update(objs, *args, **kwargs)
        self._changed(self.filter(pk__in=[o.pk for o in objs])._property_ids())
        return count

    def bulk_create(self, objs: Iterable[Any], *args: Any, **kwargs: Any) -> list[Any]:
        created = super().bulk_create(objs, *args, **kwargs)
        path = self._property_path()
        if path == "property_id":
            self._changed(getattr(o, "property_id", None) for o in created)
        else:
            self._changed(self.filter(pk__in=[o.pk for o in created if o.pk])._property_ids())
        return created


ConfigManager = models.Manager.from_queryset(ConfigQuerySet)
