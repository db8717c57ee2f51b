"""tokenbridge.services.verify with a fake chain reader: every check passes on a real
document and each kind of tampering fails exactly the check that guards it."""

from __future__ import annotations

import copy
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest

from tokenbridge.domain.errors import InvalidInput
from tokenbridge.domain.keys import account_key, id_hash
from tokenbridge.domain.merkle import GiftLeaf, gift_tree, verify_gift
from tokenbridge.domain.merkle_sum import LiabilityProof, MerkleSumTree, verify_liability
from tokenbridge.domain.split import split
from tokenbridge.services.verify import (
    BALANCE_PROOF_FORMAT,
    GIFT_RECEIPT_FORMAT,
    EpochView,
    LiabilitiesView,
    build_balance_proof,
    build_gift_receipt,
    parse_balance_proof,
    parse_gift_receipt,
    verify_balance_proof,
    verify_gift_receipt,
    verify_reserve,
)

VAULT = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
CHAIN = 31337
BPS = 7_000
EPOCH = 12
SALT = bytes(range(32))
OTHER_SALT = bytes(range(1, 33))


@dataclass
class FakeReader:
    """A vault in memory: the real Merkle code answers the verify views, like CoinVault does."""

    vault: str = VAULT
    chain: int = CHAIN
    has_code: bool = True
    epochs: dict[int, EpochView] = field(default_factory=dict)
    commitments: dict[int, LiabilitiesView] = field(default_factory=dict)
    reserve_amount: int = 0
    calls: list[str] = field(default_factory=list)

    def chain_id(self) -> int:
        return self.chain

    def vault_has_code(self) -> bool:
        return self.has_code

    def epoch(self, epoch_id: int) -> EpochView:
        self.calls.append(f"epoch({epoch_id})")
        return self.epochs.get(epoch_id, EpochView(bytes(32), 0, 0, 0, 0))

    def verify_gift(self, epoch_id: int, leaf: GiftLeaf, proof: Sequence[bytes]) -> bool:
        self.calls.append("verifyGift")
        e = self.epochs.get(epoch_id)
        if e is None:
            return False
        expected = leaf.gross * e.bps // 10_000
        if leaf.creator_amount != expected or leaf.platform_amount != leaf.gross - expected:
            return False
        return verify_gift(e.gift_root, leaf, proof)

    def liabilities(self, epoch_id: int) -> LiabilitiesView:
        return self.commitments.get(epoch_id, LiabilitiesView(epoch_id, bytes(32), 0, 0))

    def latest_liabilities(self) -> LiabilitiesView:
        if not self.commitments:
            return LiabilitiesView(0, bytes(32), 0, 0)
        return self.commitments[max(self.commitments)]

    def verify_liability(self, epoch_id: int, proof: LiabilityProof) -> bool:
        self.calls.append("verifyLiability")
        c = self.commitments.get(epoch_id)
        return c is not None and verify_liability(c.root, c.total, proof)

    def reserve(self) -> int:
        return self.reserve_amount

    def solvent(self) -> bool:
        latest = self.latest_liabilities()
        return latest.committed_at != 0 and self.reserve_amount >= latest.total


def _key(name: str, salt: bytes = SALT) -> bytes:
    return account_key(name, salt)


def _gifts(bps: int = BPS) -> list[GiftLeaf]:
    specs = [("alice", "bob", 1_000_000), ("alice", "carol", 3_333_333), ("dave", "bob", 7), ("dave", "carol", 10**12)]
    return [
        GiftLeaf.of(f"g-{i}", _key(f"user:{s}:coins"), _key(f"creator:{c}:earnings"), split(gross, bps))
        for i, (s, c, gross) in enumerate(specs)
    ]


@pytest.fixture
def world() -> tuple[FakeReader, dict[str, Any]]:
    """A settled epoch with the receipt of gift g-1 (alice -> carol)."""
    gifts = _gifts()
    tree = gift_tree(gifts)
    reader = FakeReader()
    reader.epochs[EPOCH] = EpochView(tree.root, len(gifts), sum(g.gross for g in gifts), BPS, 1_700_000_000)
    receipt = build_gift_receipt(
        tree,
        gifts[1],
        gift_id="g-1",
        epoch_id=EPOCH,
        creator_bps=BPS,
        chain_id=CHAIN,
        vault=VAULT,
        sender=("user:alice:coins", SALT),
    )
    return reader, receipt


def _verify(reader: FakeReader, receipt: dict[str, Any]) -> Any:
    return verify_gift_receipt(parse_gift_receipt(receipt), reader)


# --- gift receipts ----------------------------------------------------------------------------


def test_a_real_receipt_passes_every_check(world: tuple[FakeReader, dict[str, Any]]) -> None:
    reader, receipt = world
    verdict = _verify(reader, receipt)
    assert verdict.ok, verdict.to_json()
    assert [c.name for c in verdict.checks] == [
        "gift_id_hash",
        "sender_key",
        "epoch_settled",
        "epoch_bps",
        "split",
        "merkle_proof",
        "vault_verify_gift",
    ]
    assert verdict.facts["epoch bps"] == str(BPS)
    assert verdict.to_json()["verdict"] == "verified"
    assert "verifyGift" in reader.calls


def test_receipt_amounts_are_decimal_strings_and_numbers_are_accepted(world: tuple[FakeReader, dict[str, Any]]) -> None:
    reader, receipt = world
    assert receipt["gift"]["gross"] == "3333333"
    as_numbers = copy.deepcopy(receipt)
    for k in ("gross", "creator_amount", "platform_amount"):
        as_numbers["gift"][k] = int(as_numbers["gift"][k])
    assert _verify(reader, as_numbers).ok


def test_without_optional_id_and_sender_the_chain_checks_still_run(world: tuple[FakeReader, dict[str, Any]]) -> None:
    reader, receipt = world
    bare = copy.deepcopy(receipt)
    del bare["sender"]
    del bare["gift"]["id"]
    verdict = _verify(reader, bare)
    assert verdict.ok
    assert "sender_key" not in [c.name for c in verdict.checks]
    assert "gift_id_hash" not in [c.name for c in verdict.checks]


def _tampered(receipt: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    doc = copy.deepcopy(receipt)
    target = doc
    *parents, last = path.split(".")
    for p in parents:
        target = target[p]
    target[last] = value(target[last]) if callable(value) else value
    return doc


@pytest.mark.parametrize(
    ("path", "value", "must_fail", "must_pass"),
    [
        # more for the creator, less for the platform: the sum still matches gross
        (
            "gift.creator_amount",
            lambda v: str(int(v) + 1),
            {"split", "merkle_proof", "vault_verify_gift"},
            {"epoch_bps"},
        ),
        ("gift.gross", lambda v: str(int(v) + 1), {"split", "merkle_proof", "vault_verify_gift"}, {"epoch_bps"}),
        # the receipt claims another rate: the leaf does not carry it, the epoch does
        ("gift.creator_bps", 8_000, {"epoch_bps"}, {"split", "merkle_proof", "vault_verify_gift"}),
        ("epoch_id", EPOCH + 1, {"epoch_settled", "merkle_proof", "vault_verify_gift"}, {"sender_key"}),
        ("gift.creator_key", "0x" + "ab" * 32, {"merkle_proof", "vault_verify_gift"}, {"split", "epoch_bps"}),
        ("gift.id", "g-2", {"gift_id_hash"}, {"merkle_proof", "vault_verify_gift"}),
        ("gift.gift_id_hash", "0x" + id_hash("g-2").hex(), {"gift_id_hash", "merkle_proof"}, {"split"}),
        ("sender.salt", "0x" + OTHER_SALT.hex(), {"sender_key"}, {"merkle_proof", "vault_verify_gift"}),
        ("sender.account_id", "user:mallory:coins", {"sender_key"}, {"merkle_proof", "vault_verify_gift"}),
        ("proof", lambda p: ["0x" + "00" * 32, *p[1:]], {"merkle_proof", "vault_verify_gift"}, {"split"}),
        ("proof", lambda p: p[:-1], {"merkle_proof", "vault_verify_gift"}, {"split"}),
        ("proof", lambda p: list(reversed(p)), {"merkle_proof", "vault_verify_gift"}, {"split"}),
    ],
)
def test_each_tampering_fails_the_check_that_guards_it(
    world: tuple[FakeReader, dict[str, Any]], path: str, value: Any, must_fail: set[str], must_pass: set[str]
) -> None:
    reader, receipt = world
    verdict = _verify(reader, _tampered(receipt, path, value))
    assert not verdict.ok
    assert must_fail <= set(verdict.failed), verdict.failed
    assert not must_pass & set(verdict.failed), verdict.failed
    assert verdict.to_json()["verdict"] == "NOT verified"


def test_split_is_checked_against_the_epoch_rate_not_the_receipt(world: tuple[FakeReader, dict[str, Any]]) -> None:
    """A tree settled with amounts split at the wrong rate fails `split` even with a matching proof."""
    reader, _ = world
    gifts = _gifts(bps=9_000)  # split at 90 % but the epoch records 70 %
    tree = gift_tree(gifts)
    reader.epochs[EPOCH] = EpochView(tree.root, len(gifts), 0, BPS, 1)
    receipt = build_gift_receipt(
        tree, gifts[0], gift_id="g-0", epoch_id=EPOCH, creator_bps=9_000, chain_id=CHAIN, vault=VAULT
    )
    verdict = _verify(reader, receipt)
    assert set(verdict.failed) == {"epoch_bps", "split", "vault_verify_gift"}
    assert verdict.check("merkle_proof").passed


def test_a_fake_vault_that_always_says_true_is_still_caught(world: tuple[FakeReader, dict[str, Any]]) -> None:
    """The Python checks do not trust verifyGift: a lying vault view fails nothing else but they do."""
    reader, receipt = world

    class LyingReader(FakeReader):
        def verify_gift(self, epoch_id: int, leaf: GiftLeaf, proof: Sequence[bytes]) -> bool:
            return True

    liar = LyingReader(epochs=reader.epochs)
    verdict = _verify(liar, _tampered(receipt, "gift.creator_amount", lambda v: str(int(v) + 1)))
    assert verdict.check("vault_verify_gift").passed
    assert {"split", "merkle_proof"} <= set(verdict.failed)
    assert not verdict.ok


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d.update(format="tokenbridge-gift-receipt/v2"), "format tag"),
        (lambda d: d.pop("proof"), "missing field 'proof'"),
        (lambda d: d["gift"].update(gross="1e6"), "gift.gross"),
        (lambda d: d["gift"].update(gross=-1), "out of range"),
        (lambda d: d["gift"].update(gross=1.5), "gift.gross"),
        (lambda d: d["gift"].update(gross=True), "boolean"),
        (lambda d: d["gift"].update(creator_bps=10_001), "creator_bps"),
        (lambda d: d["gift"].update(from_key="0x1234"), "gift.from_key"),
        (lambda d: d.update(proof=["0xzz" + "00" * 31]), "proof[0]"),
        (lambda d: d.update(proof="0x00"), "JSON array"),
        (lambda d: d.update(vault="vault"), "vault"),
        (lambda d: d.update(epoch_id=2**64), "epoch_id"),
        (lambda d: d.update(gift=[]), "receipt.gift"),
        (lambda d: d["sender"].pop("salt"), "missing field 'salt'"),
    ],
)
def test_unusable_receipts_raise_invalid_input(
    world: tuple[FakeReader, dict[str, Any]], mutate: Any, message: str
) -> None:
    _, receipt = world
    doc = copy.deepcopy(receipt)
    mutate(doc)
    with pytest.raises(InvalidInput, match=re.escape(message)):
        parse_gift_receipt(doc)


def test_wrong_chain_or_missing_vault_is_unusable(world: tuple[FakeReader, dict[str, Any]]) -> None:
    reader, receipt = world
    parsed = parse_gift_receipt(receipt)
    reader.chain = 1
    with pytest.raises(InvalidInput, match="chain 31337 but the RPC serves chain 1"):
        verify_gift_receipt(parsed, reader)
    reader.chain = CHAIN
    reader.has_code = False
    with pytest.raises(InvalidInput, match="no contract at vault"):
        verify_gift_receipt(parsed, reader)


def test_build_gift_receipt_refuses_inconsistent_inputs() -> None:
    gifts = _gifts()
    tree = gift_tree(gifts)
    common: dict[str, Any] = {"epoch_id": 1, "creator_bps": BPS, "chain_id": CHAIN, "vault": VAULT}
    with pytest.raises(InvalidInput, match="does not hash"):
        build_gift_receipt(tree, gifts[0], gift_id="g-9", **common)
    with pytest.raises(InvalidInput, match="from_key"):
        build_gift_receipt(tree, gifts[0], gift_id="g-0", sender=("user:alice:coins", OTHER_SALT), **common)
    doc = build_gift_receipt(tree, gifts[0], gift_id="g-0", **common)
    assert doc["format"] == GIFT_RECEIPT_FORMAT
    assert "sender" not in doc


# --- balance proofs ---------------------------------------------------------------------------

ACCOUNTS = {"user:alice:coins": 5_000_000, "creator:bob:earnings": 0, "platform:revenue": 123, "user:dave:coins": 2**63}


@pytest.fixture
def ledger() -> tuple[FakeReader, dict[str, Any]]:
    tree = MerkleSumTree.of({_key(name): balance for name, balance in ACCOUNTS.items()})
    reader = FakeReader()
    reader.commitments[EPOCH] = LiabilitiesView(EPOCH, tree.root, tree.total, 1_700_000_100)
    proof = build_balance_proof(
        tree, account_id="user:alice:coins", salt=SALT, epoch_id=EPOCH, chain_id=CHAIN, vault=VAULT
    )
    return reader, proof


def _verify_balance(reader: FakeReader, doc: dict[str, Any]) -> Any:
    return verify_balance_proof(parse_balance_proof(doc), reader)


def test_a_real_balance_proof_passes_every_check(ledger: tuple[FakeReader, dict[str, Any]]) -> None:
    reader, doc = ledger
    assert doc["format"] == BALANCE_PROOF_FORMAT
    assert doc["balance"] == "5000000"
    assert doc["total"] == str(sum(ACCOUNTS.values()))
    verdict = _verify_balance(reader, doc)
    assert verdict.ok, verdict.to_json()
    assert [c.name for c in verdict.checks] == [
        "account_key",
        "range_checks",
        "document_root",
        "commitment_exists",
        "committed_root",
        "vault_verify_liability",
    ]


@pytest.mark.parametrize(
    ("path", "value", "must_fail"),
    [
        ("balance", lambda v: str(int(v) + 1), {"document_root", "committed_root", "vault_verify_liability"}),
        ("balance", str(2**64), {"range_checks", "document_root", "committed_root", "vault_verify_liability"}),
        ("account.salt", "0x" + OTHER_SALT.hex(), {"account_key"}),
        ("account.account_key", "0x" + _key("user:dave:coins").hex(), {"account_key", "committed_root"}),
        ("sibling_sums", lambda s: [str(int(s[0]) + 1), *s[1:]], {"document_root", "committed_root"}),
        ("sibling_hashes", lambda h: ["0x" + "11" * 32, *h[1:]], {"document_root", "committed_root"}),
        ("index", lambda i: i ^ 1, {"document_root", "committed_root", "vault_verify_liability"}),
        ("index", 2**40, {"range_checks", "committed_root"}),
        ("epoch_id", EPOCH + 1, {"commitment_exists", "committed_root", "vault_verify_liability"}),
        ("total", lambda t: str(int(t) - 1), {"document_root"}),
    ],
)
def test_each_balance_tampering_fails_its_check(
    ledger: tuple[FakeReader, dict[str, Any]], path: str, value: Any, must_fail: set[str]
) -> None:
    reader, doc = ledger
    verdict = _verify_balance(reader, _tampered(doc, path, value))
    assert not verdict.ok
    assert must_fail <= set(verdict.failed), verdict.failed


def test_a_hidden_debt_sibling_sum_is_refused_by_the_range_check(ledger: tuple[FakeReader, dict[str, Any]]) -> None:
    reader, doc = ledger
    verdict = _verify_balance(reader, _tampered(doc, "sibling_sums", lambda s: [str(2**64), *s[1:]]))
    assert "range_checks" in verdict.failed
    assert "level 0" in verdict.check("range_checks").detail


def test_unusable_balance_proofs(ledger: tuple[FakeReader, dict[str, Any]]) -> None:
    _, doc = ledger
    for mutate, message in [
        (lambda d: d.update(format=GIFT_RECEIPT_FORMAT), "format tag"),
        (lambda d: d.update(sibling_sums=d["sibling_sums"][:-1]), "sibling_sums has"),
        (lambda d: d.pop("root"), "missing field 'root'"),
        (lambda d: d["account"].pop("account_key"), "account_key"),
    ]:
        bad = copy.deepcopy(doc)
        mutate(bad)
        with pytest.raises(InvalidInput, match=message):
            parse_balance_proof(bad)


# --- reserve ----------------------------------------------------------------------------------


def test_reserve_solvent_insolvent_and_uncommitted() -> None:
    reader = FakeReader(reserve_amount=1_000)
    verdict = verify_reserve(reader)
    assert set(verdict.failed) == {"commitment_exists", "reserve_covers_liabilities", "vault_solvent"}
    reader.commitments[3] = LiabilitiesView(3, b"\x01" * 32, 1_000, 5)
    verdict = verify_reserve(reader)
    assert verdict.ok
    assert verdict.headline == "solvent"
    assert verdict.facts["liabilities total"] == "1000"
    reader.commitments[4] = LiabilitiesView(4, b"\x02" * 32, 1_001, 6)
    verdict = verify_reserve(reader)
    assert set(verdict.failed) == {"reserve_covers_liabilities", "vault_solvent"}
    assert verdict.facts["liabilities epoch"] == "4"
    assert "margin -1" in verdict.check("reserve_covers_liabilities").detail
    assert verdict.to_json()["verdict"] == "NOT solvent"


def test_reserve_refuses_a_vault_without_code() -> None:
    with pytest.raises(InvalidInput, match="no contract"):
        verify_reserve(FakeReader(has_code=False))


# --- the vault the document names vs the deployment's --------------------------------------------


def test_without_a_known_deployment_the_vault_is_flagged_as_the_documents_own(
    world: tuple[FakeReader, dict[str, Any]], ledger: tuple[FakeReader, dict[str, Any]]
) -> None:
    for verdict in (_verify(*world), _verify_balance(*ledger)):
        assert verdict.ok
        assert "vault_is_deployment" not in {c.name for c in verdict.checks}
        assert len(verdict.warnings) == 1
        assert f"the vault address {VAULT} came from the document itself" in verdict.warnings[0]
        assert verdict.to_json()["warnings"] == list(verdict.warnings)
        assert verdict.facts["vault source"] == "document (unverified)"


def test_vault_is_deployment_passes_for_the_deployment_and_fails_for_another_vault(
    world: tuple[FakeReader, dict[str, Any]], ledger: tuple[FakeReader, dict[str, Any]]
) -> None:
    reader, receipt = world
    b_reader, proof = ledger
    other = "0x" + "42" * 20
    for verify, r, doc in (
        (verify_gift_receipt, reader, parse_gift_receipt(receipt)),
        (verify_balance_proof, b_reader, parse_balance_proof(proof)),
    ):
        same = verify(doc, r, expected_vault=VAULT.upper().replace("0X", "0x"))  # case-insensitive
        assert same.ok, same.to_json()
        assert same.warnings == ()
        assert same.checks[0].name == "vault_is_deployment"
        differs = verify(doc, r, expected_vault=other)
        assert not differs.ok
        assert differs.failed == ["vault_is_deployment"]
        assert other in differs.check("vault_is_deployment").detail
