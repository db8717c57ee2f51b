"""Withdrawals: the EIP-712 messages a creator's wallet signs, and the request's state machine.

Typed data (docs/settlement.md): domain `{name: "tokenbridge", version: "1", chainId,
verifyingContract: <CoinVault>}`, so a signature is bound to one chain and one vault and
cannot be replayed elsewhere (hubble-contracts#665). Two primary types:

    WalletLink(string creatorId, bytes32 creatorKey, address wallet, uint256 deadline)
    Withdrawal(string id, bytes32 creatorKey, address to, uint256 amount, uint256 deadline)

A withdrawal id is the nonce: it is unique forever, and its payout id on-chain (`seq`) is
unique too, so a signed request pays at most once.

States: requested -> submitted -> confirmed | failed; failed only from requested or
submitted. The hold placed at request time is posted on `confirmed` and voided on `failed`
(the funds return to earnings). Pure: this module builds plain dicts; signing and recovery
happen in the service with eth-account.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from tokenbridge.domain.errors import IllegalTransition, InvalidInput, SignatureExpired
from tokenbridge.domain.money import validate_amount

EIP712_NAME = "tokenbridge"
EIP712_VERSION = "1"
MAX_DEADLINE = 2**64  # seconds; a uint256 on the wire, but nothing sensible is later
_ADDRESS_RE = re.compile(r"^0x[0-9a-fA-F]{40}\Z")
_SIGNATURE_RE = re.compile(r"^0x[0-9a-fA-F]{130}\Z")
_BYTES32_RE = re.compile(r"^0x[0-9a-fA-F]{64}\Z")

WALLET_LINK_TYPES: dict[str, list[dict[str, str]]] = {
    "WalletLink": [
        {"name": "creatorId", "type": "string"},
        {"name": "creatorKey", "type": "bytes32"},
        {"name": "wallet", "type": "address"},
        {"name": "deadline", "type": "uint256"},
    ]
}
WITHDRAWAL_TYPES: dict[str, list[dict[str, str]]] = {
    "Withdrawal": [
        {"name": "id", "type": "string"},
        {"name": "creatorKey", "type": "bytes32"},
        {"name": "to", "type": "address"},
        {"name": "amount", "type": "uint256"},
        {"name": "deadline", "type": "uint256"},
    ]
}


def eip712_domain(chain_id: int, vault: str) -> dict[str, Any]:
    return {
        "name": EIP712_NAME,
        "version": EIP712_VERSION,
        "chainId": int(chain_id),
        "verifyingContract": validate_address(vault, "vault"),
    }


def validate_address(value: object, what: str = "address") -> str:
    if not isinstance(value, str) or not _ADDRESS_RE.match(value):
        raise InvalidInput(f"{what} must be a 0x-prefixed 20-byte hex address")
    if int(value, 16) == 0:
        raise InvalidInput(f"{what} must not be the zero address")
    return value


def validate_signature(value: object) -> str:
    if not isinstance(value, str) or not _SIGNATURE_RE.match(value):
        raise InvalidInput("signature must be 0x-prefixed 65-byte hex (r, s, v)")
    return value.lower()


def validate_deadline(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value < MAX_DEADLINE:
        raise InvalidInput(f"deadline must be a unix time in seconds, got {value!r}")
    return value


def _key_bytes(creator_key: str) -> bytes:
    if not _BYTES32_RE.match(creator_key):
        raise InvalidInput("creator key must be 0x-prefixed 32-byte hex")
    return bytes.fromhex(creator_key[2:])


def check_deadline(deadline: int, now: int) -> None:
    """A signature is valid up to and including its deadline second."""
    if now > deadline:
        raise SignatureExpired(f"the signature expired at {deadline} (now {now})")


@dataclass(frozen=True, slots=True)
class WalletLinkMessage:
    creator_id: str
    creator_key: str  # 0x bytes32
    wallet: str
    deadline: int

    def typed_data(self, chain_id: int, vault: str) -> dict[str, Any]:
        return {
            "domain": eip712_domain(chain_id, vault),
            "types": WALLET_LINK_TYPES,
            "message": {
                "creatorId": self.creator_id,
                "creatorKey": _key_bytes(self.creator_key),
                "wallet": validate_address(self.wallet, "wallet"),
                "deadline": validate_deadline(self.deadline),
            },
        }


@dataclass(frozen=True, slots=True)
class WithdrawalMessage:
    id: str
    creator_key: str  # 0x bytes32
    to: str
    amount: int
    deadline: int

    def typed_data(self, chain_id: int, vault: str) -> dict[str, Any]:
        return {
            "domain": eip712_domain(chain_id, vault),
            "types": WITHDRAWAL_TYPES,
            "message": {
                "id": self.id,
                "creatorKey": _key_bytes(self.creator_key),
                "to": validate_address(self.to, "to"),
                "amount": validate_amount(self.amount),
                "deadline": validate_deadline(self.deadline),
            },
        }


# --- policy -----------------------------------------------------------------------------------


def withdrawable(matured_on_chain: int, paid_on_chain: int, held: int) -> int:
    """What a creator may still request: matured on-chain credit - paid on-chain - held off-chain.

    `held` counts every hold not yet posted, including payouts already on-chain whose
    confirmation is not yet handled (those are in `paid_on_chain` too), so the figure can
    only be too low for a moment, never too high.
    """
    return max(0, matured_on_chain - paid_on_chain - held)


# --- state machine ----------------------------------------------------------------------------


class WithdrawalState(StrEnum):
    REQUESTED = "requested"
    SUBMITTED = "submitted"
    CONFIRMED = "confirmed"
    FAILED = "failed"


_TRANSITIONS: dict[WithdrawalState, frozenset[WithdrawalState]] = {
    WithdrawalState.REQUESTED: frozenset({WithdrawalState.SUBMITTED, WithdrawalState.FAILED}),
    # submitted -> requested: the payout tx was superseded (its nonce used by another tx);
    # the request goes back to the queue and is paid by a later batch under the same id
    WithdrawalState.SUBMITTED: frozenset(
        {WithdrawalState.CONFIRMED, WithdrawalState.FAILED, WithdrawalState.REQUESTED}
    ),
    WithdrawalState.CONFIRMED: frozenset(),
    WithdrawalState.FAILED: frozenset(),
}


@dataclass(frozen=True, slots=True)
class WithdrawalSubmitted:
    withdrawal_id: str
    chain_tx_id: int


@dataclass(frozen=True, slots=True)
class WithdrawalConfirmed:
    withdrawal_id: str
    tx_hash: str


@dataclass(frozen=True, slots=True)
class WithdrawalFailed:
    withdrawal_id: str
    reason: str


@dataclass(frozen=True, slots=True)
class WithdrawalRequeued:
    withdrawal_id: str


Event = WithdrawalSubmitted | WithdrawalConfirmed | WithdrawalFailed | WithdrawalRequeued


@dataclass(slots=True)
class Withdrawal:
    """A creator's request; each method records what happened (`events`) or raises IllegalTransition."""

    id: str
    state: WithdrawalState = WithdrawalState.REQUESTED
    events: list[Event] = field(default_factory=list)

    def _move(self, to: WithdrawalState) -> None:
        if to not in _TRANSITIONS[self.state]:
            raise IllegalTransition(f"withdrawal {self.id} is {self.state.value}; cannot become {to.value}")
        self.state = to

    def submit(self, chain_tx_id: int) -> None:
        self._move(WithdrawalState.SUBMITTED)
        self.events.append(WithdrawalSubmitted(self.id, chain_tx_id))

    def confirm(self, tx_hash: str) -> None:
        """The payout is confirmed on-chain: post the hold."""
        self._move(WithdrawalState.CONFIRMED)
        self.events.append(WithdrawalConfirmed(self.id, tx_hash))

    def fail(self, reason: str) -> None:
        """Failed for good: void the hold, the funds return to earnings."""
        self._move(WithdrawalState.FAILED)
        self.events.append(WithdrawalFailed(self.id, reason))

    def requeue(self) -> None:
        """The payout tx never ran (superseded): back to the queue for the next batch."""
        self._move(WithdrawalState.REQUESTED)
        self.events.append(WithdrawalRequeued(self.id))

    @property
    def final(self) -> bool:
        return self.state in (WithdrawalState.CONFIRMED, WithdrawalState.FAILED)


# --- payout batches -----------------------------------------------------------------------------

MAX_GAS = 2**24
# Measured on anvil (OZ 5, optimizer 200): payout() to fresh wallets and fresh creator keys
# costs 101k gas for 1 item, 3.28M for 100, 9.73M for 300, i.e. ~32.3k per item on ~49k;
# the formula adds ~15 % per item and a larger base (tests/integration/test_withdrawals.py
# checks the measured gas of a batch stays under it).
PAYOUT_BASE_GAS = 120_000
PAYOUT_GAS_PER_ITEM = 37_000
MAX_PAYOUT_BATCH = 400


def payout_gas(n: int) -> int:
    if n < 1:
        raise InvalidInput("a payout batch needs at least one item")
    return PAYOUT_BASE_GAS + PAYOUT_GAS_PER_ITEM * n


def max_payout_batch() -> int:
    """Items per payout tx so that `payout_gas(n)` stays within 2**24 (EIP-7825)."""
    return min(MAX_PAYOUT_BATCH, (MAX_GAS - PAYOUT_BASE_GAS) // PAYOUT_GAS_PER_ITEM)
