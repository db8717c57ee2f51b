"""Money is an integer number of base units; 1 coin = 1,000,000 units (6 decimals)."""

from __future__ import annotations

from .errors import InvalidAmount

DECIMALS = 6
UNITS_PER_COIN = 10**DECIMALS
MAX_AMOUNT_EXCLUSIVE = 2**63


def validate_amount(amount: object, field: str = "amount") -> int:
    """Return `amount` if it is an int with 0 < amount < 2**63, else raise InvalidAmount.

    Booleans and floats are refused even when they hold an integral value: money never
    passes through a float.
    """
    if isinstance(amount, bool) or not isinstance(amount, int):
        raise InvalidAmount(f"{field} must be an integer number of base units, got {type(amount).__name__}")
    if not 0 < amount < MAX_AMOUNT_EXCLUSIVE:
        raise InvalidAmount(f"{field} must satisfy 0 < {field} < 2**63, got {amount}")
    return amount


def format_units(amount: int) -> str:
    """Human display of base units as coins, e.g. 1500000 -> '1.500000'."""
    sign = "-" if amount < 0 else ""
    whole, frac = divmod(abs(amount), UNITS_PER_COIN)
    return f"{sign}{whole:,}.{frac:0{DECIMALS}d}"
