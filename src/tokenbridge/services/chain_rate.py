"""The split rate in force, read from the chain (`CoinVault.creatorBps()`), with a short cache.

New gifts are split at this rate (`GiftService(rate=ChainRate(...))`). The cache is short
(`chain_rate_cache_seconds`, default 5 s): a rate change applied on-chain reaches new gifts
within that time, and an epoch never mixes rates at settlement because the epoch worker
closes the epoch when the vault's rate differs from a gift's (services/epochs.py) and re-splits
any gift at the rate the vault records (docs/settlement.md).

When the node cannot be reached and a value was read before, the last value is served
(the rate changes only through propose -> wait `splitDelay` -> apply, both on-chain, so a
stale read is bounded by that process); with no value at all it raises ChainError.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from tokenbridge.domain.errors import ChainError
from tokenbridge.domain.split import validate_bps


@dataclass(frozen=True, slots=True)
class PendingRate:
    bps: int
    effective_at: int  # unix seconds; apply is possible from then on


@dataclass(frozen=True, slots=True)
class SplitInfo:
    creator_bps: int
    pending: PendingRate | None
    split_delay: int
    payout_delay: int


class RateSource(Protocol):
    """What ChainRate reads (VaultClient implements it)."""

    def creator_bps(self) -> int: ...

    def pending_creator_bps(self) -> object: ...  # has .exists, .bps, .effective_at

    def split_delay(self) -> int: ...

    def payout_delay(self) -> int: ...


class ChainRate:
    """`RateProvider` backed by the vault, cached for `ttl_s` seconds."""

    def __init__(self, source: RateSource, ttl_s: float = 5.0, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._source = source
        self._ttl = ttl_s
        self._now = monotonic
        self._lock = threading.Lock()
        self._bps: int | None = None
        self._bps_at = 0.0
        self._info: SplitInfo | None = None
        self._info_at = 0.0

    def creator_bps(self, *, fresh: bool = False) -> int:
        with self._lock:
            if not fresh and self._bps is not None and self._now() - self._bps_at < self._ttl:
                return self._bps
        try:
            bps = validate_bps(self._source.creator_bps())
        except ChainError:
            if self._bps is not None and not fresh:
                return self._bps
            raise
        with self._lock:
            self._bps, self._bps_at = bps, self._now()
        return bps

    def split(self, *, fresh: bool = False) -> SplitInfo:
        """Rate in force, the pending change (if any) with its effective time, and the delays."""
        with self._lock:
            if not fresh and self._info is not None and self._now() - self._info_at < self._ttl:
                return self._info
        pending_raw = self._source.pending_creator_bps()
        exists = bool(getattr(pending_raw, "exists", False))
        pending = (
            PendingRate(int(getattr(pending_raw, "bps", 0)), int(getattr(pending_raw, "effective_at", 0)))
            if exists
            else None
        )
        info = SplitInfo(
            creator_bps=self.creator_bps(fresh=True),
            pending=pending,
            split_delay=int(self._source.split_delay()),
            payout_delay=int(self._source.payout_delay()),
        )
        with self._lock:
            self._info, self._info_at = info, self._now()
        return info

    def invalidate(self) -> None:
        with self._lock:
            self._bps = None
            self._info = None
