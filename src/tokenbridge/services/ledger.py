"""Ledger maintenance and audit: fold append-only legs into cached balances, and the
totals `tokenbridge reconcile` and the invariant tests compare."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select

from tokenbridge.adapters.db.models import Account, PaymentEvent
from tokenbridge.adapters.db.uow import UnitOfWorkFactory
from tokenbridge.domain import ledger as lg
from tokenbridge.services.deposits import SUSPENSE


@dataclass(frozen=True, slots=True)
class LedgerTotals:
    coins: int
    earnings: int
    held: int
    platform_revenue: int
    suspense: int  # deposits from unknown keys, owed to someone not yet identified (a liability)
    debt: int  # outstanding, >= 0
    external_payments: int
    external_chain: int
    recharged: int  # sum of recharge event amounts applied
    reversed: int  # sum of refund/chargeback amounts applied (coins + debt)
    minted: int  # outbox mint total
    burned: int  # outbox burn total
    unbalanced_transfers: tuple[str, ...]  # "transfer:<id>" or "gift:<id>"
    negative_accounts: tuple[str, ...]
    cache_mismatches: tuple[str, ...]  # accounts whose cached balance != sum of their legs
    orphan_gifts: int  # gifts whose sender or creator has no account row (no foreign keys since 0007)

    @property
    def liabilities(self) -> int:
        """What the vault must hold, as reconcile counts it."""
        return self.coins + self.earnings + self.held + self.platform_revenue + self.suspense


class LedgerService:
    def __init__(self, uow: UnitOfWorkFactory) -> None:
        self._uow = uow

    def fold(self) -> int:
        """Fold every account with unfolded legs, one short transaction each; return how many."""
        with self._uow.read() as uow:
            names = uow.ledger.unfolded_accounts()
        for name in names:
            with self._uow.write() as uow:
                uow.ledger.fold(name)
                uow.commit()
        return len(names)

    def totals(self) -> LedgerTotals:
        with self._uow.read() as uow:
            s = uow.session
            if s.get_bind().dialect.name == "postgresql":
                # one snapshot for all the statements below (SQLite readers already get one)
                s.connection(execution_options={"isolation_level": "REPEATABLE READ"})
            from_legs = uow.ledger.balances_from_legs()
            unfolded_legs = uow.ledger.unfolded_sums()
            accounts = s.scalars(select(Account)).all()
            coins = earnings = held = debt = 0
            negative: list[str] = []
            mismatches: list[str] = []
            for a in accounts:
                e = a.earnings + unfolded_legs.get(lg.earnings(a.id), 0)
                coins, earnings, held, debt = coins + a.coins, earnings + e, held + a.held, debt + a.debt
                cached = {lg.coins(a.id): a.coins, lg.debt(a.id): -a.debt, lg.held(a.id): a.held, lg.earnings(a.id): e}
                for name, value in cached.items():
                    if value != from_legs.get(name, 0):
                        mismatches.append(name)
                    if value < 0 and not lg.may_go_negative(name):
                        negative.append(name)
                if a.debt < 0:
                    negative.append(lg.debt(a.id))
            system = {n: uow.ledger.system_balance(n) for n in lg.SYSTEM_ACCOUNTS}
            for name, value in system.items():
                if value != from_legs.get(name, 0):
                    mismatches.append(name)
                if value < 0 and not lg.may_go_negative(name):
                    negative.append(name)
            rows = s.execute(
                select(
                    PaymentEvent.type,
                    func.sum(PaymentEvent.credited + PaymentEvent.debt_repaid),
                    func.sum(PaymentEvent.reversed + PaymentEvent.debt_recorded),
                ).group_by(PaymentEvent.type)
            ).all()
            recharged = sum(int(r[1] or 0) for r in rows if r[0] == "recharge.succeeded")
            reversed_ = sum(int(r[2] or 0) for r in rows if r[0] != "recharge.succeeded")
            outbox = uow.outbox.totals()
            return LedgerTotals(
                coins=coins,
                earnings=earnings,
                held=held,
                platform_revenue=system[lg.PLATFORM_REVENUE],
                suspense=from_legs.get(SUSPENSE, 0),
                debt=debt,
                external_payments=system[lg.EXTERNAL_PAYMENTS],
                external_chain=system[lg.EXTERNAL_CHAIN],
                recharged=recharged,
                reversed=reversed_,
                minted=outbox.get("mint", 0),
                burned=outbox.get("burn", 0),
                unbalanced_transfers=tuple(uow.ledger.unbalanced_transfers()),
                negative_accounts=tuple(negative),
                cache_mismatches=tuple(mismatches),
                orphan_gifts=uow.ledger.orphan_gifts(),
            )
