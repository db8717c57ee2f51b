"""Repositories over one Session: the only code that writes SQL for the ledger.

`Ledger.apply` is where invariant 2 lives: a leg on a locked row updates the row's
cached balance (the row was read `FOR UPDATE` in this transaction) and is refused if a
non-negative balance would drop below zero; a leg on a credit-only hot account is only
appended (`folded = false`) and summed at read time until `Ledger.fold` moves it into
the cache.

Gifts are journal entries of their own (one `gifts` row each, revision 0006): the sender's
debit is on the locked row when the gift is written, and the creator's and platform's
credits are unfolded until a fold flags them (`creator_folded`, `platform_folded`). Every
reader below that sums legs also sums those rows, so balances, folds and audits see one
journal. Gifts posted before 0006 have a transfer with legs instead (`transfer_id` set,
both flags true) and are counted through their legs only.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

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
# exactly the partial indexes' predicates (`NOT flag` on PostgreSQL, `flag = 0` on SQLite; `IS false` matches neither)
_CREATOR_UNFOLDED = ~Gift.creator_folded
_PLATFORM_UNFOLDED = ~Gift.platform_folded
_JOURNAL_GIFT = Gift.transfer_id.is_(None)  # a gift row that is its own journal entry


def _unfolded_gift_credits(creator_id: Any) -> Any:
    """SUM of a creator's gift credits not yet folded (a scalar subquery)."""
    return (
        select(func.coalesce(func.sum(Gift.ledger_creator_amount), 0))
        .where(Gift.creator_id == creator_id, _CREATOR_UNFOLDED)
        .scalar_subquery()
    )


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
        gift_rows = self.s.execute(
            select(Gift.creator_id, func.sum(Gift.ledger_creator_amount))
            .where(Gift.creator_id.in_(list(account_ids)), _CREATOR_UNFOLDED)
            .group_by(Gift.creator_id)
        ).all()
        for creator_id, total in gift_rows:
            out[creator_id] += int(total)
        return out

    def with_earnings(self, account_id: str) -> tuple[Account, int] | None:
        """The row and its true earnings (cache + unfolded legs), read in ONE statement so a
        concurrent fold is seen either entirely or not at all."""
        unfolded = (
            select(func.coalesce(func.sum(_SIGNED), 0))
            .where(TransferLeg.account == lg.earnings(account_id), TransferLeg.folded.is_(False))
            .scalar_subquery()
        )
        gifts = _unfolded_gift_credits(account_id)
        row = self.s.execute(
            select(Account, Account.earnings + unfolded + gifts).where(Account.id == account_id)
        ).one_or_none()
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
        gifts = _unfolded_gift_credits(Account.id)
        q = select(Account, Account.earnings + unfolded + gifts).order_by(Account.id).limit(limit)
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
        if owner is not None or name == lg.PLATFORM_REVENUE:
            delta += self._fold_gifts(owner)
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

    def _fold_gifts(self, creator_id: str | None) -> int:
        """Flag the unfolded gift credits of a creator (or, for None, of platform revenue) as
        folded; return their sum (the caller adds it to the cache in the same transaction)."""
        if creator_id is not None:
            stmt = (
                update(Gift)
                .where(Gift.creator_id == creator_id, _CREATOR_UNFOLDED)
                .values(creator_folded=True)
                .returning(Gift.ledger_creator_amount)
            )
        else:
            stmt = (
                update(Gift)
                .where(_PLATFORM_UNFOLDED)
                .values(platform_folded=True)
                .returning(Gift.ledger_platform_amount)
            )
        stmt = stmt.execution_options(synchronize_session=False)
        if self.s.get_bind().dialect.name == "postgresql":
            folded = stmt.cte("folded")
            return int(self.s.execute(select(func.coalesce(func.sum(folded.c[0]), 0))).scalar_one())
        return sum(int(v) for v in self.s.scalars(stmt).all())

    def unfolded_sums(self) -> dict[str, int]:
        """SUM of not-yet-folded legs and gift credits per ledger account."""
        rows = self.s.execute(
            select(TransferLeg.account, func.sum(_SIGNED))
            .where(TransferLeg.folded.is_(False))
            .group_by(TransferLeg.account)
        ).all()
        out = {name: int(total) for name, total in rows}
        for creator_id, total in self.s.execute(
            select(Gift.creator_id, func.sum(Gift.ledger_creator_amount))
            .where(_CREATOR_UNFOLDED)
            .group_by(Gift.creator_id)
        ).all():
            name = lg.earnings(creator_id)
            out[name] = out.get(name, 0) + int(total)
        platform = self.s.execute(select(func.sum(Gift.ledger_platform_amount)).where(_PLATFORM_UNFOLDED)).scalar()
        if platform is not None:
            out[lg.PLATFORM_REVENUE] = out.get(lg.PLATFORM_REVENUE, 0) + int(platform)
        return out

    def unfolded_accounts(self) -> list[str]:
        names = set(self.s.scalars(select(TransferLeg.account).where(TransferLeg.folded.is_(False)).distinct()).all())
        names.update(
            lg.earnings(c) for c in self.s.scalars(select(Gift.creator_id).where(_CREATOR_UNFOLDED).distinct()).all()
        )
        if self.s.execute(select(Gift.id).where(_PLATFORM_UNFOLDED).limit(1)).first() is not None:
            names.add(lg.PLATFORM_REVENUE)
        return sorted(names)

    def system_balance(self, name: str) -> int:
        """Cache + unfolded legs (+ unfolded gift credits for platform revenue), in ONE statement
        so a concurrent fold is seen entirely or not at all."""
        total = SystemBalance.balance + (
            select(func.coalesce(func.sum(_SIGNED), 0))
            .where(TransferLeg.account == name, TransferLeg.folded.is_(False))
            .scalar_subquery()
        )
        if name == lg.PLATFORM_REVENUE:
            total = total + (
                select(func.coalesce(func.sum(Gift.ledger_platform_amount), 0))
                .where(_PLATFORM_UNFOLDED)
                .scalar_subquery()
            )
        value = self.s.execute(select(total).where(SystemBalance.name == name)).scalar()
        return int(value or 0)

    def balances_from_legs(self) -> dict[str, int]:
        """Every ledger account's balance recomputed from the append-only legs (audit)."""
        rows = self.s.execute(select(TransferLeg.account, func.sum(_SIGNED)).group_by(TransferLeg.account)).all()
        out = {name: int(total) for name, total in rows}

        def add(name: str, amount: int) -> None:
            out[name] = out.get(name, 0) + amount

        for sender_id, gross in self.s.execute(
            select(Gift.sender_id, func.sum(Gift.gross)).where(_JOURNAL_GIFT).group_by(Gift.sender_id)
        ).all():
            add(lg.coins(sender_id), -int(gross))
        for creator_id, amount in self.s.execute(
            select(Gift.creator_id, func.sum(Gift.ledger_creator_amount)).where(_JOURNAL_GIFT).group_by(Gift.creator_id)
        ).all():
            add(lg.earnings(creator_id), int(amount))
        platform = self.s.execute(select(func.sum(Gift.ledger_platform_amount)).where(_JOURNAL_GIFT)).scalar()
        if platform is not None:
            add(lg.PLATFORM_REVENUE, int(platform))
        return out

    def unbalanced_transfers(self) -> list[str]:
        """Journal entries whose debits != credits (must always be empty: invariant 1):
        `transfer:<id>` for transfers with legs, `gift:<id>` for gift rows (whose CHECK
        constraint already refuses an unbalanced one)."""
        rows = self.s.execute(
            select(TransferLeg.transfer_id).group_by(TransferLeg.transfer_id).having(func.sum(_SIGNED) != 0)
        ).all()
        gifts = self.s.scalars(
            select(Gift.id).where(_JOURNAL_GIFT, Gift.gross != Gift.ledger_creator_amount + Gift.ledger_platform_amount)
        ).all()
        return [f"transfer:{int(r[0])}" for r in rows] + [f"gift:{g}" for g in gifts]

    def orphan_gifts(self) -> int:
        """Gifts whose sender or creator has no `accounts` row (must always be 0). There are no
        foreign keys on them since revision 0007: the write path reads both accounts and the
        database refuses to delete one, and this is the check that both held."""

        sender = select(Account.id).where(Account.id == Gift.sender_id).exists()
        creator = select(Account.id).where(Account.id == Gift.creator_id).exists()
        n = self.s.scalar(select(func.count()).select_from(Gift).where(~sender | ~creator))
        return int(n or 0)


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
