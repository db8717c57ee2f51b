"""Proofs built by tokenbridge.domain.merkle{,_sum} verify through CoinVault's views, and
every kind of tampering is refused there exactly as it is in Python."""

from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tokenbridge.adapters.chain.vault import VaultClient
from tokenbridge.domain.keys import account_key
from tokenbridge.domain.merkle import GiftLeaf, StandardMerkleTree, gift_tree, verify_gift
from tokenbridge.domain.merkle_sum import LiabilityProof, MerkleSumTree, verify_liability
from tokenbridge.domain.split import split

if TYPE_CHECKING:
    from tests.contracts.conftest import Chain

pytestmark = pytest.mark.chain

BPS = 8_000  # the conftest deployment's rate; the `env` fixture checks it


@dataclass
class Env:
    client: VaultClient


@pytest.fixture
def env(chain: Chain) -> Env:
    """The session vault (tests/contracts/conftest.py), signing as the bridge; reverted after each test."""
    assert chain.vault.creator_bps() == BPS
    return Env(chain.vault)


def _key(name: str) -> bytes:
    return account_key(name, name.encode().ljust(32, b"\x00"))


def _gifts(n: int, bps: int, seed: int) -> list[GiftLeaf]:
    rnd = random.Random(seed)
    creators = [_key(f"creator:{i}") for i in range(3)]
    users = [_key(f"user:{i}") for i in range(4)]
    return [
        GiftLeaf.of(f"gift-{seed}-{i}", rnd.choice(users), rnd.choice(creators), split(rnd.randrange(1, 10**10), bps))
        for i in range(n)
    ]


def _settle(env: Env, epoch_id: int, gifts: list[GiftLeaf]) -> StandardMerkleTree:
    tree = gift_tree(gifts)
    per_creator: dict[bytes, int] = {}
    for g in gifts:
        per_creator[g.creator_key] = per_creator.get(g.creator_key, 0) + g.gross
    env.client.settle_gifts(
        epoch_id, 0, tree.root, len(gifts), sum(g.gross for g in gifts), list(per_creator), list(per_creator.values())
    )
    return tree


def _on_chain(env: Env, epoch_id: int, gift: GiftLeaf, proof: list[bytes]) -> bool:
    return env.client.verify_gift(epoch_id, *gift.values(), proof)


# --- gifts -----------------------------------------------------------------------------------


def test_every_gift_proof_verifies_on_chain(env: Env) -> None:
    gifts = _gifts(13, BPS, seed=1)
    tree = _settle(env, 1, gifts)
    assert env.client.epoch(1).gift_root == tree.root
    for gift in gifts:
        proof = tree.get_proof(gift.values())
        assert verify_gift(tree.root, gift, proof)
        assert _on_chain(env, 1, gift, proof)


def test_single_gift_epoch_verifies_with_empty_proof(env: Env) -> None:
    gift = _gifts(1, BPS, seed=2)[0]
    tree = _settle(env, 1, [gift])
    assert tree.get_proof(0) == []
    assert _on_chain(env, 1, gift, [])


def _flip(b: bytes) -> bytes:
    return bytes([b[0] ^ 1]) + b[1:]


TAMPERS = {
    "gross+1 (split recomputed)": lambda g, p: (dataclasses.replace(g, **_resplit(g.gross + 1)), p),
    "creator amount +1": lambda g, p: (
        dataclasses.replace(g, creator_amount=g.creator_amount + 1, platform_amount=g.platform_amount - 1),
        p,
    ),
    "platform amount +1": lambda g, p: (dataclasses.replace(g, platform_amount=g.platform_amount + 1), p),
    "gift id": lambda g, p: (dataclasses.replace(g, gift_id=_flip(g.gift_id)), p),
    "from key": lambda g, p: (dataclasses.replace(g, from_key=_flip(g.from_key)), p),
    "creator key": lambda g, p: (dataclasses.replace(g, creator_key=_flip(g.creator_key)), p),
    "proof element flipped": lambda g, p: (g, [_flip(p[0]), *p[1:]]),
    "proof truncated": lambda g, p: (g, p[:-1]),
    "proof extended": lambda g, p: (g, [*p, p[0]]),
    "empty proof": lambda g, _p: (g, []),
}


def _resplit(gross: int) -> dict[str, int]:
    s = split(gross, BPS)
    return {"gross": s.gross, "creator_amount": s.creator_amount, "platform_amount": s.platform_amount}


@pytest.mark.parametrize("tamper", list(TAMPERS))
def test_tampered_gift_is_refused_on_chain(env: Env, tamper: str) -> None:
    gifts = _gifts(9, BPS, seed=3)
    tree = _settle(env, 1, gifts)
    gift = gifts[4]
    proof = tree.get_proof(gift.values())
    assert _on_chain(env, 1, gift, proof)  # the untampered original passes
    bad_gift, bad_proof = TAMPERS[tamper](gift, proof)
    assert not _on_chain(env, 1, bad_gift, bad_proof)
    assert not verify_gift(tree.root, bad_gift, bad_proof) or bad_gift.creator_amount != gift.creator_amount


def test_gift_split_at_another_bps_is_refused_even_with_a_valid_proof(env: Env) -> None:
    """A leaf that IS in the settled tree, but split at 90% instead of the epoch's 80%."""
    honest = _gifts(4, BPS, seed=4)
    greedy = GiftLeaf.of("gift-greedy", _key("user:0"), _key("creator:0"), split(1_000_000, 9_000))
    tree = _settle(env, 1, [*honest, greedy])
    proof = tree.get_proof(greedy.values())
    assert verify_gift(tree.root, greedy, proof)  # the Merkle proof alone holds...
    assert env.client.epoch(1).bps == BPS
    assert not _on_chain(env, 1, greedy, proof)  # ...but the split check against the epoch's bps fails
    assert _on_chain(env, 1, honest[0], tree.get_proof(honest[0].values()))


def test_gift_under_the_wrong_epoch_is_refused(env: Env) -> None:
    first = _gifts(5, BPS, seed=5)
    second = _gifts(5, BPS, seed=6)
    tree_1 = _settle(env, 1, first)
    _settle(env, 2, second)
    proof = tree_1.get_proof(first[0].values())
    assert _on_chain(env, 1, first[0], proof)
    assert not _on_chain(env, 2, first[0], proof)  # settled, different root
    assert not _on_chain(env, 3, first[0], proof)  # never settled


# --- liabilities -----------------------------------------------------------------------------


def _book(n: int, seed: int) -> dict[bytes, int]:
    rnd = random.Random(seed)
    book = {_key(f"acct:{seed}:{i}"): rnd.randrange(0, 10**13) for i in range(n)}
    book[_key(f"whale:{seed}")] = 2**64 - 1  # the largest balance the range check allows
    return book


def _on_chain_liability(env: Env, epoch_id: int, p: LiabilityProof) -> bool:
    return env.client.verify_liability(epoch_id, p.account_key, p.balance, p.index, p.sibling_hashes, p.sibling_sums)


def test_every_liability_proof_verifies_on_chain(env: Env) -> None:
    tree = MerkleSumTree.of(_book(20, seed=7))
    env.client.commit_liabilities(1, tree.root, tree.total)
    commitment = env.client.liabilities(1)
    assert (commitment.root, commitment.total) == (tree.root, tree.total)
    for key in tree.keys:
        proof = tree.get_proof(key)
        assert verify_liability(tree.root, tree.total, proof)
        assert _on_chain_liability(env, 1, proof)


def test_single_account_liabilities_verify_with_empty_proof(env: Env) -> None:
    tree = MerkleSumTree.of({_key("solo"): 123})
    env.client.commit_liabilities(1, tree.root, tree.total)
    assert _on_chain_liability(env, 1, tree.get_proof(0))


@pytest.fixture
def committed(env: Env) -> tuple[Env, MerkleSumTree]:
    tree = MerkleSumTree.of(_book(11, seed=8))
    env.client.commit_liabilities(1, tree.root, tree.total)
    return env, tree


@pytest.mark.parametrize(
    "tamper",
    [
        "balance+1",
        "balance-1",
        "account key",
        "index",
        "index above height",
        "sibling hash",
        "sibling sum+1",
        "sibling sum moved to balance",
        "truncated",
        "epoch",
    ],
)
def test_tampered_liability_is_refused_on_chain(committed: tuple[Env, MerkleSumTree], tamper: str) -> None:
    env, tree = committed
    proof = tree.get_proof(5)
    assert _on_chain_liability(env, 1, proof)
    epoch_id = 1
    h, s = list(proof.sibling_hashes), list(proof.sibling_sums)
    if tamper == "balance+1":
        bad = dataclasses.replace(proof, balance=proof.balance + 1)
    elif tamper == "balance-1":
        bad = dataclasses.replace(proof, balance=proof.balance - 1)
    elif tamper == "account key":
        bad = dataclasses.replace(proof, account_key=_flip(proof.account_key))
    elif tamper == "index":
        bad = dataclasses.replace(proof, index=proof.index ^ 1)
    elif tamper == "index above height":
        bad = dataclasses.replace(proof, index=proof.index + 2**tree.depth)
    elif tamper == "sibling hash":
        bad = dataclasses.replace(proof, sibling_hashes=(h[0], _flip(h[1]), *h[2:]))
    elif tamper == "sibling sum+1":
        bad = dataclasses.replace(proof, sibling_sums=(s[0], s[1] + 1, *s[2:]))
    elif tamper == "sibling sum moved to balance":
        bad = dataclasses.replace(proof, balance=proof.balance + 1, sibling_sums=(s[0] - 1, *s[1:]))
    elif tamper == "truncated":
        bad = dataclasses.replace(proof, sibling_hashes=tuple(h[:-1]), sibling_sums=tuple(s[:-1]))
    else:
        bad, epoch_id = proof, 2  # nothing committed for epoch 2
    assert not _on_chain_liability(env, epoch_id, bad)
    if epoch_id == 1:
        assert not verify_liability(tree.root, tree.total, bad)


def test_liability_proof_of_an_older_epoch_fails_against_a_newer_one(committed: tuple[Env, MerkleSumTree]) -> None:
    env, tree = committed
    book = dict(zip(tree.keys, (leaf.sum for leaf in tree.levels[0]), strict=False))
    book[tree.keys[0]] += 1
    newer = MerkleSumTree.of(book)
    env.client.commit_liabilities(2, newer.root, newer.total)
    old_proof = tree.get_proof(3)
    assert _on_chain_liability(env, 1, old_proof)
    assert not _on_chain_liability(env, 2, old_proof)
    assert _on_chain_liability(env, 2, newer.get_proof(3))


@st.composite
def tampered_proofs(draw: st.DrawFn, tree: MerkleSumTree) -> LiabilityProof:
    proof = tree.get_proof(draw(st.integers(0, len(tree) - 1)))
    h, s = list(proof.sibling_hashes), list(proof.sibling_sums)
    field = draw(st.sampled_from(["balance", "index", "hash", "sum", "none"]))
    level = draw(st.integers(0, len(h) - 1))
    if field == "balance":
        return dataclasses.replace(proof, balance=draw(st.integers(0, 2**64 + 5)))
    if field == "index":
        return dataclasses.replace(proof, index=draw(st.integers(0, 2 ** (len(h) + 1))))
    if field == "hash":
        h[level] = draw(st.binary(min_size=32, max_size=32))
    if field == "sum":
        s[level] = draw(st.integers(0, 2 ** (66 + level)))
    return dataclasses.replace(proof, sibling_hashes=tuple(h), sibling_sums=tuple(s))


def test_python_and_vault_agree_on_random_liability_proofs(committed: tuple[Env, MerkleSumTree]) -> None:
    """Differential: for honest and randomly tampered proofs, Python and Solidity give the same answer."""
    env, tree = committed
    seen: set[bool] = set()

    @settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(tampered_proofs(tree))
    def check(proof: LiabilityProof) -> None:
        expected = verify_liability(tree.root, tree.total, proof)
        assert _on_chain_liability(env, 1, proof) == expected
        seen.add(expected)

    check()
    assert seen == {True, False}  # both outcomes were exercised
