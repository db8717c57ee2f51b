"""Verify gift receipts, balance proofs and the reserve from the chain alone.

The documents are those of docs/design/receipts.md. Every check is a pure function of the
document and a few vault views read through `ChainReader` (a port: the web3 adapter is
`tokenbridge.adapters.chain.reader.Web3ChainReader`, tests pass a fake). No call to the
tokenbridge API is ever made.

Outcomes:
- a document that cannot be checked at all (malformed JSON, wrong format tag, bad hex, a
  chain id other than the RPC's, no contract at the vault address) raises `InvalidInput`;
  an unreachable node raises `ChainError` (the adapter's);
- otherwise a `Verdict` lists every check with what was compared; it is `ok` only when
  every check passed.

`build_gift_receipt` / `build_balance_proof` produce the documents from the trees.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from tokenbridge.domain.errors import InvalidInput
from tokenbridge.domain.keys import SALT_BYTES, account_key, id_hash
from tokenbridge.domain.merkle import GIFT_LEAF_TYPES, GiftLeaf, StandardMerkleTree, leaf_hash, process_proof
from tokenbridge.domain.merkle_sum import LiabilityProof, MerkleSumTree, process_liability_proof
from tokenbridge.domain.split import BPS_DENOMINATOR

GIFT_RECEIPT_FORMAT = "tokenbridge-gift-receipt/v1"
BALANCE_PROOF_FORMAT = "tokenbridge-balance-proof/v1"
UINT64_LIMIT = 2**64
UINT256_LIMIT = 2**256
MAX_PROOF_LENGTH = 256  # a gift tree of 2**256 leaves does not exist; refuse absurd inputs early

_HEX_BYTES32 = re.compile(r"^0x[0-9a-fA-F]{64}$")
_ADDRESS = re.compile(r"^0x[0-9a-fA-F]{40}$")
_DECIMAL = re.compile(r"^[0-9]{1,78}$")


# --- the chain-reader port ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EpochView:
    """What the vault stores for a gift epoch (`epoch(epochId)`); settled_at == 0 when not settled."""

    gift_root: bytes
    gift_count: int
    gross_total: int
    bps: int
    settled_at: int


@dataclass(frozen=True, slots=True)
class LiabilitiesView:
    """A liabilities commitment (`liabilities(epochId)` / `latestLiabilities()`); committed_at == 0 when none."""

    epoch_id: int
    root: bytes
    total: int
    committed_at: int


class ChainReader(Protocol):
    """The few vault views a verifier needs, bound to one node and one vault address."""

    vault: str

    def chain_id(self) -> int: ...

    def vault_has_code(self) -> bool: ...

    def epoch(self, epoch_id: int) -> EpochView: ...

    def verify_gift(self, epoch_id: int, leaf: GiftLeaf, proof: Sequence[bytes]) -> bool: ...

    def liabilities(self, epoch_id: int) -> LiabilitiesView: ...

    def latest_liabilities(self) -> LiabilitiesView: ...

    def verify_liability(self, epoch_id: int, proof: LiabilityProof) -> bool: ...

    def reserve(self) -> int: ...

    def solvent(self) -> bool: ...


# --- verdicts ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Check:
    """One fact compared: `name` is a stable identifier (also used by the web page), `detail`
    says what was compared with what."""

    name: str
    label: str
    passed: bool
    detail: str


@dataclass(frozen=True, slots=True)
class Verdict:
    kind: str  # "gift" | "balance" | "reserve"
    checks: tuple[Check, ...]
    facts: dict[str, str] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()  # what the checks could not establish (e.g. the vault is the document's own)

    @property
    def ok(self) -> bool:
        return bool(self.checks) and all(c.passed for c in self.checks)

    @property
    def failed(self) -> list[str]:
        return [c.name for c in self.checks if not c.passed]

    def check(self, name: str) -> Check:
        for c in self.checks:
            if c.name == name:
                return c
        raise KeyError(name)

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "ok": self.ok,
            "verdict": self.headline,
            "failed": self.failed,
            "checks": [{"name": c.name, "label": c.label, "passed": c.passed, "detail": c.detail} for c in self.checks],
            "facts": dict(self.facts),
            "warnings": list(self.warnings),
        }

    @property
    def headline(self) -> str:
        if self.kind == "reserve":
            return "solvent" if self.ok else "NOT solvent"
        return "verified" if self.ok else "NOT verified"


# --- parsing helpers (every failure is InvalidInput: the document is unusable) ----------------


def _field(data: Mapping[str, Any], key: str, where: str) -> Any:
    if key not in data:
        raise InvalidInput(f"{where}: missing field {key!r}")
    return data[key]


def _object(value: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise InvalidInput(f"{where} must be a JSON object")
    return value


def _uint(value: Any, where: str, limit: int = UINT256_LIMIT) -> int:
    """A JSON number or decimal string in [0, limit)."""
    if isinstance(value, bool):
        raise InvalidInput(f"{where} must be an integer, got a boolean")
    if isinstance(value, int):
        number = value
    elif isinstance(value, str) and _DECIMAL.match(value):
        number = int(value)
    else:
        raise InvalidInput(f"{where} must be an integer or a decimal string, got {value!r}")
    if not 0 <= number < limit:
        raise InvalidInput(f"{where} out of range: {number}")
    return number


def _bytes32(value: Any, where: str) -> bytes:
    if not isinstance(value, str) or not _HEX_BYTES32.match(value):
        raise InvalidInput(f"{where} must be 0x followed by 64 hex digits, got {value!r}")
    return bytes.fromhex(value[2:])


def _address(value: Any, where: str) -> str:
    if not isinstance(value, str) or not _ADDRESS.match(value):
        raise InvalidInput(f"{where} must be a 0x-prefixed 20-byte address, got {value!r}")
    return value


def _string(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value:
        raise InvalidInput(f"{where} must be a non-empty string")
    return value


def _list(value: Any, where: str) -> list[Any]:
    if not isinstance(value, list):
        raise InvalidInput(f"{where} must be a JSON array")
    if len(value) > MAX_PROOF_LENGTH:
        raise InvalidInput(f"{where} has {len(value)} elements; at most {MAX_PROOF_LENGTH} are accepted")
    return value


def _format(data: Mapping[str, Any], expected: str) -> None:
    tag = data.get("format")
    if tag != expected:
        raise InvalidInput(f"format tag is {tag!r}, expected {expected!r}")


def load_document(text: str | bytes) -> Mapping[str, Any]:
    """Parse JSON text into an object, or raise InvalidInput with the parser's position."""
    try:
        data = json.loads(text)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"not valid JSON: {exc}") from None
    return _object(data, "document")


def _hex(value: bytes) -> str:
    return "0x" + value.hex()


# --- gift receipts -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class GiftReceipt:
    chain_id: int
    vault: str
    gift_id: str | None
    leaf: GiftLeaf
    creator_bps: int
    epoch_id: int
    proof: tuple[bytes, ...]
    sender: tuple[str, bytes] | None  # (account_id, salt)


def parse_gift_receipt(data: Mapping[str, Any]) -> GiftReceipt:
    """The receipt of docs/design/receipts.md, types checked; InvalidInput when unusable."""
    data = _object(data, "receipt")
    _format(data, GIFT_RECEIPT_FORMAT)
    gift = _object(_field(data, "gift", "receipt"), "receipt.gift")
    gift_id = gift.get("id")
    if gift_id is not None:
        gift_id = _string(gift_id, "gift.id")
    bps = _uint(_field(gift, "creator_bps", "gift"), "gift.creator_bps", BPS_DENOMINATOR + 1)
    leaf = GiftLeaf(
        _bytes32(_field(gift, "gift_id_hash", "gift"), "gift.gift_id_hash"),
        _bytes32(_field(gift, "from_key", "gift"), "gift.from_key"),
        _bytes32(_field(gift, "creator_key", "gift"), "gift.creator_key"),
        _uint(_field(gift, "gross", "gift"), "gift.gross"),
        _uint(_field(gift, "creator_amount", "gift"), "gift.creator_amount"),
        _uint(_field(gift, "platform_amount", "gift"), "gift.platform_amount"),
    )
    proof = tuple(
        _bytes32(p, f"proof[{i}]") for i, p in enumerate(_list(_field(data, "proof", "receipt"), "receipt.proof"))
    )
    sender: tuple[str, bytes] | None = None
    if data.get("sender") is not None:
        s = _object(data["sender"], "receipt.sender")
        sender = (
            _string(_field(s, "account_id", "sender"), "sender.account_id"),
            _bytes32(_field(s, "salt", "sender"), "sender.salt"),
        )
    return GiftReceipt(
        chain_id=_uint(_field(data, "chain_id", "receipt"), "chain_id", UINT64_LIMIT),
        vault=_address(_field(data, "vault", "receipt"), "vault"),
        gift_id=gift_id,
        leaf=leaf,
        creator_bps=bps,
        epoch_id=_uint(_field(data, "epoch_id", "receipt"), "epoch_id", UINT64_LIMIT),
        proof=proof,
        sender=sender,
    )


def _usable_chain(reader: ChainReader, chain_id: int | None) -> int:
    """The RPC's chain id; InvalidInput when it differs from the document's or the vault has no code."""
    actual = reader.chain_id()
    if chain_id is not None and actual != chain_id:
        raise InvalidInput(f"the document is for chain {chain_id} but the RPC serves chain {actual}")
    if not reader.vault_has_code():
        raise InvalidInput(f"no contract at vault address {reader.vault} on chain {actual}")
    return actual


UNTRUSTED_VAULT_WARNING = (
    "the vault address {vault} came from the document itself: no deployment record or --vault was given, "
    "so these checks show only that the document is consistent with that contract. Make sure it is the "
    "vault the platform publishes (deployments/<chain id>.json, or pass --vault)."
)


def _vault_checks(document_vault: str, expected_vault: str | None) -> tuple[list[Check], tuple[str, ...]]:
    """`vault_is_deployment` when the deployed vault is known (same name as the web page's check),
    else a warning that the vault is only the document's claim."""
    if expected_vault is None:
        return [], (UNTRUSTED_VAULT_WARNING.format(vault=document_vault),)
    same = document_vault.lower() == expected_vault.lower()
    return [
        Check(
            "vault_is_deployment",
            "document's vault is the deployment's",
            same,
            f"document: {document_vault}; deployment: {expected_vault}",
        )
    ], ()


def verify_gift_receipt(receipt: GiftReceipt, reader: ChainReader, *, expected_vault: str | None = None) -> Verdict:
    """Every check of docs/design/receipts.md for a gift receipt, against `reader`'s vault.

    `expected_vault` is the deployment's vault (from a deployment record or the user): when given,
    `vault_is_deployment` checks the receipt names it; when None the verdict carries a warning."""
    chain_id = _usable_chain(reader, receipt.chain_id)
    leaf = receipt.leaf
    checks, warnings = _vault_checks(receipt.vault, expected_vault)

    if receipt.gift_id is not None:
        expected = id_hash(receipt.gift_id)
        checks.append(
            Check(
                "gift_id_hash",
                "gift id hash = keccak256(id)",
                expected == leaf.gift_id,
                f"keccak256({receipt.gift_id!r}) = {_hex(expected)}; receipt says {_hex(leaf.gift_id)}",
            )
        )
    if receipt.sender is not None:
        sender_id, salt = receipt.sender
        key = account_key(sender_id, salt)
        checks.append(
            Check(
                "sender_key",
                "sender key = account_key(account_id, salt)",
                key == leaf.from_key,
                f"account_key({sender_id!r}, salt) = {_hex(key)}; from_key is {_hex(leaf.from_key)}",
            )
        )

    epoch = reader.epoch(receipt.epoch_id)
    settled = epoch.settled_at != 0
    checks.append(
        Check(
            "epoch_settled",
            "epoch is settled on-chain",
            settled,
            f"epoch {receipt.epoch_id} settled at {epoch.settled_at}"
            if settled
            else f"epoch {receipt.epoch_id} not settled",
        )
    )
    checks.append(
        Check(
            "epoch_bps",
            "receipt's creator_bps = epoch's on-chain bps",
            settled and epoch.bps == receipt.creator_bps,
            f"on-chain {epoch.bps} bps; receipt says {receipt.creator_bps} bps",
        )
    )
    expected_creator = leaf.gross * epoch.bps // BPS_DENOMINATOR
    split_ok = (
        settled and leaf.creator_amount == expected_creator and leaf.creator_amount + leaf.platform_amount == leaf.gross
    )
    checks.append(
        Check(
            "split",
            "split at the epoch's rate",
            split_ok,
            f"gross {leaf.gross} x {epoch.bps} // 10000 = {expected_creator}; creator {leaf.creator_amount} + "
            f"platform {leaf.platform_amount} = {leaf.creator_amount + leaf.platform_amount}",
        )
    )
    computed_leaf = leaf_hash(GIFT_LEAF_TYPES, leaf.values())
    computed_root = process_proof(computed_leaf, receipt.proof)
    checks.append(
        Check(
            "merkle_proof",
            "Merkle proof reaches the epoch's gift root",
            settled and computed_root == epoch.gift_root,
            f"leaf {_hex(computed_leaf)} + {len(receipt.proof)} proof nodes -> {_hex(computed_root)}; "
            f"on-chain root {_hex(epoch.gift_root)}",
        )
    )
    on_chain = reader.verify_gift(receipt.epoch_id, leaf, receipt.proof)
    checks.append(
        Check(
            "vault_verify_gift",
            "vault's verifyGift view",
            on_chain,
            f"verifyGift(epoch {receipt.epoch_id}, ...) returned {str(on_chain).lower()}",
        )
    )
    facts = {
        "chain id": str(chain_id),
        "vault": reader.vault,
        "epoch": str(receipt.epoch_id),
        "gift": receipt.gift_id or _hex(leaf.gift_id),
        "gross": str(leaf.gross),
        "creator amount": str(leaf.creator_amount),
        "platform amount": str(leaf.platform_amount),
        "epoch bps": str(epoch.bps),
        "gift root": _hex(epoch.gift_root),
        "vault source": "document (unverified)" if expected_vault is None else "deployment",
    }
    return Verdict("gift", tuple(checks), facts, warnings)


def build_gift_receipt(
    tree: StandardMerkleTree,
    leaf: GiftLeaf,
    *,
    gift_id: str,
    epoch_id: int,
    creator_bps: int,
    chain_id: int,
    vault: str,
    sender: tuple[str, bytes] | None = None,
) -> dict[str, Any]:
    """The `tokenbridge-gift-receipt/v1` document of `leaf` in the settled epoch's `tree`."""
    if id_hash(gift_id) != leaf.gift_id:
        raise InvalidInput(f"gift id {gift_id!r} does not hash to the leaf's gift id")
    proof = tree.get_proof(leaf.values())
    doc: dict[str, Any] = {
        "format": GIFT_RECEIPT_FORMAT,
        "chain_id": chain_id,
        "vault": vault,
        "gift": {
            "id": gift_id,
            "gift_id_hash": _hex(leaf.gift_id),
            "from_key": _hex(leaf.from_key),
            "creator_key": _hex(leaf.creator_key),
            "gross": str(leaf.gross),
            "creator_amount": str(leaf.creator_amount),
            "platform_amount": str(leaf.platform_amount),
            "creator_bps": creator_bps,
        },
        "epoch_id": epoch_id,
        "proof": [_hex(p) for p in proof],
    }
    if sender is not None:
        account_id, salt = sender
        if len(salt) != SALT_BYTES or account_key(account_id, salt) != leaf.from_key:
            raise InvalidInput("sender account id and salt do not give the leaf's from_key")
        doc["sender"] = {"account_id": account_id, "salt": _hex(salt)}
    return doc


# --- balance proofs ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BalanceProof:
    chain_id: int
    vault: str
    epoch_id: int
    account: tuple[str, bytes] | None  # (account_id, salt)
    proof: LiabilityProof
    root: bytes
    total: int


def parse_balance_proof(data: Mapping[str, Any]) -> BalanceProof:
    data = _object(data, "balance proof")
    _format(data, BALANCE_PROOF_FORMAT)
    account = _object(_field(data, "account", "balance proof"), "balance proof.account")
    key = _bytes32(_field(account, "account_key", "account"), "account.account_key")
    owner: tuple[str, bytes] | None = None
    if account.get("account_id") is not None or account.get("salt") is not None:
        owner = (
            _string(_field(account, "account_id", "account"), "account.account_id"),
            _bytes32(_field(account, "salt", "account"), "account.salt"),
        )
    hashes = _list(_field(data, "sibling_hashes", "balance proof"), "sibling_hashes")
    sums = _list(_field(data, "sibling_sums", "balance proof"), "sibling_sums")
    if len(hashes) != len(sums):
        raise InvalidInput(f"sibling_hashes has {len(hashes)} elements but sibling_sums has {len(sums)}")
    proof = LiabilityProof(
        key,
        _uint(_field(data, "balance", "balance proof"), "balance"),
        _uint(_field(data, "index", "balance proof"), "index"),
        tuple(_bytes32(h, f"sibling_hashes[{i}]") for i, h in enumerate(hashes)),
        tuple(_uint(s, f"sibling_sums[{i}]") for i, s in enumerate(sums)),
    )
    return BalanceProof(
        chain_id=_uint(_field(data, "chain_id", "balance proof"), "chain_id", UINT64_LIMIT),
        vault=_address(_field(data, "vault", "balance proof"), "vault"),
        epoch_id=_uint(_field(data, "epoch_id", "balance proof"), "epoch_id", UINT64_LIMIT),
        account=owner,
        proof=proof,
        root=_bytes32(_field(data, "root", "balance proof"), "root"),
        total=_uint(_field(data, "total", "balance proof"), "total"),
    )


def verify_balance_proof(doc: BalanceProof, reader: ChainReader, *, expected_vault: str | None = None) -> Verdict:
    """Every check of docs/design/receipts.md for a balance proof, against `reader`'s vault
    (`expected_vault` as for `verify_gift_receipt`)."""
    chain_id = _usable_chain(reader, doc.chain_id)
    p = doc.proof
    checks, warnings = _vault_checks(doc.vault, expected_vault)
    if doc.account is not None:
        account_id, salt = doc.account
        key = account_key(account_id, salt)
        checks.append(
            Check(
                "account_key",
                "account key = account_key(account_id, salt)",
                key == p.account_key,
                f"account_key({account_id!r}, salt) = {_hex(key)}; proof is for {_hex(p.account_key)}",
            )
        )
    try:
        node = process_liability_proof(p.account_key, p.balance, p.index, p.sibling_hashes, p.sibling_sums)
        computed: tuple[bytes, int] | None = (node.hash, node.sum)
        path_detail = f"balance {p.balance} at index {p.index}, {len(p.sibling_hashes)} levels, every sum in range"
    except InvalidInput as exc:
        computed = None
        path_detail = exc.detail
    checks.append(Check("range_checks", "balance and node sums in range", computed is not None, path_detail))
    root_text = f"{_hex(computed[0])} / total {computed[1]}" if computed else "nothing (path invalid)"
    checks.append(
        Check(
            "document_root",
            "path recomputes the proof's root and total",
            computed == (doc.root, doc.total),
            f"recomputed {root_text}; document says {_hex(doc.root)} / total {doc.total}",
        )
    )
    commitment = reader.liabilities(doc.epoch_id)
    committed = commitment.committed_at != 0
    checks.append(
        Check(
            "commitment_exists",
            "liabilities committed for the epoch",
            committed,
            f"epoch {doc.epoch_id} committed at {commitment.committed_at}"
            if committed
            else f"no liabilities commitment for epoch {doc.epoch_id}",
        )
    )
    checks.append(
        Check(
            "committed_root",
            "root and total = the vault's commitment",
            committed and computed == (commitment.root, commitment.total),
            f"recomputed {root_text}; on-chain {_hex(commitment.root)} / total {commitment.total}",
        )
    )
    on_chain = reader.verify_liability(doc.epoch_id, p)
    checks.append(
        Check(
            "vault_verify_liability",
            "vault's verifyLiability view",
            on_chain,
            f"verifyLiability(epoch {doc.epoch_id}, ...) returned {str(on_chain).lower()}",
        )
    )
    facts = {
        "chain id": str(chain_id),
        "vault": reader.vault,
        "epoch": str(doc.epoch_id),
        "account key": _hex(p.account_key),
        "balance": str(p.balance),
        "committed total": str(commitment.total),
        "committed root": _hex(commitment.root),
        "vault source": "document (unverified)" if expected_vault is None else "deployment",
    }
    return Verdict("balance", tuple(checks), facts, warnings)


def build_balance_proof(
    tree: MerkleSumTree,
    *,
    account_id: str,
    salt: bytes,
    epoch_id: int,
    chain_id: int,
    vault: str,
) -> dict[str, Any]:
    """The `tokenbridge-balance-proof/v1` document of `account_id` in the epoch's liabilities `tree`."""
    key = account_key(account_id, salt)
    proof = tree.get_proof(key)
    body = proof.to_json()
    return {
        "format": BALANCE_PROOF_FORMAT,
        "chain_id": chain_id,
        "vault": vault,
        "epoch_id": epoch_id,
        "account": {"account_id": account_id, "salt": _hex(salt), "account_key": body["account_key"]},
        "balance": body["balance"],
        "index": body["index"],
        "sibling_hashes": body["sibling_hashes"],
        "sibling_sums": body["sibling_sums"],
        "root": _hex(tree.root),
        "total": str(tree.total),
    }


# --- reserve -----------------------------------------------------------------------------------


def verify_reserve(reader: ChainReader) -> Verdict:
    """Reserve vs the latest liabilities commitment: solvent iff reserve >= committed total."""
    chain_id = _usable_chain(reader, None)
    reserve = reader.reserve()
    latest = reader.latest_liabilities()
    committed = latest.committed_at != 0
    solvent_view = reader.solvent()
    checks = (
        Check(
            "commitment_exists",
            "a liabilities commitment exists",
            committed,
            f"latest commitment: epoch {latest.epoch_id} at {latest.committed_at}"
            if committed
            else "the vault has no liabilities commitment yet",
        ),
        Check(
            "reserve_covers_liabilities",
            "reserve >= committed liabilities",
            committed and reserve >= latest.total,
            f"reserve {reserve} vs liabilities {latest.total} (margin {reserve - latest.total})",
        ),
        Check(
            "vault_solvent",
            "vault's solvent() view",
            solvent_view,
            f"solvent() returned {str(solvent_view).lower()}",
        ),
    )
    facts = {
        "chain id": str(chain_id),
        "vault": reader.vault,
        "reserve": str(reserve),
        "liabilities total": str(latest.total),
        "liabilities epoch": str(latest.epoch_id),
        "liabilities root": _hex(latest.root),
        "committed at": str(latest.committed_at),
    }
    return Verdict("reserve", checks, facts)
