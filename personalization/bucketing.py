"""Deterministic bucketing, bit-for-bit compatible with GrowthBook's SDKs.

A visitor's id and an experiment's seed hash to a number in [0, 1); variations own half-open
ranges of that interval. Matching the reference SDK exactly means an assignment made here is the
one a GrowthBook SDK would make for the same visitor, so the two can be mixed or migrated.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Any

__all__ = ["choose_variation", "get_bucket_ranges", "get_equal_weights", "hash", "in_namespace"]

_FNV_OFFSET_BASIS = 0x811C9DC5
_FNV_PRIME = 0x01000193


def _utf16_code_units(text: str) -> Sequence[int]:
    # The reference implementation hashes JavaScript string code units (UTF-16), not bytes or
    # code points; only characters outside the BMP make the difference.
    if text.isascii():
        return text.encode("ascii")
    data = text.encode("utf-16-le")
    return struct.unpack(f"<{len(data) // 2}H", data)


def _fnv1a32(text: str) -> int:
    value = _FNV_OFFSET_BASIS
    for unit in _utf16_code_units(text):
        value = ((value ^ unit) * _FNV_PRIME) & 0xFFFFFFFF
    return value


def hash(seed: str, value: str, version: int) -> float | None:
    """Hash `value` with `seed` to a float in [0, 1); None for an unknown hash `version`.

    Version 1 is GrowthBook's original (slightly biased, 1000 buckets) algorithm, kept because
    changing it would reassign existing visitors; version 2 is the unbiased 10000-bucket one.
    """
    if version == 2:
        return (_fnv1a32(str(_fnv1a32(seed + value))) % 10000) / 10000
    if version == 1:
        return (_fnv1a32(value + seed) % 1000) / 1000
    return None


def get_equal_weights(n: int) -> list[float]:
    """`n` equal weights summing to 1 (none when `n` < 1)."""
    if n < 1:
        return []
    return [1 / n] * n


def get_bucket_ranges(
    num_variations: int, coverage: float = 1.0, weights: Sequence[float] | None = None
) -> list[tuple[float, float]]:
    """Half-open [start, end) ranges of the hash space, one per variation.

    Each variation's slot starts where it would at full coverage, so lowering coverage shrinks
    every range in place and never moves a visitor from one variation to another.
    Weights that don't fit (wrong count, or not summing to 1 ± 0.01) fall back to equal weights.
    """
    coverage = min(max(coverage, 0.0), 1.0)
    equal = get_equal_weights(num_variations)
    chosen: Sequence[float] = weights if weights is not None else equal
    if len(chosen) != num_variations:
        chosen = equal
    total = 0.0
    for weight in chosen:
        # Summed left to right like the reference SDK; math.fsum or a compensated sum() could
        # land on the other side of the 0.99/1.01 bounds for borderline weights.
        total += weight
    if total < 0.99 or total > 1.01:
        chosen = equal

    ranges: list[tuple[float, float]] = []
    cumulative = 0.0
    for weight in chosen:
        start = cumulative
        cumulative += weight
        ranges.append((start, start + coverage * weight))
    return ranges


def choose_variation(n: float, ranges: Sequence[Sequence[float]]) -> int:
    """Index of the range containing `n`, or -1 when `n` falls outside every range."""
    for index, (start, end) in enumerate(ranges):
        if start <= n < end:
            return index
    return -1


def in_namespace(user_id: str, namespace: Sequence[Any]) -> bool:
    """Whether `user_id` falls in the (name, start, end) slice of a namespace.

    Experiments sharing a namespace name but with disjoint slices never share a visitor.
    """
    name, start, end = namespace
    n = hash("__" + name, user_id, 1)
    if n is None:
        return False
    return bool(start <= n < end)
