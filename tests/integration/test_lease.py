"""Leader lease per signer on a real database (SQLite and PostgreSQL): one holder at a time,
renewal, release, takeover after expiry, and a race where exactly one worker wins."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from eth_account import Account
from sqlalchemy.orm import Session, sessionmaker

from tokenbridge.adapters.db.engine import make_engine, session_factories
from tokenbridge.services.lease import LeaderLease


class FakeClock:
    def __init__(self) -> None:
        self.now = datetime(2026, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def sessions(db_url: str) -> Iterator[sessionmaker[Session]]:
    engine = make_engine(db_url)
    try:
        yield session_factories(engine)[0]
    finally:
        engine.dispose()


@pytest.fixture
def address() -> str:
    return str(Account.create().address)  # a fresh signer row per test


def test_one_holder_at_a_time_renewal_and_release(sessions: sessionmaker[Session], address: str) -> None:
    clock = FakeClock()
    a = LeaderLease(sessions, address, "worker-a", ttl_s=10, clock=clock)
    b = LeaderLease(sessions, address, "worker-b", ttl_s=10, clock=clock)
    assert a.acquire()
    assert not b.acquire()
    token = a.info().token
    clock.advance(8)
    assert a.renew()  # renewal moves the expiry forward...
    clock.advance(8)
    assert not b.acquire()  # ...so 16 s after the first acquire, b still waits
    assert a.info().holder == "worker-a"
    assert a.info().token == token  # renewals keep the fencing token
    a.release()
    assert a.info().holder is None
    assert b.acquire()
    assert b.info().token == token + 1
    assert not a.acquire()


def test_expiry_lets_another_worker_take_over_after_a_crash(sessions: sessionmaker[Session], address: str) -> None:
    clock = FakeClock()
    crashed = LeaderLease(sessions, address, "crashed", ttl_s=5, clock=clock)
    assert crashed.acquire()
    standby = LeaderLease(sessions, address, "standby", ttl_s=5, clock=clock)
    clock.advance(4.9)
    assert not standby.acquire()
    clock.advance(0.2)  # the crashed holder never renewed: its lease is over
    assert standby.acquire()
    with sessions() as s, s.begin():
        assert standby.held_in(s)
        assert not crashed.held_in(s)
    assert not crashed.acquire()  # coming back does not steal it back


def test_concurrent_acquire_has_exactly_one_winner(sessions: sessionmaker[Session], address: str) -> None:
    clock = FakeClock()
    leases = [LeaderLease(sessions, address, f"w{i}", ttl_s=30, clock=clock) for i in range(6)]
    results: dict[str, bool] = {}
    barrier = threading.Barrier(len(leases))

    def run(lease: LeaderLease) -> None:
        barrier.wait()
        results[lease.holder] = lease.acquire()

    threads = [threading.Thread(target=run, args=(lease,)) for lease in leases]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [h for h, won in results.items() if won]
    assert len(results) == len(leases)
    assert len(winners) == 1
    assert leases[0].info().holder == winners[0]
