"""The payments service: signed provider webhooks -> recharges, refunds, chargebacks.

Each event is applied in one transaction that also inserts the event id (primary key),
so an event is applied at most once; a payment id is credited at most once (primary key
of `payments`) and reversed at most up to its amount. Every effect on coins queues its
on-chain twin in the outbox: `mint` for coins credited, `burn` for coins taken back.
Debt never reaches the chain: it is money the platform is owed off-chain.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from tokenbridge.adapters.db.models import Account, Payment, PaymentEvent
from tokenbridge.adapters.db.uow import SqlUnitOfWork, UnitOfWorkFactory
from tokenbridge.domain import ledger as lg
from tokenbridge.domain.accounts import DailyLimits, check_daily_limit, check_not_restricted
from tokenbridge.domain.errors import InvalidInput, NotFound, UnknownPayment
from tokenbridge.domain.recharge import (
    DEFAULT_TOLERANCE_SECONDS,
    REVERSAL_TYPES,
    apply_recharge,
    apply_reversal,
    parse_event,
    verify_signature,
)
from tokenbridge.domain.recharge import PaymentEvent as EventCmd
from tokenbridge.services._common import Clock, retry_on_race, roll_day, utc_clock
from tokenbridge.services.views import PaymentEventResult


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
            if event.type in REVERSAL_TYPES:
                applied = self._reverse(uow, event, account, row, req_hash)
            else:
                applied = self._recharge(uow, event, account, row, req_hash)
            uow.payments.add_event(row)
            uow.commit()
            return _result(row), applied

    def _recharge(
        self, uow: SqlUnitOfWork, event: EventCmd, account: Account, row: PaymentEvent, req_hash: str
    ) -> bool:
        if uow.payments.get(event.payment_id) is not None:
            return False  # this payment was already credited under another event id
        check_not_restricted(account.id, account.restricted, "recharge")
        now = row.created_at
        roll_day(account, now)
        check_daily_limit(
            account.id,
            "recharge",
            account.recharged_today,
            event.amount,
            self._limits.recharge_limit(account.is_minor),
        )
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
        payment = uow.payments.lock(event.payment_id)
        if payment is None:
            raise UnknownPayment(f"payment {event.payment_id} has not been credited; retry later")
        if payment.account_id != account.id:
            raise InvalidInput(f"payment {event.payment_id} belongs to another account")
        refundable = payment.amount - payment.reversed_amount
        if refundable == 0:
            return False  # already fully reversed
        outcome = apply_reversal(event.amount, refundable, account.coins)
        now = row.created_at
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
