from .audit import AuditEntry, AuditKind
from .base import AppendOnlyModel, ImmutableError
from .policies import (
    BUILT_IN_PURPOSES,
    ConsentMethod,
    ConsentPolicy,
    ConsentRecord,
    GpcEvidence,
    Purpose,
    Suppression,
    SuppressionReason,
)
from .requests import (
    CLOSED_STATUSES,
    AccessExport,
    ErasureStep,
    ExportStatus,
    PrivacyRequest,
    Regulation,
    RequestKind,
    RequestSource,
    RequestStatus,
    StepStatus,
)
from .retention import RetentionPolicy, RetentionRun

__all__ = [
    "BUILT_IN_PURPOSES",
    "CLOSED_STATUSES",
    "AccessExport",
    "AppendOnlyModel",
    "AuditEntry",
    "AuditKind",
    "ConsentMethod",
    "ConsentPolicy",
    "ConsentRecord",
    "ErasureStep",
    "ExportStatus",
    "GpcEvidence",
    "ImmutableError",
    "PrivacyRequest",
    "Purpose",
    "Regulation",
    "RequestKind",
    "RequestSource",
    "RequestStatus",
    "RetentionPolicy",
    "RetentionRun",
    "StepStatus",
    "Suppression",
    "SuppressionReason",
]
