"""Unit tests of the gift committer and the API-key cache (no database, no HTTP)."""

from __future__ import annotations

import asyncio
import threading
from datetime import UTC, datetime
from typing import Any

import pytest

from tokenbridge.domain.errors import InsufficientFunds, TokenbridgeError, Unauthorized
from tokenbridge.entrypoints.api import deps
from tokenbridge.entrypoints.api.deps import KeyCache
from tokenbridge.entrypoints.api.gift_committer import GiftCommitter
from tokenbridge.services import api_keys
from tokenbridge.services.views import ApiKeyInfo, GiftReceipt, PostGift

WAIT_S = 30.0  # bound on waiting for a thread (a hang fails), never a speed claim


def _receipt(cmd: PostGift) -> GiftReceipt:
    return GiftReceipt(
        cmd.id, cmd.sender_id, cmd.creator_id, "0x" + "00" * 32, "0x" + "11" * 32, "0x" + "22" * 32,
        cmd.amount, cmd.amount, 0, 10_000, "posted", None, datetime.now(UTC),
    )  # fmt: skip


class FakeLedger:
    """post_batch: amounts of 0 are refused; optionally held at a gate; records the groups."""

    def __init__(self) -> None:
        self.groups: list[list[str]] = []
        self.open = threading.Event()
        self.open.set()
        self.entered = threading.Event()
        self.fail: Exception | None = None

    def post_batch(self, cmds: list[PostGift]) -> list[tuple[GiftReceipt, bool] | TokenbridgeError]:
        self.groups.append([c.id for c in cmds])
        self.entered.set()
        assert self.open.wait(WAIT_S)
        if self.fail is not None:
            raise self.fail
        return [(_receipt(c), True) if c.amount else InsufficientFunds(f"{c.id}: no") for c in cmds]


def _cmd(i: int, amount: int = 1) -> PostGift:
    return PostGift(f"g{i}", "alice", "bob", amount)


async def _until(condition: Any) -> None:
    for _ in range(int(WAIT_S / 0.002)):
        if condition():
            return
        await asyncio.sleep(0.002)
    raise AssertionError("timed out")


def test_a_lone_request_is_posted_alone_and_each_request_gets_its_own_outcome() -> None:
    ledger = FakeLedger()
    committer = GiftCommitter(ledger.post_batch)

    async def main() -> None:
        first = await committer.post(_cmd(0))
        assert not isinstance(first, TokenbridgeError)
        assert first[0].id == "g0"
        assert ledger.groups == [["g0"]]
        ledger.open.clear()
        ledger.entered.clear()
        plug = committer.submit(_cmd(1))
        await _until(ledger.entered.is_set)
        futures = [committer.submit(_cmd(i, amount=i % 2)) for i in range(2, 8)]
        await _until(lambda: committer.queued() == 6)
        ledger.open.set()
        outcomes = await asyncio.gather(plug, *futures)
        assert ledger.groups[1:] == [["g1"], [f"g{i}" for i in range(2, 8)]]
        for i, outcome in zip(range(1, 8), outcomes, strict=True):
            if i % 2:
                assert not isinstance(outcome, TokenbridgeError)
                assert outcome[0].id == f"g{i}"
            else:
                assert isinstance(outcome, InsufficientFunds)
                assert outcome.detail == f"g{i}: no"
        await committer.aclose()
        assert not committer.running()

    asyncio.run(main())


def test_groups_are_bounded() -> None:
    ledger = FakeLedger()
    committer = GiftCommitter(ledger.post_batch, max_group=3)

    async def main() -> None:
        ledger.open.clear()
        plug = committer.submit(_cmd(0))
        await _until(ledger.entered.is_set)
        futures = [committer.submit(_cmd(i)) for i in range(1, 8)]
        await _until(lambda: committer.queued() == 7)
        ledger.open.set()
        await asyncio.gather(plug, *futures)
        assert [len(g) for g in ledger.groups] == [1, 3, 3, 1]
        await committer.aclose()

    asyncio.run(main())
    with pytest.raises(ValueError, match="max_group"):
        GiftCommitter(ledger.post_batch, max_group=0)


def test_a_whole_call_failure_reaches_every_request_of_the_group() -> None:
    ledger = FakeLedger()
    committer = GiftCommitter(ledger.post_batch)

    async def main() -> None:
        ledger.open.clear()
        plug = committer.submit(_cmd(0))
        await _until(ledger.entered.is_set)
        futures = [committer.submit(_cmd(i)) for i in range(1, 4)]
        await _until(lambda: committer.queued() == 3)
        ledger.fail = ConnectionError("database gone")
        ledger.open.set()
        results = await asyncio.gather(plug, *futures, return_exceptions=True)
        assert all(isinstance(r, ConnectionError) for r in results)
        ledger.fail = None
        assert not isinstance(await committer.post(_cmd(9)), TokenbridgeError)  # the committer lives on
        await committer.aclose()

    asyncio.run(main())


def test_a_wrong_number_of_outcomes_is_an_error_for_every_request() -> None:
    committer = GiftCommitter(lambda _cmds: [])

    async def main() -> None:
        with pytest.raises(RuntimeError, match="0 outcomes for 1"):
            await committer.post(_cmd(0))
        await committer.aclose()

    asyncio.run(main())


def test_a_cancelled_request_does_not_withdraw_its_gift_nor_disturb_the_group() -> None:
    ledger = FakeLedger()
    committer = GiftCommitter(ledger.post_batch)

    async def main() -> None:
        ledger.open.clear()
        plug = asyncio.ensure_future(committer.post(_cmd(0)))
        await _until(ledger.entered.is_set)
        gone = asyncio.ensure_future(committer.post(_cmd(1)))
        stays = asyncio.ensure_future(committer.post(_cmd(2)))
        await _until(lambda: committer.queued() == 2)
        gone.cancel()
        ledger.open.set()
        assert not isinstance(await stays, TokenbridgeError)
        await plug
        assert gone.cancelled()
        assert ledger.groups == [["g0"], ["g1", "g2"]]
        await committer.aclose()

    asyncio.run(main())


def test_close_drains_the_queue_and_a_later_submit_restarts() -> None:
    ledger = FakeLedger()
    committer = GiftCommitter(ledger.post_batch)

    async def main() -> None:
        ledger.open.clear()
        futures = [committer.submit(_cmd(0))]
        await _until(ledger.entered.is_set)
        futures += [committer.submit(_cmd(i)) for i in range(1, 5)]
        await _until(lambda: committer.queued() == 4)
        closing = asyncio.ensure_future(committer.aclose())
        await _until(committer.closing)
        assert not closing.done()
        ledger.open.set()
        await closing
        assert not committer.running()
        assert all(f.done() and not isinstance(f.result(), TokenbridgeError) for f in futures)
        assert sum(len(g) for g in ledger.groups) == 5
        assert not isinstance(await committer.post(_cmd(7)), TokenbridgeError)
        await committer.aclose()
        await committer.aclose()  # idempotent

    asyncio.run(main())


def test_several_committer_threads_post_groups_side_by_side_and_drain_on_close() -> None:
    ledger = FakeLedger()
    committer = GiftCommitter(ledger.post_batch, threads=2)

    async def main() -> None:
        ledger.open.clear()
        first = committer.submit(_cmd(0))
        await _until(lambda: len(ledger.groups) == 1)
        second = committer.submit(_cmd(1))
        await _until(lambda: len(ledger.groups) == 2)  # both threads hold a group at the gate
        rest = [committer.submit(_cmd(i)) for i in range(2, 9)]
        assert committer.queued() == 7
        closing = asyncio.ensure_future(committer.aclose())
        await _until(committer.closing)
        assert not closing.done()
        ledger.open.set()
        await closing
        assert not committer.running()
        outcomes = [f.result() for f in (first, second, *rest)]
        assert [o[0].id for o in outcomes if not isinstance(o, TokenbridgeError)] == [f"g{i}" for i in range(9)]
        posted = [gift for group in ledger.groups for gift in group]
        assert sorted(posted) == sorted(f"g{i}" for i in range(9))  # each exactly once
        assert ledger.groups[:2] == [["g0"], ["g1"]]

    asyncio.run(main())
    with pytest.raises(ValueError, match="threads"):
        GiftCommitter(ledger.post_batch, threads=0)


def test_results_reach_each_requests_own_event_loop() -> None:
    ledger = FakeLedger()
    committer = GiftCommitter(ledger.post_batch)
    ledger.open.clear()
    results: dict[int, Any] = {}

    def client(n: int) -> None:
        async def main() -> None:
            results[n] = await committer.post(_cmd(n))

        asyncio.run(main())

    threads = [threading.Thread(target=client, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    ledger.open.set()
    for t in threads:
        t.join(WAIT_S)
    assert sorted(r[0].id for r in results.values()) == ["g0", "g1", "g2", "g3"]
    committer.close()


# --- the API-key cache ---------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(deps, "time", fake)
    return fake


INFO = ApiKeyInfo("key-1", "app", None, datetime.now(UTC))


class Keys:
    """`authenticate`, counting reads; optionally held until released."""

    def __init__(self) -> None:
        self.reads = 0
        self.open = threading.Event()
        self.open.set()
        self.revoked = False

    def __call__(self, plaintext: str) -> ApiKeyInfo:
        self.reads += 1
        revoked = self.revoked  # the row as this read sees it
        assert self.open.wait(WAIT_S)
        if revoked:
            raise Unauthorized("invalid or revoked API key")
        return INFO


def test_concurrent_misses_share_one_read(clock: Clock) -> None:
    cache, keys = KeyCache(), Keys()

    async def main() -> None:
        keys.open.clear()
        waiters = [asyncio.ensure_future(cache.authenticate("tb_k", keys)) for _ in range(20)]
        await _until(lambda: keys.reads == 1)
        await asyncio.sleep(0.01)
        keys.open.set()
        assert all(info is INFO for info in await asyncio.gather(*waiters))
        assert keys.reads == 1
        assert await cache.authenticate("tb_k", keys) is INFO  # cached
        assert keys.reads == 1

    asyncio.run(main())


def test_a_key_in_use_is_refreshed_once_in_the_background(clock: Clock) -> None:
    cache, keys = KeyCache(ttl=2.0, refresh_after=1.5), Keys()

    async def main() -> None:
        assert await cache.authenticate("tb_k", keys) is INFO
        clock.now += 1.6  # past refresh_after, before the ttl
        keys.open.clear()
        # every request answers from the cache at once; one re-read starts
        for _ in range(10):
            assert await cache.authenticate("tb_k", keys) is INFO
        await _until(lambda: keys.reads == 2)
        keys.open.set()
        await _until(lambda: cache.reads == 2 and not cache._flights)
        clock.now += 1.0  # 2.6 s after the first read, 1.0 s after the refresh: still cached
        assert await cache.authenticate("tb_k", keys) is INFO
        assert keys.reads == 2

    asyncio.run(main())


def test_a_refresh_that_finds_the_key_revoked_drops_it(clock: Clock) -> None:
    cache, keys = KeyCache(ttl=2.0, refresh_after=1.5), Keys()

    async def main() -> None:
        await cache.authenticate("tb_k", keys)
        keys.revoked = True  # by another process
        clock.now += 1.6
        assert await cache.authenticate("tb_k", keys) is INFO  # still within its 2 s
        await _until(lambda: not cache._flights)
        with pytest.raises(Unauthorized):
            await cache.authenticate("tb_k", keys)

    asyncio.run(main())


def test_an_entry_is_never_served_past_its_ttl(clock: Clock) -> None:
    cache, keys = KeyCache(ttl=2.0, refresh_after=1.5), Keys()

    async def main() -> None:
        await cache.authenticate("tb_k", keys)
        keys.revoked = True
        clock.now += 2.01  # nobody used it in the refresh window
        with pytest.raises(Unauthorized):
            await cache.authenticate("tb_k", keys)
        assert keys.reads == 2

    asyncio.run(main())


def test_a_revocation_in_this_process_applies_at_once_even_to_reads_in_flight(clock: Clock) -> None:
    cache, keys = KeyCache(), Keys()

    async def main() -> None:
        await cache.authenticate("tb_k", keys)
        api_keys._bump_revocations()  # what ApiKeyService.revoke does
        keys.revoked = True
        with pytest.raises(Unauthorized):
            await cache.authenticate("tb_k", keys)
        # a read that started before a revocation is not shared with requests after it
        keys.revoked = False
        keys.open.clear()
        cache2 = KeyCache()
        early = asyncio.ensure_future(cache2.authenticate("tb_k2", keys))
        await _until(lambda: cache2.reads == 1)
        api_keys._bump_revocations()
        keys.revoked = True
        late = asyncio.ensure_future(cache2.authenticate("tb_k2", keys))
        await _until(lambda: cache2.reads == 2)
        keys.open.set()
        assert await early is INFO  # it started before the revocation (as any in-flight request)
        with pytest.raises(Unauthorized):
            await late
        assert cache2.get(deps.hashlib.sha256(b"tb_k2").digest()) is None  # and nothing stale was cached

    asyncio.run(main())
