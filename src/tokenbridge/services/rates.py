"""Where the split rate in force comes from.

The chain-backed provider (reading `CoinVault.creatorBps()`) comes with the worker; until
then a fixed rate from settings.
"""

from __future__ import annotations

from typing import Protocol

from tokenbridge.domain.split import validate_bps


class RateProvider(Protocol):
    def creator_bps(self) -> int: ...


class FixedRate:
    def __init__(self, bps: int) -> None:
        self._bps = validate_bps(bps)

    def creator_bps(self) -> int:
        return self._bps
