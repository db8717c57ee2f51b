"""The revenue split, the same formula as CoinVault's `_creatorShare`."""

from __future__ import annotations

from dataclasses import dataclass

from .errors import InvalidInput
from .money import validate_amount

BPS_DENOMINATOR = 10_000


@dataclass(frozen=True, slots=True)
class Split:
    gross: int
    creator_amount: int
    platform_amount: int
    creator_bps: int


def validate_bps(bps: object) -> int:
    if isinstance(bps, bool) or not isinstance(bps, int) or not 0 <= bps <= BPS_DENOMINATOR:
        raise InvalidInput(f"creator_bps must be an integer in [0, 10000], got {bps!r}")
    return bps


def split(gross: int, creator_bps: int) -> Split:
    """creator = gross * bps // 10_000; platform = gross - creator (the platform gets the dust)."""
    validate_amount(gross, "gross")
    validate_bps(creator_bps)
    creator_amount = creator_share(gross, creator_bps)
    return Split(gross, creator_amount, gross - creator_amount, creator_bps)


def creator_share(gross: int, creator_bps: int) -> int:
    """`split`'s creator amount for an already validated gross and rate (the batch hot path
    validates the rate once per call and each gross once)."""
    return gross * creator_bps // BPS_DENOMINATOR
