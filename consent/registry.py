"""The registry of stores that hold data about a visitor.

Every app that stores visitor data registers each store here (docs/CONTRACT.md), so
that access, erasure and retention work can run over all of them without the
consent app importing the apps that own them.

A store says how to find a visitor's rows (``visitor_field``, ``keyed``), how
an erasure treats them (``erase``: delete, anonymise, keep, or a custom
``eraser``; plus ``cache_keys`` and ``extra_erase`` for what lives outside the
table), whether an access export includes them (``export``, ``exporter``) and
which retention period purges them by age (``retention`` over ``time_field``).
"""

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from django.db import models

from .hashing import visitor_key

# The retention periods a property sets; a store purged by age follows one of them.
RETENTION_KINDS: dict[str, str] = {
    "raw_events": "Raw events",
    "quarantine": "Quarantined events",
    "adjustment_log": "Adjustment log",
    "survey_answers": "Survey answers",
}

DELETE = "delete"
ANONYMISE = "anonymise"
KEEP = "keep"
CUSTOM = "custom"
ERASE_MODES = (DELETE, ANONYMISE, KEEP)


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
    # Extra erasure work a store needs beyond its rows (files, caches); runs before them.
    # Returns how many things it removed.
    extra_erase: Callable[[int, str], int] | None = field(default=None, compare=False)
    # Which retention period (a key of RETENTION_KINDS) purges rows older than it.
    retention: str | None = None
    # What an erasure does to the rows: "delete"; "anonymise" (set ``anonymise``'s fields;
    # a callable value is called once per erasure, e.g. a random pseudonym); "keep" (only
    # for keyed stores: the keyed hash may outlive an erasure). Default: keep a keyed
    # store, delete any other.
    erase: str | None = None
    anonymise: Mapping[str, Any] | None = field(default=None, compare=False)
    # Replaces the row action entirely; returns rows touched per model label.
    eraser: Callable[[int, str], dict[str, int]] | None = field(default=None, compare=False)
    # Cache keys (django.core.cache) holding this visitor's data, deleted on erasure.
    cache_keys: Callable[[int, str], Iterable[str]] | None = field(default=None, compare=False)
    # Included in access exports; ``exporter`` replaces the default (every concrete column).
    export: bool = True
    exporter: Callable[[int, str], Iterable[dict[str, Any]]] | None = field(
        default=None, compare=False
    )

    @property
    def erase_mode(self) -> str:
        if self.eraser is not None:
            return CUSTOM
        if self.erase is not None:
            return self.erase
        return KEEP if self.keyed else DELETE

    def queryset_for(self, property_id: int, visitor_id: str) -> models.QuerySet:
        value = visitor_key(property_id, visitor_id) if self.keyed else visitor_id
        manager = self.model._default_manager
        return manager.filter(**{self.property_field: property_id, self.visitor_field: value})

    def rows_for_export(self, property_id: int, visitor_id: str) -> Iterable[dict[str, Any]]:
        if self.exporter is not None:
            return self.exporter(property_id, visitor_id)
        names = [f.attname for f in self.model._meta.concrete_fields]
        return self.queryset_for(property_id, visitor_id).order_by("pk").values(*names).iterator()

    def check(self) -> None:
        """Refuse a registration that erasure or retention could not honour."""
        if self.retention is not None:
            if self.retention not in RETENTION_KINDS:
                raise ValueError(
                    f"{self.label}: retention {self.retention!r} is not one of "
                    f"{sorted(RETENTION_KINDS)}"
                )
            if self.time_field is None:
                raise ValueError(f"{self.label}: a store purged by age needs a time_field")
        if self.erase is not None and self.erase not in ERASE_MODES:
            raise ValueError(f"{self.label}: erase must be one of {ERASE_MODES}")
        if self.erase_mode == KEEP and not self.keyed:
            raise ValueError(
                f"{self.label}: only a store keyed by the keyed hash may keep its rows on erasure"
            )
        if self.erase_mode == ANONYMISE and not self.anonymise:
            raise ValueError(f"{self.label}: erase='anonymise' needs the fields to anonymise")


_stores: dict[str, VisitorStore] = {}


def register(store: VisitorStore) -> None:
    existing = _stores.get(store.label)
    if existing is not None and existing.model is not store.model:
        raise ValueError(f"visitor store {store.label!r} is already registered")
    store.check()
    _stores[store.label] = store


def unregister(label: str) -> None:
    """For tests that register a store of their own."""
    _stores.pop(label, None)


def stores() -> list[VisitorStore]:
    return list(_stores.values())


def store_get(label: str) -> VisitorStore | None:
    return _stores.get(label)


def registered_models() -> set[type[models.Model]]:
    return {store.model for store in _stores.values()}


# Listeners told when a visitor's consent changes (a record written, a suppression added),
# by (property id, keyed hashes): a cache of effective consent (the decision engine's, in
# Redis) drops its copy at once and writes the new one after the commit. Registered by the
# apps that keep such copies; the consent app does not import them.
_consent_listeners: list[Callable[[int, list[str]], None]] = []


def consent_listen(listener: Callable[[int, list[str]], None]) -> None:
    if listener not in _consent_listeners:
        _consent_listeners.append(listener)


def consent_changed(property_id: int, keys: Iterable[str]) -> None:
    """Call inside the transaction that changes the consent of these (keyed) visitors."""
    keyed = sorted(set(keys))
    if keyed:
        for listener in _consent_listeners:
            listener(property_id, keyed)
