"""Epochs: when to close one, what it settles on-chain, and how the ledger is made to match.

Close rules (`EpochPolicy.reason_to_close`): an open epoch with at least one gift closes
when its oldest gift has waited `max_age_s`, or it holds `max_gifts` gifts, or the split rate changes: when the
vault's rate differs from the rate of a gift in the epoch, or a proposed rate becomes
applicable within `rate_lead_s` (so the epoch settles at the rate its gifts were split at).

Settlement (`plan_settlement`): the vault records the bps in force when the first chunk
executes and credits each creator `floor(G * bps / 10000)` of its per-epoch gross `G`. The
ledger credited each gift's floor `floor(g * bps_gift / 10000)`. So for each creator:

    adjustment = floor(G * bps / 10000) - sum(ledger creator amounts of its gifts)

is posted at close as one transfer between `platform:revenue` and the creator's earnings
(platform -> creator when positive; the rounding part is always >= 0 and < the number of
gifts, since a sum of floors is at most the floor of the sum). Then ledger earnings ==
the vault's `earned` exactly. When a gift was split at a rate that is not the one the vault
will record (the rate changed between posting and settlement), the gift is re-split at the
enforced rate (its leaf must verify with `verifyGift`), and the same per-creator transfer
carries the difference (which may then be creator -> platform).

Chunks: creators (sorted by key) are cut into chunks of at most `max_creators_per_chunk()`
so that each `settleGifts` transaction fits 2**24 gas (EIP-7825).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from tokenbridge.domain.errors import IllegalTransition, InvalidInput
from tokenbridge.domain.split import BPS_DENOMINATOR, Split, split, validate_bps

MAX_GAS = 2**24
# Measured on anvil (OZ 5, optimizer 200): settleGifts with fresh creator keys costs 146k gas
# for 1 creator, 2.47M for 100, 7.20M for 300: ~23.7k per creator on ~122k (existing keys
# ~6.6k). The formula adds ~14 % per creator and a larger base.
SETTLE_BASE_GAS = 200_000
SETTLE_GAS_PER_CREATOR = 27_000
MAX_CREATORS_PER_CHUNK = 500
MINT_GAS = 150_000  # measured 57.7k
BURN_GAS = 150_000  # measured 74.0k
COMMIT_GAS = 200_000  # measured 78.6k


def settle_gas(creators: int) -> int:
    if creators < 1:
        raise InvalidInput("a settle chunk needs at least one creator")
    return SETTLE_BASE_GAS + SETTLE_GAS_PER_CREATOR * creators


def max_creators_per_chunk() -> int:
    return min(MAX_CREATORS_PER_CHUNK, (MAX_GAS - SETTLE_BASE_GAS) // SETTLE_GAS_PER_CREATOR)


class EpochState(StrEnum):
    OPEN = "open"
    CLOSED = "closed"
    SUBMITTED = "submitted"
    SETTLED = "settled"


_TRANSITIONS: dict[EpochState, frozenset[EpochState]] = {
    EpochState.OPEN: frozenset({EpochState.CLOSED}),
    EpochState.CLOSED: frozenset({EpochState.SUBMITTED}),
    EpochState.SUBMITTED: frozenset({EpochState.SETTLED}),
    EpochState.SETTLED: frozenset(),
}


def transition(current: str, to: EpochState) -> str:
    state = EpochState(current)
    if to not in _TRANSITIONS[state]:
        raise IllegalTransition(f"epoch is {state.value}; cannot become {to.value}")
    return to.value


@dataclass(frozen=True, slots=True)
class EpochPolicy:
    max_age_s: float = 300.0
    max_gifts: int = 10_000
    rate_lead_s: float = 600.0

    def __post_init__(self) -> None:
        if self.max_age_s <= 0 or self.max_gifts < 1 or self.rate_lead_s < 0:
            raise InvalidInput("epoch policy needs max_age_s > 0, max_gifts >= 1, rate_lead_s >= 0")

    def reason_to_close(
        self,
        *,
        opened_at: datetime,
        now: datetime,
        gift_count: int,
        gift_rates: Iterable[int],
        chain_bps: int,
        pending_effective_at: int | None,
    ) -> str | None:
        """Why the open epoch must close now, or None. An empty epoch never closes."""
        if gift_count <= 0:
            return None
        if gift_count >= self.max_gifts:
            return f"{gift_count} gifts (max {self.max_gifts})"
        if now - opened_at >= timedelta(seconds=self.max_age_s):
            return f"the oldest gift is {int((now - opened_at).total_seconds())} s old (max {int(self.max_age_s)})"
        if any(r != chain_bps for r in gift_rates):
            return f"the vault's split rate is now {chain_bps} bps"
        if pending_effective_at is not None and pending_effective_at <= now.timestamp() + self.rate_lead_s:
            return f"a new split rate may apply from {pending_effective_at}"
        return None


@dataclass(frozen=True, slots=True)
class EpochGift:
    """A gift as the ledger recorded it."""

    id: str
    creator_id: str
    creator_key: str  # 0x bytes32
    gross: int
    creator_amount: int
    bps: int


@dataclass(frozen=True, slots=True)
class CreatorCredit:
    creator_id: str
    creator_key: str
    gross: int
    ledger_credit: int  # what the ledger credited for these gifts before the close
    chain_credit: int  # floor(gross * bps / 10000): what the vault credits

    @property
    def adjustment(self) -> int:
        """chain - ledger: > 0 platform -> creator, < 0 creator -> platform."""
        return self.chain_credit - self.ledger_credit


@dataclass(frozen=True, slots=True)
class SettlementPlan:
    bps: int
    gift_count: int
    gross_total: int
    creator_total: int  # on-chain creator credits
    credits: tuple[CreatorCredit, ...]  # sorted by creator key
    resplit: tuple[tuple[str, Split], ...]  # gifts whose split changes to the enforced rate
    chunks: tuple[tuple[CreatorCredit, ...], ...]

    @property
    def rounding_total(self) -> int:
        return sum(c.adjustment for c in self.credits)


def plan_settlement(gifts: Sequence[EpochGift], bps: int, chunk_size: int | None = None) -> SettlementPlan:
    """Everything a close needs: per-creator totals, adjustments, re-splits, chunks."""
    bps = validate_bps(bps)
    if not gifts:
        raise InvalidInput("an epoch needs at least one gift")
    size = max_creators_per_chunk() if chunk_size is None else chunk_size
    if size < 1:
        raise InvalidInput("chunk size must be >= 1")
    gross: dict[str, int] = {}
    ledger: dict[str, int] = {}
    creator_of: dict[str, str] = {}
    resplit: list[tuple[str, Split]] = []
    for g in gifts:
        key = g.creator_key.lower()
        if creator_of.setdefault(key, g.creator_id) != g.creator_id:
            raise InvalidInput(f"creator key {key} belongs to two accounts")
        gross[key] = gross.get(key, 0) + g.gross
        ledger[key] = ledger.get(key, 0) + g.creator_amount
        if g.bps != bps:
            resplit.append((g.id, split(g.gross, bps)))
    credits = tuple(
        CreatorCredit(creator_of[k], k, gross[k], ledger[k], gross[k] * bps // BPS_DENOMINATOR) for k in sorted(gross)
    )
    chunks = tuple(credits[i : i + size] for i in range(0, len(credits), size))
    return SettlementPlan(
        bps=bps,
        gift_count=len(gifts),
        gross_total=sum(gross.values()),
        creator_total=sum(c.chain_credit for c in credits),
        credits=credits,
        resplit=tuple(resplit),
        chunks=chunks,
    )
