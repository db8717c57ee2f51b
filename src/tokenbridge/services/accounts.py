"""Open accounts, read balances, set admin flags."""

from __future__ import annotations

from tokenbridge.adapters.db.models import Account
from tokenbridge.adapters.db.uow import SqlUnitOfWork, UnitOfWorkFactory
from tokenbridge.domain.accounts import validate_id, validate_kind
from tokenbridge.domain.errors import IdempotencyConflict, NotFound
from tokenbridge.domain.keys import account_key, new_salt
from tokenbridge.services._common import Clock, hex0x, retry_on_race, utc_clock, validate_limit
from tokenbridge.services.views import AccountKind, AccountView, Balances, Page


def account_view(row: Account, earnings: int) -> AccountView:
    return AccountView(
        id=row.id,
        kind=validate_kind(row.kind),
        account_key=row.account_key,
        balances=Balances(coins=row.coins, earnings=earnings, held=row.held, debt=row.debt),
        is_minor=row.is_minor,
        restricted=row.restricted,
        created_at=row.created_at,
    )


class AccountService:
    def __init__(self, uow: UnitOfWorkFactory, clock: Clock = utc_clock) -> None:
        self._uow = uow
        self._clock = clock

    def open(
        self, account_id: str, kind: AccountKind, *, is_minor: bool = False, restricted: bool = False
    ) -> tuple[AccountView, bool]:
        """Open an account (created=True) or return the existing one opened with the same attributes."""
        account_id = validate_id(account_id, "id")
        kind = validate_kind(kind)
        is_minor, restricted = bool(is_minor), bool(restricted)

        def attempt() -> tuple[AccountView, bool]:
            with self._uow.write() as uow:
                existing = uow.accounts.get(account_id)
                if existing is not None:
                    if (existing.kind, existing.is_minor, existing.restricted) != (kind, is_minor, restricted):
                        raise IdempotencyConflict(
                            f"account {account_id} already exists as a {existing.kind} account"
                            f" (is_minor={existing.is_minor}, restricted={existing.restricted})"
                        )
                    return self._view(uow, existing), False
                salt = new_salt()
                row = Account(
                    id=account_id,
                    kind=kind,
                    salt=salt,
                    account_key=hex0x(account_key(account_id, salt)),
                    coins=0,
                    debt=0,
                    held=0,
                    earnings=0,
                    is_minor=is_minor,
                    restricted=restricted,
                    counter_day="",
                    recharged_today=0,
                    gifted_today=0,
                    created_at=self._clock(),
                )
                uow.accounts.add(row)
                uow.commit()
                return account_view(row, 0), True

        return retry_on_race(attempt)

    def get(self, account_id: str) -> AccountView:
        account_id = validate_id(account_id, "id")
        with self._uow.read() as uow:
            found = uow.accounts.with_earnings(account_id)
            if found is None:
                raise NotFound(f"account {account_id} not found")
            return account_view(*found)

    def list(self, *, limit: int = 50, cursor: str | None = None) -> Page[AccountView]:
        limit = validate_limit(limit)
        with self._uow.read() as uow:
            rows = uow.accounts.page_with_earnings(limit, cursor)
        items = [account_view(a, e) for a, e in rows]
        return Page(items, items[-1].id if len(items) == limit else None)

    def set_flags(
        self, account_id: str, *, is_minor: bool | None = None, restricted: bool | None = None
    ) -> AccountView:
        account_id = validate_id(account_id, "id")
        with self._uow.write() as uow:
            row = uow.accounts.lock(account_id)
            if row is None:
                raise NotFound(f"account {account_id} not found")
            if is_minor is not None:
                row.is_minor = bool(is_minor)
            if restricted is not None:
                row.restricted = bool(restricted)
            uow.flush()
            view = self._view(uow, row)
            uow.commit()
            return view

    @staticmethod
    def _view(uow: SqlUnitOfWork, row: Account) -> AccountView:
        found = uow.accounts.with_earnings(row.id)  # one statement: consistent with a concurrent fold
        if found is None:
            raise NotFound(f"account {row.id} not found")
        return account_view(*found)
