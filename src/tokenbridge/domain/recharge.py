"""Payment provider webhooks: signatures, event bodies, and the credit/reversal math.

Signature header (Stripe-style): `t=<unix seconds>,v1=<hex>[,v1=<hex>...]` where each
v1 is HMAC-SHA256(secret, f"{t}.".encode() + raw_body). Any configured secret may match
(rotation), compared in constant time; `t` must be within the tolerance of now, in the
past or the future.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from .accounts import validate_id
from .errors import Conflict, InvalidInput, InvalidSignature, TokenbridgeError
from .ledger import EXTERNAL_PAYMENTS, Posting, coins, credit, debit, debt
from .money import validate_amount

EventType = Literal["recharge.succeeded", "recharge.refunded", "recharge.chargeback"]
EVENT_TYPES: tuple[EventType, ...] = ("recharge.succeeded", "recharge.refunded", "recharge.chargeback")
REVERSAL_TYPES: frozenset[str] = frozenset({"recharge.refunded", "recharge.chargeback"})
SIGNATURE_HEADER = "Tokenbridge-Signature"
DEFAULT_TOLERANCE_SECONDS = 300
_MAX_HEADER_LEN = 4096
_HEX = frozenset("0123456789abcdefABCDEF")
_SIGNATURE_HEX_LEN = 64  # hex of a SHA-256 HMAC
_MAX_TIMESTAMP_DIGITS = 12


class WebhooksNotConfigured(TokenbridgeError):
    """No webhook secret is configured: a server misconfiguration, not the caller's fault."""

    code = "webhooks-not-configured"
    status = 503
    title = "Webhooks not configured"


class PaymentConflict(Conflict):
    """An event names a known payment id with another amount or account."""

    code = "payment-conflict"
    title = "Payment id reused with another amount or account"


def _is_hex_signature(value: str) -> bool:
    return len(value) == _SIGNATURE_HEX_LEN and all(c in _HEX for c in value)


def sign(secret: bytes, timestamp: int, raw_body: bytes) -> str:
    """The hex v1 signature for `raw_body` at `timestamp` (what the provider computes)."""
    return hmac.new(secret, f"{timestamp}.".encode() + raw_body, hashlib.sha256).hexdigest()


def signature_header(secrets: Sequence[bytes], timestamp: int, raw_body: bytes) -> str:
    return ",".join([f"t={timestamp}", *(f"v1={sign(s, timestamp, raw_body)}" for s in secrets)])


def parse_signature_header(header: str | None) -> tuple[int, list[bytes]]:
    """`(t, [v1 digests as bytes])`; InvalidSignature for anything malformed.

    `t` is 1-12 ASCII digits, given once; every `v1` is exactly 64 hex characters (the
    header may arrive latin-1 decoded with any byte in it: nothing non-ASCII gets further).
    """
    if not header:
        raise InvalidSignature(f"missing {SIGNATURE_HEADER} header")
    if len(header) > _MAX_HEADER_LEN:
        raise InvalidSignature(f"{SIGNATURE_HEADER} header too long")
    if not header.isascii():
        raise InvalidSignature(f"malformed {SIGNATURE_HEADER} header")
    timestamp: int | None = None
    signatures: list[bytes] = []
    for item in header.split(","):
        key, sep, value = item.strip().partition("=")
        value = value.strip()
        if not sep:
            raise InvalidSignature(f"malformed {SIGNATURE_HEADER} header")
        if key == "t":
            if timestamp is not None or not value.isdigit() or len(value) > _MAX_TIMESTAMP_DIGITS:
                raise InvalidSignature(f"malformed timestamp in {SIGNATURE_HEADER} header")
            timestamp = int(value)
        elif key == "v1":
            if not _is_hex_signature(value):
                raise InvalidSignature(f"malformed v1 signature in {SIGNATURE_HEADER} header")
            signatures.append(bytes.fromhex(value))
        # other schemes (v0, ...) are ignored, as Stripe does
    if timestamp is None:
        raise InvalidSignature(f"{SIGNATURE_HEADER} header has no timestamp")
    if not signatures:
        raise InvalidSignature(f"{SIGNATURE_HEADER} header has no v1 signature")
    return timestamp, signatures


def verify_signature(
    raw_body: bytes,
    header: str | None,
    secrets: Sequence[bytes],
    now: int,
    tolerance: int = DEFAULT_TOLERANCE_SECONDS,
) -> int:
    """Return the signed timestamp if some v1 matches some secret within tolerance; else InvalidSignature."""
    if not secrets:
        raise WebhooksNotConfigured("no webhook secret is configured (TOKENBRIDGE_WEBHOOK_SECRETS)")
    timestamp, signatures = parse_signature_header(header)
    matched = False
    for secret in secrets:
        expected = hmac.new(secret, f"{timestamp}.".encode() + raw_body, hashlib.sha256).digest()
        for candidate in signatures:
            # no early exit: every comparison runs in constant time
            matched |= hmac.compare_digest(expected, candidate)
    if not matched:
        raise InvalidSignature("no signature matches any configured secret")
    if abs(now - timestamp) > tolerance:
        raise InvalidSignature(f"signature timestamp {timestamp} is outside the {tolerance} s tolerance of now ({now})")
    return timestamp


@dataclass(frozen=True, slots=True)
class PaymentEvent:
    id: str
    type: EventType
    payment_id: str
    account_id: str
    amount: int

    def body(self) -> dict[str, object]:
        """The fields that define the event, for idempotency comparison."""
        return {
            "id": self.id,
            "type": self.type,
            "payment_id": self.payment_id,
            "account_id": self.account_id,
            "amount": self.amount,
        }


def parse_event(raw_body: bytes) -> PaymentEvent:
    """Validate `{"id", "type", "data": {"payment_id", "account_id", "amount"}}`; InvalidInput otherwise."""
    try:
        doc = json.loads(raw_body)
    except (UnicodeDecodeError, ValueError):
        raise InvalidInput("webhook body is not valid JSON") from None
    if not isinstance(doc, dict):
        raise InvalidInput("webhook body must be a JSON object")
    event_type = doc.get("type")
    if event_type not in EVENT_TYPES:
        raise InvalidInput(f"type must be one of {', '.join(EVENT_TYPES)}, got {event_type!r}")
    data = doc.get("data")
    if not isinstance(data, dict):
        raise InvalidInput("data must be an object with payment_id, account_id and amount")
    return PaymentEvent(
        id=validate_id(doc.get("id"), "id"),
        type=event_type,
        payment_id=validate_id(data.get("payment_id"), "data.payment_id"),
        account_id=validate_id(data.get("account_id"), "data.account_id"),
        amount=validate_amount(data.get("amount"), "data.amount"),
    )


@dataclass(frozen=True, slots=True)
class RechargeOutcome:
    """A recharge pays outstanding debt first; the rest becomes coins (and is minted)."""

    debt_repaid: int
    credited: int

    def posting(self, account_id: str) -> Posting:
        return Posting.of(
            "recharge",
            debit(EXTERNAL_PAYMENTS, self.debt_repaid + self.credited),
            credit(debt(account_id), self.debt_repaid),
            credit(coins(account_id), self.credited),
        )


def apply_recharge(amount: int, outstanding_debt: int) -> RechargeOutcome:
    validate_amount(amount)
    if outstanding_debt < 0:
        raise InvalidInput("outstanding debt cannot be negative")
    repaid = min(amount, outstanding_debt)
    return RechargeOutcome(debt_repaid=repaid, credited=amount - repaid)


@dataclass(frozen=True, slots=True)
class ReversalOutcome:
    """A refund/chargeback takes back what the coins still cover; the rest is recorded debt."""

    reversed: int
    debt_recorded: int

    @property
    def total(self) -> int:
        return self.reversed + self.debt_recorded

    def posting(self, kind: str, account_id: str) -> Posting:
        return Posting.of(
            kind,
            debit(coins(account_id), self.reversed),
            debit(debt(account_id), self.debt_recorded),
            credit(EXTERNAL_PAYMENTS, self.total),
        )


def apply_reversal(requested: int, refundable: int, coin_balance: int) -> ReversalOutcome:
    """Reverse min(requested, refundable) of a payment: coins first, the shortfall becomes debt.

    `refundable` is what is left of the payment after earlier reversals; a reversal never
    takes back more than was paid.
    """
    validate_amount(requested)
    if refundable < 0 or coin_balance < 0:
        raise InvalidInput("refundable amount and coin balance cannot be negative")
    effective = min(requested, refundable)
    taken = min(effective, coin_balance)
    return ReversalOutcome(reversed=taken, debt_recorded=effective - taken)
