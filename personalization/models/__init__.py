from .events import (
    Event,
    EventPurpose,
    EventType,
    Fate,
    IngestStat,
    QuarantinedEvent,
    QuarantineStatus,
)
from .properties import (
    ApiKey,
    ApiKeyKind,
    Property,
    PropertyGroupObjectPermission,
    PropertyUserObjectPermission,
)
from .visitors import Session, Visitor

__all__ = [
    "ApiKey",
    "ApiKeyKind",
    "Event",
    "EventPurpose",
    "EventType",
    "Fate",
    "IngestStat",
    "Property",
    "PropertyGroupObjectPermission",
    "PropertyUserObjectPermission",
    "QuarantineStatus",
    "QuarantinedEvent",
    "Session",
    "Visitor",
]
