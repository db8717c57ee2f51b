"""Unit of work: one database transaction, the repositories bound to it.

    with uow_factory() as uow:
        ...
        uow.commit()

Leaving the block without `commit()` rolls back. On SQLite a writer UoW holds the
database write lock from its first statement (BEGIN IMMEDIATE).
"""

from __future__ import annotations

from types import TracebackType

from sqlalchemy.orm import Session, sessionmaker

from .gift_ledger import GiftLedger
from .repositories import Accounts, ApiKeys, Gifts, Holds, Ledger, Outbox, Payments


class SqlUnitOfWork:
    def __init__(self, factory: sessionmaker[Session]) -> None:
        self._factory = factory
        self._session: Session | None = None

    @property
    def session(self) -> Session:
        if self._session is None:
            raise RuntimeError("unit of work used outside its `with` block")
        return self._session

    def __enter__(self) -> SqlUnitOfWork:
        s = self._factory()
        s.begin()
        self._session = s
        self.accounts = Accounts(s)
        self.ledger = Ledger(s)
        self.gifts = Gifts(s)
        self.gift_ledger = GiftLedger(s)
        self.payments = Payments(s)
        self.outbox = Outbox(s)
        self.holds = Holds(s)
        self.api_keys = ApiKeys(s)
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        # close() rolls back whatever was not committed; unlike rollback() it does not
        # expire loaded objects, so views can still be built from them afterwards
        self.session.close()
        self._session = None

    def commit(self) -> None:
        self.session.commit()

    def flush(self) -> None:
        self.session.flush()


class UnitOfWorkFactory:
    """Makes writer or reader units of work; services hold one of these."""

    def __init__(self, writer: sessionmaker[Session], reader: sessionmaker[Session]) -> None:
        self._writer = writer
        self._reader = reader

    def write(self) -> SqlUnitOfWork:
        return SqlUnitOfWork(self._writer)

    def read(self) -> SqlUnitOfWork:
        return SqlUnitOfWork(self._reader)
