"""The payments service: signed provider webhooks -> recharges, refunds, chargebacks.

Each event is applied in one transaction that also inserts the event id (primary key),
so an event is applied at most once; a payment id is credited at most once (primary key
of `payments`) and reversed at most up to its amount. Every effect on coins queues its
on-chain twin in the outbox: `mint` for coins credited, `burn` for coins taken back.
Debt never reaches the chain: it is money the platform is owed off-chain.

A recharge refused at webhook time (restricted account, daily limit) is still *recorded*:
the provider has already captured the money, so the payment is kept in state `refused`
(no coins, no mint) and the first delivery answers the refusal (403). Its later
refund/chargeback then closes it (`refused_reversed`, nothing to reverse) instead of
answering `unknown-payment` forever.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from tokenbridge.adapters.db.models import Account, Payment, PaymentEvent
from tokenbridge.adapters.db.uow import SqlUnitOfWork, UnitOfWorkFactory
from tokenbridge.domain import ledger as lg
from tokenbridge.domain.accounts import DailyLimits, check_daily_limit, check_not_restricted
from tokenbridge.domain.errors import AccountRestricted, InvalidInput, LimitExceeded, NotFound, UnknownPayment
from tokenbridge.domain.recharge import (
    DEFAULT_TOLERANCE_SECONDS,
    REVERSAL_TYPES,
    PaymentConflict,
    apply_recharge,
    apply_reversal,
    parse_event,
    verify_signature,
)
from tokenbridge.domain.recharge import PaymentEvent as EventCmd
from tokenbridge.services._common import Clock, retry_on_race, roll_day, utc_clock
from tokenbridge.services.views import PaymentEventResult

REFUSED = "refused"  # captured by the provider, refused here: nothing credited
REFUSED_REVERSED = "refused_reversed"  # ... and since refunded/charged back: closed


class _Refused(Exception):
    """Carries a recharge refusal out of the transaction that recorded it."""

    def __init__(self, error: AccountRestricted | LimitExceeded) -> None:
        super().__init__(error.detail)
        self.error = error


def _result(row: PaymentEvent) -> PaymentEventResult:
    return PaymentEventResult(
        event_id=row.event_id,
        type=row.type,
        payment_id=row.payment_id,
        account_id=row.account_id,
        amount=row.amount,
        credited=row.credited,
        reversed=row.reversed,
        debt_recorded=row.debt_recorded,
        debt_repaid=row.debt_repaid,
    )


class PaymentService:
    def __init__(
        self,
        uow: UnitOfWorkFactory,
        secrets: Sequence[bytes],
        limits: DailyLimits,
        tolerance_seconds: int = DEFAULT_TOLERANCE_SECONDS,
        clock: Clock = utc_clock,
    ) -> None:
        self._uow = uow
        self._secrets = list(secrets)
        self._limits = limits
        self._tolerance = tolerance_seconds
        self._clock = clock

    @property
    def configured(self) -> bool:
        """Whether any webhook secret is configured (else the endpoint answers 503)."""
        return bool(self._secrets)

    def handle_webhook(
        self, raw_body: bytes, signature_header: str | None, now: int | None = None
    ) -> tuple[PaymentEventResult, bool]:
        """Verify, parse and apply one event; a replayed event id returns the first result, False."""
        verify_signature(
            raw_body,
            signature_header,
            self._secrets,
            int(time.time()) if now is None else now,
            self._tolerance,
        )
        event = parse_event(raw_body)
        req_hash = lg.request_hash(event.body())
        return retry_on_race(lambda: self._apply(event, req_hash))

    def _apply(self, event: EventCmd, req_hash: str) -> tuple[PaymentEventResult, bool]:
        with self._uow.write() as uow:
            seen = uow.payments.event(event.id)
            if seen is not None:
                lg.check_replay("event id", event.id, seen.request_hash, req_hash)
                return _result(seen), False
            account = uow.accounts.lock(event.account_id)
            if account is None:
                raise NotFound(f"account {event.account_id} not found")
            if account.kind != "user":
                raise InvalidInput(f"account {account.id} is a {account.kind} account; only users recharge")
            row = PaymentEvent(
                event_id=event.id,
                type=event.type,
                payment_id=event.payment_id,
                account_id=event.account_id,
                amount=event.amount,
                credited=0,
                reversed=0,
                debt_recorded=0,
                debt_repaid=0,
                request_hash=req_hash,
                created_at=self._clock(),
            )
            refused: _Refused | None = None
            if event.type in REVERSAL_TYPES:
                applied = self._reverse(uow, event, account, row, req_hash)
            else:
                try:
                    applied = self._recharge(uow, event, account, row, req_hash)
                except _Refused as exc:
                    refused, applied = exc, True
            uow.payments.add_event(row)
            uow.commit()
            result = _result(row)
        if refused is not None:
            raise refused.error
        return result, applied

    def _existing_payment(self, uow: SqlUnitOfWork, event: EventCmd, lock: bool) -> Payment | None:
        """The payment row, or None; PaymentConflict when it was recorded with another account or amount."""
        payment = uow.payments.lock(event.payment_id) if lock else uow.payments.get(event.payment_id)
        if payment is None:
            return None
        if payment.account_id != event.account_id:
            raise PaymentConflict(f"payment {event.payment_id} belongs to another account")
        if event.type not in REVERSAL_TYPES and payment.amount != event.amount:
            raise PaymentConflict(
                f"payment {event.payment_id} was recorded with amount {payment.amount}, this event says {event.amount}"
            )
        return payment

    def _recharge(
        self, uow: SqlUnitOfWork, event: EventCmd, account: Account, row: PaymentEvent, req_hash: str
    ) -> bool:
        if self._existing_payment(uow, event, lock=False) is not None:
            return False  # this payment was already credited (or refused) under another event id
        now = row.created_at
        try:
            check_not_restricted(account.id, account.restricted, "recharge")
            roll_day(account, now)
            check_daily_limit(
                account.id,
                "recharge",
                account.recharged_today,
                event.amount,
                self._limits.recharge_limit(account.is_minor),
            )
        except (AccountRestricted, LimitExceeded) as exc:
            # the provider already captured the money: record the payment as refused (no
            # coins, no mint) so that its refund or chargeback can close it
            uow.payments.add(
                Payment(
                    payment_id=event.payment_id,
                    account_id=account.id,
                    amount=event.amount,
                    reversed_amount=0,
                    state=REFUSED,
                    created_at=now,
                    updated_at=now,
                )
            )
            exc.detail = f"{exc.detail}; payment {event.payment_id} recorded as refused (nothing credited)"
            exc.args = (exc.detail,)
            raise _Refused(exc) from None
        outcome = apply_recharge(event.amount, account.debt)
        uow.ledger.apply(
            outcome.posting(account.id),
            f"payment-event:{event.id}",
            req_hash,
            {lg.coins(account.id): account, lg.debt(account.id): account},
            now,
        )
        account.recharged_today += event.amount
        uow.payments.add(
            Payment(
                payment_id=event.payment_id,
                account_id=account.id,
                amount=event.amount,
                reversed_amount=0,
                state="succeeded",
                created_at=now,
                updated_at=now,
            )
        )
        if outcome.credited:
            uow.outbox.add("mint", outcome.credited, account.id, event.id, now)
        row.credited, row.debt_repaid = outcome.credited, outcome.debt_repaid
        return True

    def _reverse(self, uow: SqlUnitOfWork, event: EventCmd, account: Account, row: PaymentEvent, req_hash: str) -> bool:
        payment = self._existing_payment(uow, event, lock=True)
        if payment is None:
            raise UnknownPayment(f"payment {event.payment_id} has not been credited; retry later")
        now = row.created_at
        if payment.state in (REFUSED, REFUSED_REVERSED):
            # never credited: nothing to take back; the first reversal closes the payment
            row.amount = 0
            if payment.state == REFUSED_REVERSED:
                return False
            payment.state, payment.updated_at = REFUSED_REVERSED, now
            return True
        refundable = payment.amount - payment.reversed_amount
        if refundable == 0:
            row.amount = 0
            return False  # already fully reversed
        outcome = apply_reversal(event.amount, refundable, account.coins)
        # the event records (and answers) what was actually reversed, capped at what was left
        row.amount = outcome.total
        uow.ledger.apply(
            outcome.posting(event.type, account.id),
            f"payment-event:{event.id}",
            req_hash,
            {lg.coins(account.id): account, lg.debt(account.id): account},
            now,
        )
        payment.reversed_amount += outcome.total
        payment.state = "reversed" if payment.reversed_amount == payment.amount else "partially_reversed"
        payment.updated_at = now
        if outcome.reversed:
            uow.outbox.add("burn", outcome.reversed, account.id, event.id, now)
        row.reversed, row.debt_recorded = outcome.reversed, outcome.debt_recorded
        return True
