"""Two-phase holds on a creator's earnings for withdrawals: reserve -> post | void.

Reserve locks the creator row, folds the earnings legs into the cache, checks, moves
earnings -> held and queues an outbox `payout` in the same transaction. Post (payout
confirmed) sends held -> external:chain; void (payout failed for good) returns held ->
earnings. Lock order: account row, then hold row.
"""

from __future__ import annotations

from tokenbridge.adapters.db.models import Account, Hold
from tokenbridge.adapters.db.uow import SqlUnitOfWork, UnitOfWorkFactory
from tokenbridge.domain import ledger as lg
from tokenbridge.domain.accounts import validate_id
from tokenbridge.domain.errors import IdempotencyConflict, InsufficientFunds, InvalidInput, NotFound
from tokenbridge.domain.money import validate_amount
from tokenbridge.services._common import Clock, retry_on_race, utc_clock
from tokenbridge.services.views import HoldStateName, HoldView

WITHDRAWAL_HOLD_PREFIX = "withdrawal:"  # `withdrawal:<payout id>`, placed and booked by WithdrawalService


def _view(row: Hold) -> HoldView:
    state: HoldStateName = lg.HoldState(row.state).value
    return HoldView(row.id, row.creator_id, row.amount, state, row.created_at, row.updated_at)


class HoldService:
    def __init__(self, uow: UnitOfWorkFactory, clock: Clock = utc_clock) -> None:
        self._uow = uow
        self._clock = clock

    def reserve(self, hold_id: str, creator_id: str, amount: int) -> tuple[HoldView, bool]:
        hold_id = validate_id(hold_id, "hold id")
        creator_id = validate_id(creator_id, "creator id")
        amount = validate_amount(amount)
        req_hash = lg.request_hash({"creator": creator_id, "amount": amount})

        def attempt() -> tuple[HoldView, bool]:
            with self._uow.write() as uow:
                existing = uow.holds.get(hold_id)
                if existing is not None:
                    if (existing.creator_id, existing.amount) != (creator_id, amount):
                        raise IdempotencyConflict(f"hold {hold_id} already exists with another creator or amount")
                    return _view(existing), False
                creator = self._lock_folded(uow, creator_id)
                if creator.earnings < amount:
                    raise InsufficientFunds(
                        f"creator {creator_id} has {creator.earnings} units of earnings, hold needs {amount}"
                    )
                now = self._clock()
                hold = lg.Hold(hold_id, creator_id, amount)
                uow.ledger.apply(
                    hold.reserve_posting(),
                    f"hold:{hold_id}:reserve",
                    req_hash,
                    {lg.earnings(creator_id): creator, lg.held(creator_id): creator},
                    now,
                )
                row = Hold(
                    id=hold_id,
                    creator_id=creator_id,
                    amount=amount,
                    state=hold.state.value,
                    created_at=now,
                    updated_at=now,
                )
                uow.holds.add(row)
                uow.outbox.add("payout", amount, creator_id, hold_id, now)
                uow.commit()
                return _view(row), True

        return retry_on_race(attempt)

    def post(self, hold_id: str) -> HoldView:
        """The payout is confirmed: held funds leave custody. Posting twice is a no-op."""
        return self._finish(hold_id, lg.HoldState.POSTED)

    def void(self, hold_id: str) -> HoldView:
        """The payout failed for good: held funds return to earnings. Voiding twice is a no-op."""
        return self._finish(hold_id, lg.HoldState.VOIDED)

    def get(self, hold_id: str) -> HoldView:
        with self._uow.read() as uow:
            row = uow.holds.get(hold_id)
            if row is None:
                raise NotFound(f"hold {hold_id} not found")
            return _view(row)

    def _finish(self, hold_id: str, to: lg.HoldState) -> HoldView:
        if hold_id.startswith(WITHDRAWAL_HOLD_PREFIX):
            # A withdrawal's hold is booked with its payout (`WithdrawalLedger.finish_holds`), which
            # also counts it in the creator's booked payouts that the API's credit snapshot relies on.
            raise InvalidInput(f"hold {hold_id} belongs to a withdrawal: the worker books it with its payout")
        with self._uow.write() as uow:
            peek = uow.holds.get(hold_id)
            if peek is None:
                raise NotFound(f"hold {hold_id} not found")
            creator = uow.accounts.lock(peek.creator_id)
            row = uow.holds.lock(hold_id)
            if creator is None or row is None:  # foreign key; holds are never deleted
                raise NotFound(f"hold {hold_id} or its creator vanished")
            if row.state == to.value:
                return _view(row)
            hold = lg.Hold(row.id, row.creator_id, row.amount, lg.HoldState(row.state))
            posting = hold.post() if to is lg.HoldState.POSTED else hold.void()  # IllegalTransition if final
            now = self._clock()
            uow.ledger.apply(
                posting,
                f"hold:{hold_id}:{to.value}",
                lg.request_hash({"hold": hold_id, "to": to.value}),
                {lg.held(creator.id): creator, lg.earnings(creator.id): creator},
                now,
            )
            row.state, row.updated_at = hold.state.value, now
            uow.commit()
            return _view(row)

    @staticmethod
    def _lock_folded(uow: SqlUnitOfWork, creator_id: str) -> Account:
        creator = uow.accounts.lock(creator_id)
        if creator is None:
            raise NotFound(f"account {creator_id} not found")
        if creator.kind != "creator":
            raise InvalidInput(f"account {creator_id} is a {creator.kind} account; only creators hold earnings")
        uow.ledger.fold(lg.earnings(creator_id))
        refreshed = uow.accounts.lock(creator_id)  # re-read the cache the fold just updated
        assert refreshed is not None
        return refreshed
