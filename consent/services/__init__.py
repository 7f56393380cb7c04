"""Writes of the consent app. Other apps call these; see each module for its part.

- ``consent``: publish policies, record consent (storefront, officer), GPC, opt-outs;
- ``requests``: data-subject requests, their deadlines and status changes;
- ``access``: access exports; ``erasure``: erasure and its receipt;
- ``retention``: retention periods and the purge; ``audit``: the audit log.
"""

from .consent import (
    GPC_PURPOSES,
    REQUIRED_PURPOSES,
    consent_opt_out,
    consent_record,
    consent_record_by_officer,
    gpc_apply,
    policy_publish,
    purposes_validate,
)

__all__ = [
    "GPC_PURPOSES",
    "REQUIRED_PURPOSES",
    "consent_opt_out",
    "consent_record",
    "consent_record_by_officer",
    "gpc_apply",
    "policy_publish",
    "purposes_validate",
]
