"""The life of one chain transaction, as pure rules: states, fee bumps, confirmations.

    signed ──> broadcast ──> mined ──> confirmed
       │           │  ▲         └────> reverted
       │           │  └── reorg ─┘
       └───────────┴──> superseded
    signed ──> mined            (a lost RPC reply: the node took it, we never heard back)

`confirmed`, `reverted` and `superseded` are final. `superseded` means the nonce was
consumed by a transaction that is not one of ours; the caller re-submits its work, which
the vault's unique ids make safe. No I/O here: integers, enums and rules only.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from tokenbridge.domain.errors import IllegalTransition, InvalidInput


class TxState(StrEnum):
    SIGNED = "signed"
    BROADCAST = "broadcast"
    MINED = "mined"
    CONFIRMED = "confirmed"
    REVERTED = "reverted"
    SUPERSEDED = "superseded"


FINAL_STATES: frozenset[TxState] = frozenset({TxState.CONFIRMED, TxState.REVERTED, TxState.SUPERSEDED})
# states that occupy a nonce in the mempool (what `max_in_flight` bounds)
UNMINED_STATES: frozenset[TxState] = frozenset({TxState.SIGNED, TxState.BROADCAST})

ALLOWED: dict[TxState, frozenset[TxState]] = {
    TxState.SIGNED: frozenset({TxState.BROADCAST, TxState.MINED, TxState.SUPERSEDED}),
    TxState.BROADCAST: frozenset({TxState.MINED, TxState.SUPERSEDED}),
    # back to broadcast when a reorg removes the block before it is confirmed
    TxState.MINED: frozenset({TxState.CONFIRMED, TxState.REVERTED, TxState.BROADCAST}),
    TxState.CONFIRMED: frozenset(),
    TxState.REVERTED: frozenset(),
    TxState.SUPERSEDED: frozenset(),
}


def transition(current: TxState | str, new: TxState | str) -> TxState:
    """Return `new` if the move is allowed; raise IllegalTransition otherwise."""
    cur, nxt = TxState(current), TxState(new)
    if nxt not in ALLOWED[cur]:
        raise IllegalTransition(f"chain tx cannot go from {cur.value} to {nxt.value}")
    return nxt


def is_final(state: TxState | str) -> bool:
    return TxState(state) in FINAL_STATES


# --- fees -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Fees:
    """EIP-1559 fee caps in wei."""

    max_fee_per_gas: int
    max_priority_fee_per_gas: int

    def __post_init__(self) -> None:
        if self.max_priority_fee_per_gas < 0 or self.max_fee_per_gas < 0:
            raise InvalidInput("fees must be non-negative")
        if self.max_priority_fee_per_gas > self.max_fee_per_gas:
            raise InvalidInput("max priority fee exceeds max fee")


def _ceil_pct(value: int, pct: int) -> int:
    """value * (100 + pct) / 100, rounded up, and at least value + 1."""
    return max(-(-value * (100 + pct) // 100), value + 1)


def market_fees(base_fee: int, priority_fee: int, max_fee_cap: int) -> Fees:
    """Initial caps: 2 × base fee + tip (survives six full blocks of base-fee growth), capped."""
    if base_fee < 0 or priority_fee < 0 or max_fee_cap <= 0:
        raise InvalidInput("base fee, tip and cap must be non-negative (cap positive)")
    tip = min(priority_fee, max_fee_cap)
    return Fees(max_fee_per_gas=min(2 * base_fee + tip, max_fee_cap), max_priority_fee_per_gas=tip)


def bump_fees(old: Fees, *, pct: int, max_fee_cap: int, market: Fees | None = None) -> Fees | None:
    """Fees for a replacement with the same nonce, or None if `max_fee_cap` forbids a valid one.

    Both caps rise by at least `pct` percent (rounded up) and at least 1 wei, which is what
    nodes require to accept a replacement; if the market asks for more, the market wins.
    The result never exceeds `max_fee_cap`; when the minimum valid bump would, there is no
    bump (the transaction waits, and the operator raises the cap).
    """
    if pct < 1:
        raise InvalidInput("fee bump must be at least 1 percent")
    tip = _ceil_pct(old.max_priority_fee_per_gas, pct)
    fee = _ceil_pct(old.max_fee_per_gas, pct)
    if market is not None:
        tip = max(tip, market.max_priority_fee_per_gas)
        fee = max(fee, market.max_fee_per_gas)
    fee = max(fee, tip)
    min_fee = _ceil_pct(old.max_fee_per_gas, pct)
    min_tip = _ceil_pct(old.max_priority_fee_per_gas, pct)
    fee = min(fee, max_fee_cap)
    tip = min(tip, fee)
    if fee < min_fee or tip < min_tip:
        return None
    return Fees(max_fee_per_gas=fee, max_priority_fee_per_gas=tip)


# --- what a node's refusal means -----------------------------------------------------------


class SendVerdict(StrEnum):
    ACCEPTED = "accepted"  # "already known": the node has these very bytes
    NONCE_USED = "nonce-used"  # "nonce too low": ours was mined, or someone else's (resolved later)
    OUTBID = "outbid"  # "underpriced": another tx holds the nonce in the pool; a re-price answers
    RETRY = "retry"  # may pass later as is (funds arrive, base fee drops, node recovers)
    REFUSED = "refused"  # no node will ever take these bytes: the nonce needs a cancel


_VERDICTS: tuple[tuple[SendVerdict, tuple[str, ...]], ...] = (
    (SendVerdict.ACCEPTED, ("already known", "already imported", "known transaction", "alreadyknown")),
    (SendVerdict.NONCE_USED, ("nonce too low", "nonce is too low", "noncetoolow", "old nonce")),
    (SendVerdict.OUTBID, ("underpriced", "replacement transaction", "fee too low")),
    (
        SendVerdict.REFUSED,
        (
            "intrinsic gas too low",
            "exceeds block gas limit",
            "gas limit too high",
            "exceeds the transaction gas cap",
            "exceeds maximum transaction gas",
            "invalid chain id",
            "invalid sender",
            "invalid signature",
            "oversized data",
            "transaction type not supported",
            "tx type not supported",
        ),
    ),
)


def classify_send_error(message: str) -> SendVerdict:
    """What a node's error reply to eth_sendRawTransaction means for the stored bytes."""
    lowered = message.lower()
    for verdict, needles in _VERDICTS:
        if any(n in lowered for n in needles):
            return verdict
    return SendVerdict.RETRY


# --- gas -------------------------------------------------------------------------------------

TX_BASE_GAS = 21_000


def intrinsic_gas(data: bytes) -> int:
    """The least gas a call with this calldata may carry (EIP-2028 costs, EIP-7623 floor).

    A transaction below it is refused by every node, for good: its nonce would never be used
    and every later nonce would wait behind it. So it is refused at submit instead.
    """
    zeros = data.count(0)
    nonzeros = len(data) - zeros
    standard = TX_BASE_GAS + 4 * zeros + 16 * nonzeros
    floor = TX_BASE_GAS + 10 * (zeros + 4 * nonzeros)
    return max(standard, floor)


# --- confirmations and nonces -------------------------------------------------------------


def confirmed_at(mined_block: int, confirmations: int) -> int:
    """The head block number at which a tx mined in `mined_block` counts as confirmed.

    `confirmations` is the number of blocks built on top of the tx's block; 0 means final as
    soon as it is mined.
    """
    if confirmations < 0 or mined_block < 0:
        raise InvalidInput("confirmations and block numbers are non-negative")
    return mined_block + confirmations


def is_confirmed(mined_block: int, head: int, confirmations: int) -> bool:
    return head >= confirmed_at(mined_block, confirmations)


def settle_state(receipt_status: int, mined_block: int, head: int, confirmations: int) -> TxState:
    """State of a mined tx given its receipt status and the chain head."""
    if not is_confirmed(mined_block, head, confirmations):
        return TxState.MINED
    return TxState.CONFIRMED if receipt_status == 1 else TxState.REVERTED


def nonce_taken_by_other(our_nonce: int, settled_nonce: int, have_own_receipt: bool) -> bool:
    """True when our nonce was consumed by a transaction that is not ours.

    `settled_nonce` is the signer's transaction count at the deepest block we trust
    (head − confirmations): a nonce below it is used for good. If none of our attempts for
    that nonce has a receipt, someone else's transaction used it.
    """
    return our_nonce < settled_nonce and not have_own_receipt


def next_cursor(cursor: int | None, chain_latest_nonce: int) -> int:
    """The nonce cursor after looking at the chain: only ever raised to the mined count.

    The cursor moves up when another sender used the key (its transactions are mined, a
    proof); it never moves down here: a lower chain count only means ours are not mined yet.
    """
    if cursor is None:
        return chain_latest_nonce
    return max(cursor, chain_latest_nonce)
