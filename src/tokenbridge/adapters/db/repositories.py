"""Repositories over one Session: the only code that writes SQL for the ledger.

`Ledger.apply` is where invariant 2 lives: a leg on a locked row updates the row's
cached balance (the row was read `FOR UPDATE` in this transaction) and is refused if a
non-negative balance would drop below zero; a leg on a credit-only hot account is only
appended (`folded = false`) and summed at read time until `Ledger.fold` moves it into
the cache.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import case, func, literal, select, update
from sqlalchemy.orm import Session

from tokenbridge.domain import ledger as lg
from tokenbridge.domain.errors import UnbalancedPosting

from .models import (
    Account,
    ApiKey,
    Gift,
    Hold,
    OutboxItem,
    Payment,
    PaymentEvent,
    SystemBalance,
    Transfer,
    TransferLeg,
    utcnow,
)

_SIGNED = case((TransferLeg.side == "credit", TransferLeg.amount), else_=-TransferLeg.amount)


class Accounts:
    def __init__(self, session: Session) -> None:
        self.s = session

    def get(self, account_id: str) -> Account | None:
        return self.s.get(Account, account_id)

    def lock(self, account_id: str) -> Account | None:
        """Read the row under `SELECT ... FOR NO KEY UPDATE` (PostgreSQL); SQLite holds the write lock already.

        NO KEY: the foreign-key checks of concurrent gift inserts (`FOR KEY SHARE` on the
        creator's and sender's rows) do not wait for this lock, and it still excludes
        every other writer of the balance.
        """
        return self.s.scalars(
            select(Account)
            .where(Account.id == account_id)
            .with_for_update(key_share=True)
            .execution_options(populate_existing=True)
        ).one_or_none()

    def add(self, account: Account) -> None:
        self.s.add(account)

    def page(self, limit: int, after: str | None) -> Sequence[Account]:
        q = select(Account).order_by(Account.id).limit(limit)
        if after is not None:
            q = q.where(Account.id > after)
        return self.s.scalars(q).all()

    def unfolded_earnings(self, account_ids: Sequence[str]) -> dict[str, int]:
        """SUM of not-yet-folded earnings legs per account (one statement)."""
        if not account_ids:
            return {}
        names = {lg.earnings(a): a for a in account_ids}
        rows = self.s.execute(
            select(TransferLeg.account, func.coalesce(func.sum(_SIGNED), 0))
            .where(TransferLeg.account.in_(list(names)), TransferLeg.folded.is_(False))
            .group_by(TransferLeg.account)
        ).all()
        out = dict.fromkeys(account_ids, 0)
        for name, total in rows:
            out[names[name]] = int(total)
        return out

    def with_earnings(self, account_id: str) -> tuple[Account, int] | None:
        """The row and its true earnings (cache + unfolded legs), read in ONE statement so a
        concurrent fold is seen either entirely or not at all."""
        unfolded = (
            select(func.coalesce(func.sum(_SIGNED), 0))
            .where(TransferLeg.account == lg.earnings(account_id), TransferLeg.folded.is_(False))
            .scalar_subquery()
        )
        row = self.s.execute(select(Account, Account.earnings + unfolded).where(Account.id == account_id)).one_or_none()
        if row is None:
            return None
        return row[0], int(row[1])

    def page_with_earnings(self, limit: int, after: str | None) -> list[tuple[Account, int]]:
        unfolded = (
            select(func.coalesce(func.sum(_SIGNED), 0))
            .where(
                TransferLeg.account == literal("creator:") + Account.id + literal(":earnings"),
                TransferLeg.folded.is_(False),
            )
            .correlate(Account)
            .scalar_subquery()
        )
        q = select(Account, Account.earnings + unfolded).order_by(Account.id).limit(limit)
        if after is not None:
            q = q.where(Account.id > after)
        return [(a, int(e)) for a, e in self.s.execute(q).all()]


class Ledger:
    def __init__(self, session: Session) -> None:
        self.s = session

    def find_transfer(self, caller_id: str) -> Transfer | None:
        return self.s.scalars(select(Transfer).where(Transfer.caller_id == caller_id)).one_or_none()

    def apply(
        self,
        posting: lg.Posting,
        caller_id: str,
        request_hash: str,
        locked: dict[str, Account],
        now: datetime,
    ) -> Transfer:
        """Append the posting; legs on `locked` rows (keyed by ledger name) update their cache.

        Every other leg must be a credit to an append-only account or a leg on an
        account allowed to go negative; anything else is a programming error.
        """
        transfer = Transfer(caller_id=caller_id, kind=posting.kind, request_hash=request_hash, created_at=now)
        self.s.add(transfer)
        self.s.flush()
        for leg in posting.legs:
            row = locked.get(leg.account)
            if row is not None:
                _apply_to_row(row, leg)
                folded = True
            elif leg.side == "credit" or lg.may_go_negative(leg.account):
                folded = False
            else:
                raise UnbalancedPosting(f"{posting.kind}: debit of {leg.account} needs its row locked")
            self.s.add(
                TransferLeg(
                    transfer_id=transfer.id, account=leg.account, side=leg.side, amount=leg.amount, folded=folded
                )
            )
        return transfer

    def fold(self, name: str) -> int:
        """Move unfolded legs of `name` into its cached balance; return the amount folded.

        Lock order: the owning row first, then the legs (as in every posting path).
        """
        _kind, owner, bucket = lg.parse_name(name)
        if owner is not None:
            if bucket != lg.Bucket.EARNINGS.value:
                return 0  # other buckets are always folded at posting time
            acct = Accounts(self.s).lock(owner)
            if acct is None:
                return 0
        else:
            self.s.execute(select(SystemBalance).where(SystemBalance.name == name).with_for_update()).one_or_none()
        rows = self.s.execute(
            update(TransferLeg)
            .where(TransferLeg.account == name, TransferLeg.folded.is_(False))
            .values(folded=True)
            .returning(TransferLeg.side, TransferLeg.amount)
        ).all()
        delta = sum(amount if side == "credit" else -amount for side, amount in rows)
        if delta:
            if owner is not None:
                self.s.execute(update(Account).where(Account.id == owner).values(earnings=Account.earnings + delta))
            else:
                self.s.execute(
                    update(SystemBalance)
                    .where(SystemBalance.name == name)
                    .values(balance=SystemBalance.balance + delta)
                )
        return delta

    def unfolded_sums(self) -> dict[str, int]:
        """SUM of not-yet-folded legs per ledger account."""
        rows = self.s.execute(
            select(TransferLeg.account, func.sum(_SIGNED))
            .where(TransferLeg.folded.is_(False))
            .group_by(TransferLeg.account)
        ).all()
        return {name: int(total) for name, total in rows}

    def unfolded_accounts(self) -> list[str]:
        return list(self.s.scalars(select(TransferLeg.account).where(TransferLeg.folded.is_(False)).distinct()).all())

    def system_balance(self, name: str) -> int:
        unfolded = (
            select(func.coalesce(func.sum(_SIGNED), 0))
            .where(TransferLeg.account == name, TransferLeg.folded.is_(False))
            .scalar_subquery()
        )
        value = self.s.execute(select(SystemBalance.balance + unfolded).where(SystemBalance.name == name)).scalar()
        return int(value or 0)

    def balances_from_legs(self) -> dict[str, int]:
        """Every ledger account's balance recomputed from the append-only legs (audit)."""
        rows = self.s.execute(select(TransferLeg.account, func.sum(_SIGNED)).group_by(TransferLeg.account)).all()
        return {name: int(total) for name, total in rows}

    def unbalanced_transfers(self) -> list[int]:
        """Ids of transfers whose debits != credits (must always be empty: invariant 1)."""
        rows = self.s.execute(
            select(TransferLeg.transfer_id).group_by(TransferLeg.transfer_id).having(func.sum(_SIGNED) != 0)
        ).all()
        return [int(r[0]) for r in rows]


def _apply_to_row(row: Account, leg: lg.Leg) -> None:
    _, _, bucket = lg.parse_name(leg.account)
    delta = leg.signed
    if bucket == lg.Bucket.COINS.value:
        row.coins += delta
        lg.check_balance(leg.account, row.coins)
    elif bucket == lg.Bucket.DEBT.value:
        row.debt -= delta  # a debit to the receivable increases what the user owes
        if row.debt < 0:
            raise UnbalancedPosting(f"{leg.account}: repaid more debt than owed")
        lg.check_balance(leg.account, row.debt)
    elif bucket == lg.Bucket.HELD.value:
        row.held += delta
        lg.check_balance(leg.account, row.held)
    elif bucket == lg.Bucket.EARNINGS.value:
        row.earnings += delta  # caller folded first, so the cache is the whole balance
        lg.check_balance(leg.account, row.earnings)
    else:  # pragma: no cover - parse_name only yields the buckets above for owned accounts
        raise UnbalancedPosting(f"unknown bucket {bucket}")


class Gifts:
    def __init__(self, session: Session) -> None:
        self.s = session

    def get(self, gift_id: str) -> Gift | None:
        return self.s.get(Gift, gift_id)

    def add(self, gift: Gift) -> None:
        self.s.add(gift)

    def page(self, account_id: str | None, limit: int, after: str | None) -> Sequence[Gift]:
        q = select(Gift).order_by(Gift.id).limit(limit)
        if account_id is not None:
            q = q.where((Gift.sender_id == account_id) | (Gift.creator_id == account_id))
        if after is not None:
            q = q.where(Gift.id > after)
        return self.s.scalars(q).all()


class Payments:
    def __init__(self, session: Session) -> None:
        self.s = session

    def event(self, event_id: str) -> PaymentEvent | None:
        return self.s.get(PaymentEvent, event_id)

    def add_event(self, event: PaymentEvent) -> None:
        self.s.add(event)

    def get(self, payment_id: str) -> Payment | None:
        return self.s.get(Payment, payment_id)

    def lock(self, payment_id: str) -> Payment | None:
        return self.s.scalars(
            select(Payment)
            .where(Payment.payment_id == payment_id)
            .with_for_update()
            .execution_options(populate_existing=True)
        ).one_or_none()

    def add(self, payment: Payment) -> None:
        self.s.add(payment)


class Outbox:
    def __init__(self, session: Session) -> None:
        self.s = session

    def add(self, kind: str, amount: int, account_id: str | None, ref_id: str, now: datetime) -> None:
        self.s.add(
            OutboxItem(kind=kind, amount=amount, account_id=account_id, ref_id=ref_id, created_at=now, updated_at=now)
        )

    def totals(self) -> dict[str, int]:
        rows = self.s.execute(select(OutboxItem.kind, func.sum(OutboxItem.amount)).group_by(OutboxItem.kind)).all()
        return {kind: int(total) for kind, total in rows}


class Holds:
    def __init__(self, session: Session) -> None:
        self.s = session

    def get(self, hold_id: str) -> Hold | None:
        return self.s.get(Hold, hold_id)

    def lock(self, hold_id: str) -> Hold | None:
        return self.s.scalars(
            select(Hold).where(Hold.id == hold_id).with_for_update().execution_options(populate_existing=True)
        ).one_or_none()

    def add(self, hold: Hold) -> None:
        self.s.add(hold)


class ApiKeys:
    def __init__(self, session: Session) -> None:
        self.s = session

    def add(self, key: ApiKey) -> None:
        self.s.add(key)

    def by_hash(self, key_hash: str) -> ApiKey | None:
        return self.s.scalars(select(ApiKey).where(ApiKey.key_hash == key_hash)).one_or_none()

    def get(self, key_id: str) -> ApiKey | None:
        return self.s.get(ApiKey, key_id)

    def all(self) -> Sequence[ApiKey]:
        return self.s.scalars(select(ApiKey).order_by(ApiKey.created_at, ApiKey.id)).all()


__all__ = ["Accounts", "ApiKeys", "Gifts", "Holds", "Ledger", "Outbox", "Payments", "utcnow"]
