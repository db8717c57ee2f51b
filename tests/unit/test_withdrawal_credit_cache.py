"""The API's cache of the vault's per-creator credit (`ChainCreditCache`) and the hand-written
EIP-712 digest of a `Withdrawal` (`recover_withdrawal_signer`): pure, no chain, no database."""

from __future__ import annotations

import pytest
from eth_account import Account
from hypothesis import given, settings
from hypothesis import strategies as st

from tokenbridge.domain.errors import InvalidInput
from tokenbridge.domain.withdrawal import WithdrawalMessage
from tokenbridge.services.withdrawals import ChainCreditCache, recover_signer, recover_withdrawal_signer


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class CountingChain:
    def __init__(self) -> None:
        self.reads: list[bytes] = []
        self.values: dict[bytes, tuple[int, int]] = {}

    def __call__(self, key: bytes) -> tuple[int, int]:
        self.reads.append(key)
        return self.values.get(key, (0, 0))


KEY_A, KEY_B, KEY_C = b"\x0a" * 32, b"\x0b" * 32, b"\x0c" * 32


def test_a_snapshot_is_served_until_its_ttl_then_expires() -> None:
    clock, chain = FakeClock(), CountingChain()
    chain.values[KEY_A] = (500, 100)
    cache = ChainCreditCache(chain, ttl_s=15.0, clock=clock)
    assert cache.get("a") is None  # never read
    snap = cache.refresh("a", KEY_A, posted=40)
    assert (snap.matured, snap.paid, snap.posted, snap.key) == (500, 100, 40, KEY_A)
    assert chain.reads == [KEY_A]
    clock.now += 15.0
    assert cache.get("a") == snap  # still within the bound
    assert chain.reads == [KEY_A]  # served without reading the chain
    clock.now += 0.001
    assert cache.get("a") is None  # older than ttl_s: the caller must read again
    chain.values[KEY_A] = (700, 150)
    again = cache.refresh("a", KEY_A, posted=90)
    assert (again.matured, again.paid, again.posted) == (700, 150, 90)
    assert cache.get("a") == again


def test_ttl_zero_means_every_request_reads_the_chain() -> None:
    clock, chain = FakeClock(), CountingChain()
    cache = ChainCreditCache(chain, ttl_s=0.0, clock=clock)
    cache.refresh("a", KEY_A, posted=0)
    assert cache.get("a") is not None  # same instant
    clock.now += 0.001
    assert cache.get("a") is None


def test_invalidate_one_or_all() -> None:
    cache = ChainCreditCache(CountingChain(), clock=FakeClock())
    cache.refresh("a", KEY_A, 0)
    cache.refresh("b", KEY_B, 0)
    cache.invalidate("a")
    assert cache.get("a") is None
    assert cache.get("b") is not None
    cache.invalidate()
    assert cache.get("b") is None
    assert len(cache) == 0


def test_the_cache_is_bounded_and_drops_the_oldest_read_first() -> None:
    clock = FakeClock()
    cache = ChainCreditCache(CountingChain(), max_entries=2, clock=clock)
    cache.refresh("a", KEY_A, 0)
    clock.now += 1
    cache.refresh("b", KEY_B, 0)
    clock.now += 1
    cache.refresh("a", KEY_A, 0)  # read again: now the newest
    clock.now += 1
    cache.refresh("c", KEY_C, 0)
    assert len(cache) == 2
    assert cache.get("b") is None  # the oldest read went
    assert cache.get("a") is not None
    assert cache.get("c") is not None


def test_bad_bounds_are_refused() -> None:
    with pytest.raises(InvalidInput):
        ChainCreditCache(CountingChain(), ttl_s=-1)
    with pytest.raises(InvalidInput):
        ChainCreditCache(CountingChain(), max_entries=0)


def test_a_failing_chain_read_keeps_nothing() -> None:
    def broken(key: bytes) -> tuple[int, int]:
        raise RuntimeError("node down")

    cache = ChainCreditCache(broken, clock=FakeClock())
    with pytest.raises(RuntimeError):
        cache.refresh("a", KEY_A, 0)
    assert cache.get("a") is None


SIGNER = Account.from_key(b"\x01" * 32)
VAULT = "0x5FbDB2315678afecb367f032d93F642f64180aa3"


@settings(max_examples=40, deadline=None)
@given(
    withdrawal_id=st.text(min_size=1, max_size=40),
    key=st.binary(min_size=32, max_size=32),
    to=st.binary(min_size=20, max_size=20).filter(lambda b: any(b)),
    amount=st.integers(min_value=1, max_value=2**63 - 1),
    deadline=st.integers(min_value=1, max_value=2**64 - 1),
    chain_id=st.sampled_from([1, 31337, 2**40]),
)
def test_the_hand_written_digest_is_eip712(
    withdrawal_id: str, key: bytes, to: bytes, amount: int, deadline: int, chain_id: int
) -> None:
    msg = WithdrawalMessage(withdrawal_id, "0x" + key.hex(), "0x" + to.hex(), amount, deadline)
    typed = msg.typed_data(chain_id, VAULT)
    signed = Account.sign_typed_data(
        SIGNER.key, domain_data=typed["domain"], message_types=typed["types"], message_data=typed["message"]
    )
    signature = "0x" + bytes(signed.signature).hex()
    fast = recover_withdrawal_signer(msg, chain_id, VAULT, signature)
    assert fast == recover_signer(typed, signature)
    assert fast[0] == SIGNER.address
    # another vault or chain id gives another digest, so another (wrong) signer
    assert recover_withdrawal_signer(msg, chain_id + 1, VAULT, signature)[0] != SIGNER.address


def test_a_malformed_signature_is_invalid_input() -> None:
    msg = WithdrawalMessage("w-1", "0x" + "11" * 32, SIGNER.address, 5, 10)
    with pytest.raises(InvalidInput):
        recover_withdrawal_signer(msg, 31337, VAULT, "0x" + "00" * 65)
