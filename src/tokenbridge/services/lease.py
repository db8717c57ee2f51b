"""Leader lease per signer key: at most one worker sends with a key at a time.

The lease lives on the key's `signers` row: `lease_holder` until `lease_expires_at`. A worker
takes or renews it with one conditional UPDATE (free, expired, or already ours), so two
workers racing for it cannot both win; the loser waits and retries on its next tick. A
crashed holder stops renewing and the lease expires, after which another worker takes over.
`lease_token` grows on every change of holder (a fencing token for writes that must come
from the current leader).

The clock is the workers' own (injectable for tests); keep hosts NTP-synced and the TTL well
above the expected skew plus one tick.
"""

from __future__ import annotations

import os
import secrets
import socket
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import cast

from sqlalchemy import CursorResult, case, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from tokenbridge.adapters.db.models_tx import Signer as SignerRow
from tokenbridge.domain.errors import InvalidInput

Clock = Callable[[], datetime]


def _utc_now() -> datetime:
    return datetime.now(UTC)


def default_holder_id() -> str:
    """host:pid:random — unique per process start, readable in the table."""
    return f"{socket.gethostname()[:64]}:{os.getpid()}:{secrets.token_hex(4)}"


@dataclass(frozen=True, slots=True)
class LeaseInfo:
    holder: str | None
    expires_at: datetime | None
    token: int


class LeaderLease:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        address: str,
        holder: str | None = None,
        *,
        ttl_s: float = 30.0,
        clock: Clock = _utc_now,
    ) -> None:
        if ttl_s <= 0:
            raise InvalidInput("lease ttl must be positive")
        self._sessions = sessions
        self.address = address
        self.holder = holder or default_holder_id()
        self.ttl = timedelta(seconds=ttl_s)
        self._clock = clock

    def _ensure_row(self) -> None:
        try:
            with self._sessions() as s, s.begin():
                if s.get(SignerRow, self.address) is None:
                    s.add(SignerRow(address=self.address, next_nonce=None, lease_token=0, updated_at=self._clock()))
        except IntegrityError:
            pass  # another worker created it first; the conditional UPDATE decides who leads

    def acquire(self) -> bool:
        """Take or renew the lease; True if this worker holds it now."""
        self._ensure_row()
        now = self._clock()
        row = SignerRow.__table__.c
        stmt = (
            update(SignerRow)
            .where(
                SignerRow.address == self.address,
                or_(
                    row.lease_holder.is_(None),
                    row.lease_holder == self.holder,
                    row.lease_expires_at <= now,
                ),
            )
            .values(
                lease_holder=self.holder,
                lease_expires_at=now + self.ttl,
                lease_token=case((row.lease_holder == self.holder, row.lease_token), else_=row.lease_token + 1),
                updated_at=now,
            )
            .execution_options(synchronize_session=False)
        )
        with self._sessions() as s, s.begin():
            result = cast(CursorResult[object], s.execute(stmt))
            return result.rowcount == 1

    renew = acquire

    def release(self) -> None:
        """Give the lease up now (a clean shutdown), so another worker need not wait for expiry."""
        with self._sessions() as s, s.begin():
            s.execute(
                update(SignerRow)
                .where(SignerRow.address == self.address, SignerRow.lease_holder == self.holder)
                .values(lease_holder=None, lease_expires_at=None, updated_at=self._clock())
                .execution_options(synchronize_session=False)
            )

    def info(self) -> LeaseInfo:
        with self._sessions() as s:
            row = s.execute(
                select(SignerRow.lease_holder, SignerRow.lease_expires_at, SignerRow.lease_token).where(
                    SignerRow.address == self.address
                )
            ).one_or_none()
        if row is None:
            return LeaseInfo(holder=None, expires_at=None, token=0)
        return LeaseInfo(holder=row[0], expires_at=row[1], token=int(row[2]))

    def held_in(self, session: Session) -> bool:
        """Inside the caller's transaction: is the lease ours and live right now?"""
        row = session.execute(
            select(SignerRow.lease_holder, SignerRow.lease_expires_at).where(SignerRow.address == self.address)
        ).one_or_none()
        if row is None or row[0] != self.holder or row[1] is None:
            return False
        expires_at: datetime = row[1]
        return expires_at > self._clock()
