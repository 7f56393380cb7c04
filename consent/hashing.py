"""Keyed hashes for identifiers that must outlive an erasure (docs/CONTRACT.md).

A plain hash of a visitor id can be reversed by hashing candidate ids; an HMAC
with a secret from settings cannot be linked back without that secret.
"""

import hashlib
import hmac
import ipaddress

from django.conf import settings


def visitor_key(property_id: int, visitor_id: str) -> str:
    message = f"{property_id}:{visitor_id}".encode()
    return hmac.new(settings.VISITOR_HASH_KEY.encode(), message, hashlib.sha256).hexdigest()


def truncate_ip(ip: str | None) -> str:
    """Keep the network, not the host: /24 for IPv4, /48 for IPv6."""
    if not ip:
        return ""
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return ""
    prefix = 24 if address.version == 4 else 48
    return str(ipaddress.ip_network(f"{address}/{prefix}", strict=False))
