"""The registry of stores that hold data about a visitor.

Every app that stores visitor data registers each store here (DESIGN.md), so
that access, erasure and retention work can run over all of them without the
consent app importing the apps that own them.
"""

from collections.abc import Callable
from dataclasses import dataclass, field

from django.db import models

from .hashing import visitor_key


@dataclass(frozen=True)
class VisitorStore:
    label: str
    model: type[models.Model]
    # The field that identifies the visitor: a raw id, or the keyed hash when ``keyed``.
    visitor_field: str
    keyed: bool = False
    property_field: str = "property_id"
    # The timestamp retention runs against, if the store is purged by age.
    time_field: str | None = None
    description: str = ""
    # Extra erasure work a store needs beyond deleting its rows (files, caches).
    extra_erase: Callable[[int, str], int] | None = field(default=None, compare=False)

    def queryset_for(self, property_id: int, visitor_id: str) -> models.QuerySet:
        value = visitor_key(property_id, visitor_id) if self.keyed else visitor_id
        manager = self.model._default_manager
        return manager.filter(**{self.property_field: property_id, self.visitor_field: value})


_stores: dict[str, VisitorStore] = {}


def register(store: VisitorStore) -> None:
    existing = _stores.get(store.label)
    if existing is not None and existing.model is not store.model:
        raise ValueError(f"visitor store {store.label!r} is already registered")
    _stores[store.label] = store


def stores() -> list[VisitorStore]:
    return list(_stores.values())


def registered_models() -> set[type[models.Model]]:
    return {store.model for store in _stores.values()}
