"""A typed client for CoinVault and its CreatorCoin over web3.py.

Reads return plain Python values and small frozen dataclasses; writes sign locally with an
eth-account `LocalAccount`, wait for the receipt and return a `TxResult`. Every revert (at
gas estimation or in a mined transaction) becomes a `VaultRevertError`, a `ChainError` whose
`revert` is the custom error's name (e.g. "CoinVaultChunkAlreadySettled") and whose
`revert_args` are its decoded arguments. This module and deploy.py are the only places in
tokenbridge that touch web3.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from eth_abi.abi import decode as abi_decode
from eth_abi.abi import encode as abi_encode
from eth_account import Account
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak
from web3 import Web3
from web3.exceptions import ContractLogicError, Web3Exception
from web3.types import RPCEndpoint

from tokenbridge.adapters.chain.artifacts import combined_error_abi, load_artifact
from tokenbridge.domain.errors import ChainError

BRIDGE_ROLE = bytes(keccak(text="BRIDGE_ROLE"))
PAUSER_ROLE = bytes(keccak(text="PAUSER_ROLE"))
DEFAULT_ADMIN_ROLE = b"\x00" * 32
ROLES: dict[str, bytes] = {"admin": DEFAULT_ADMIN_ROLE, "bridge": BRIDGE_ROLE, "pauser": PAUSER_ROLE}

_ERROR_STRING = bytes.fromhex("08c379a0")
_CREDIT_OF = "0x" + bytes(keccak(text="creditOf(bytes32)"))[:4].hex()  # eth_call data prefix
_PAYOUT = "0x" + bytes(keccak(text="payout(uint256[],bytes32[],address[],uint256[])"))[:4].hex()
_PANIC = bytes.fromhex("4e487b71")


class VaultRevertError(ChainError):
    """A vault or coin call reverted; `revert` names the error and `revert_args` holds its arguments."""

    def __init__(self, detail: str, revert: str | None = None, revert_args: tuple[Any, ...] = ()) -> None:
        super().__init__(detail, revert=revert)
        self.revert_args = revert_args


@dataclass(frozen=True, slots=True)
class TxResult:
    """A mined, successful transaction."""

    tx_hash: str
    block_number: int
    gas_used: int
    logs: tuple[dict[str, Any], ...] = ()


@dataclass(frozen=True, slots=True)
class PendingBps:
    exists: bool
    bps: int
    effective_at: int


@dataclass(frozen=True, slots=True)
class Allowance:
    limit: int
    period: int
    available: int


@dataclass(frozen=True, slots=True)
class EpochInfo:
    gift_root: bytes
    gift_count: int
    gross_total: int
    settled_gross: int
    bps: int
    settled_at: int
    chunks_settled: int

    @property
    def settled(self) -> bool:
        return self.settled_at != 0


@dataclass(frozen=True, slots=True)
class Credit:
    earned: int
    paid: int
    pending: int
    matures_at: int


@dataclass(frozen=True, slots=True)
class CreditBuckets:
    """The two maturity buckets of a credit as stored (amounts may already be matured) and the time each
    matures under the current payout delay (0 for an empty bucket)."""

    newest: int
    newest_matures_at: int
    older: int
    older_matures_at: int


@dataclass(frozen=True, slots=True)
class LiabilityCommitment:
    epoch_id: int
    root: bytes
    total: int
    committed_at: int


@dataclass(frozen=True, slots=True)
class PayoutItem:
    """One withdrawal in a payout batch."""

    payout_id: int
    creator_key: bytes
    to: str
    amount: int


def _selector(entry: dict[str, Any]) -> bytes:
    types = ",".join(_type_string(i) for i in entry["inputs"])
    return bytes(keccak(text=f"{entry['name']}({types})"))[:4]


def _type_string(param: dict[str, Any]) -> str:
    kind = str(param["type"])
    if kind.startswith("tuple"):
        return "(" + ",".join(_type_string(c) for c in param["components"]) + ")" + kind[len("tuple") :]
    return kind


_ERRORS: dict[bytes, tuple[str, list[str]]] = {}


def _error_table() -> dict[bytes, tuple[str, list[str]]]:
    if not _ERRORS:
        for entry in combined_error_abi():
            _ERRORS[_selector(entry)] = (entry["name"], [_type_string(i) for i in entry["inputs"]])
    return _ERRORS


def decode_revert(data: bytes | str | None) -> tuple[str | None, tuple[Any, ...]]:
    """Decode revert data into (error name, arguments); (None, ()) when empty or unknown."""
    if data is None:
        return None, ()
    raw = bytes.fromhex(data[2:] if data.startswith("0x") else data) if isinstance(data, str) else bytes(data)
    if len(raw) < 4:
        return None, ()
    selector, body = raw[:4], raw[4:]
    try:
        if selector == _ERROR_STRING:
            return "Error", tuple(abi_decode(["string"], body))
        if selector == _PANIC:
            return "Panic", tuple(abi_decode(["uint256"], body))
        known = _error_table().get(selector)
        if known is None:
            return None, ()
        name, types = known
        return name, tuple(abi_decode(types, body)) if types else ()
    except Exception:  # malformed revert data is reported as unknown, never raised
        return None, ()


def _revert_data(exc: BaseException) -> str | None:
    data = getattr(exc, "data", None)
    if isinstance(data, dict):
        data = data.get("data")
    if isinstance(data, str) and data.startswith("0x"):
        return data
    message = str(exc)
    start = message.find("0x")
    return message[start:].split()[0].strip("',)") if start >= 0 else None


def to_chain_error(exc: BaseException, action: str) -> ChainError:
    """Translate a web3 exception into a `VaultRevertError` (custom error decoded) or a plain ChainError."""
    if isinstance(exc, ChainError):
        return exc
    name, args = decode_revert(_revert_data(exc))
    if name is not None:
        return VaultRevertError(f"{action} reverted: {name}{args!r}", revert=name, revert_args=args)
    if isinstance(exc, ContractLogicError):
        return VaultRevertError(f"{action} reverted: {exc}", revert=None)
    if isinstance(exc, OSError):  # the node is unreachable: say so without the transport's dump
        return ChainError(f"{action} failed: chain node unreachable ({type(exc).__name__})")
    return ChainError(f"{action} failed: {exc}")


def send_transaction(
    w3: Web3, account: Any, tx: dict[str, Any], action: str, timeout: float = 120.0
) -> tuple[str, dict[str, Any]]:
    """Fill nonce/chain id/fees/gas, sign with `account`, send, wait; return (tx hash, receipt).

    A revert at estimation or in the mined transaction raises `VaultRevertError`.
    """
    tx = dict(tx)
    tx.setdefault("from", account.address)
    tx.setdefault("chainId", w3.eth.chain_id)
    tx.setdefault("nonce", w3.eth.get_transaction_count(account.address, "pending"))
    if "gasPrice" not in tx and "maxFeePerGas" not in tx:
        base = w3.eth.get_block("latest").get("baseFeePerGas", 0) or 0
        tip = 1_000_000_000
        tx["maxPriorityFeePerGas"] = tip
        tx["maxFeePerGas"] = 2 * int(base) + tip
    try:
        if "gas" not in tx:
            tx["gas"] = min(int(w3.eth.estimate_gas(tx)) * 12 // 10 + 10_000, 2**24)  # type: ignore[arg-type]
        signed = account.sign_transaction(tx)
        tx_hash = w3.eth.send_raw_transaction(signed.raw_transaction)
        receipt = dict(w3.eth.wait_for_transaction_receipt(tx_hash, timeout=timeout))
    except (Web3Exception, ValueError, OSError) as exc:  # OSError: requests' connection errors
        raise to_chain_error(exc, action) from exc
    if receipt.get("status") != 1:
        call = {k: tx[k] for k in ("from", "to", "data", "value") if k in tx}
        try:
            w3.eth.call(call, receipt["blockNumber"])  # type: ignore[arg-type]
        except (Web3Exception, ValueError, OSError) as exc:  # OSError: requests' connection errors
            raise to_chain_error(exc, action) from exc
        raise ChainError(f"{action} failed in block {receipt['blockNumber']} (out of gas?)")
    return "0x" + bytes(tx_hash).hex(), receipt


class VaultClient:
    """Read CoinVault/CreatorCoin state and send admin, bridge, pauser or holder transactions.

    `account` (an eth-account LocalAccount) signs writes; each write method also accepts
    `account=` to act as another key (e.g. the admin in tests).
    """

    def __init__(self, w3: Web3, vault_address: str, account: Any | None = None) -> None:
        self.w3 = w3
        self.address = to_checksum_address(vault_address)
        self.account = account
        self.vault = w3.eth.contract(address=self.address, abi=load_artifact("CoinVault").abi)
        self._coin: Any | None = None

    @property
    def coin_address(self) -> str:
        """The CreatorCoin the vault deployed (read once, on first use, so a client can be built while
        the node is down)."""
        return str(self.coin.address)

    @property
    def coin(self) -> Any:
        if self._coin is None:
            address = to_checksum_address(self._call("coin"))
            self._coin = self.w3.eth.contract(address=address, abi=load_artifact("CreatorCoin").abi)
        return self._coin

    # ------------------------------------------------------------------ plumbing

    def _call(self, fn: str, *args: Any, contract: Any = None, block: int | str = "latest") -> Any:
        target = contract if contract is not None else self.vault
        try:
            return getattr(target.functions, fn)(*args).call(block_identifier=block)
        except (Web3Exception, ValueError, OSError) as exc:  # OSError: requests' connection errors
            raise to_chain_error(exc, fn) from exc

    def _send(self, fn: str, *args: Any, account: Any = None, contract: Any = None, gas: int | None = None) -> TxResult:
        signer = account if account is not None else self.account
        if signer is None:
            raise ChainError(f"{fn}: no signing account configured")
        target = contract if contract is not None else self.vault
        tx: dict[str, Any] = {"to": target.address, "data": target.encode_abi(fn, args=list(args))}
        if gas is not None:
            tx["gas"] = gas
        tx_hash, receipt = send_transaction(self.w3, signer, tx, fn)
        return TxResult(
            tx_hash=tx_hash,
            block_number=int(receipt["blockNumber"]),
            gas_used=int(receipt["gasUsed"]),
            logs=tuple(dict(log) for log in receipt["logs"]),
        )

    def encode_call(self, fn: str, *args: Any) -> str:
        """ABI-encoded calldata (0x hex) for vault function `fn`, for a transaction manager to sign."""
        return str(self.vault.encode_abi(fn, args=list(args)))

    def encode_payout(
        self, ids: Sequence[int], creator_keys: Sequence[bytes], to: Sequence[str], amounts: Sequence[int]
    ) -> str:
        """`encode_call("payout", ...)` with eth-abi directly: the same bytes, without web3's
        per-argument checks (tens of ms for a batch of 400 in the worker's step)."""
        n = len(ids)
        if not len(creator_keys) == len(to) == len(amounts) == n:
            raise ChainError(f"payout: {n} ids, {len(creator_keys)} keys, {len(to)} payees, {len(amounts)} amounts")
        if any(len(k) != 32 for k in creator_keys):
            raise ChainError("payout: a creator key is 32 bytes")
        payees = [bytes.fromhex(a[2:] if a[:2] in ("0x", "0X") else a) for a in to]  # no checksum hashing
        if any(len(p) != 20 for p in payees):
            raise ChainError("payout: a payee is a 20-byte address")
        body = abi_encode(
            ["uint256[]", "bytes32[]", "address[]", "uint256[]"], [list(ids), list(creator_keys), payees, list(amounts)]
        )
        return _PAYOUT + body.hex()

    def events(self, name: str, from_block: int, to_block: int | str = "latest") -> list[dict[str, Any]]:
        """Decoded vault events `name` in [from_block, to_block] (each has args, transactionHash, logIndex)."""
        event = getattr(self.vault.events, name)
        try:
            return [dict(e) for e in event.get_logs(from_block=from_block, to_block=to_block)]
        except (Web3Exception, ValueError, OSError) as exc:  # OSError: requests' connection errors
            raise to_chain_error(exc, f"get_logs {name}") from exc

    # ------------------------------------------------------------------ split rate

    def creator_bps(self) -> int:
        """The split rate in force (basis points)."""
        return int(self._call("creatorBps"))

    def split_delay(self) -> int:
        """Seconds between proposing and applying a split rate."""
        return int(self._call("splitDelay"))

    def pending_creator_bps(self) -> PendingBps:
        """The pending split-rate proposal, if any."""
        exists, bps, effective_at = self._call("pendingCreatorBps")
        return PendingBps(bool(exists), int(bps), int(effective_at))

    def propose_creator_bps(self, bps: int, *, account: Any = None) -> TxResult:
        """Admin: propose a new split rate."""
        return self._send("proposeCreatorBps", bps, account=account)

    def apply_creator_bps(self, *, account: Any = None) -> TxResult:
        """Admin: apply the pending split rate after the delay."""
        return self._send("applyCreatorBps", account=account)

    def cancel_creator_bps(self, *, account: Any = None) -> TxResult:
        """Admin: drop the pending split-rate proposal."""
        return self._send("cancelCreatorBps", account=account)

    # ------------------------------------------------------------------ limits and delays

    def payout_delay(self) -> int:
        """Seconds from settlement to maturity of a credit."""
        return int(self._call("payoutDelay"))

    def maturity_granularity(self) -> int:
        """Seconds per maturity cell G: a credit waits between payout_delay and payout_delay + G - 1."""
        return int(self._call("maturityGranularity"))

    def set_payout_delay(self, seconds: int, *, account: Any = None) -> TxResult:
        """Admin: change the maturity delay (applies to every credit not yet matured)."""
        return self._send("setPayoutDelay", seconds, account=account)

    def mint_allowance(self) -> Allowance:
        """Mint allowance: limit, period and amount available now."""
        return Allowance(*(int(v) for v in self._call("mintAllowance")))

    def payout_allowance(self) -> Allowance:
        """Payout (and burn) allowance: limit, period and amount available now."""
        return Allowance(*(int(v) for v in self._call("payoutAllowance")))

    def set_mint_limit(self, limit: int, period: int, *, account: Any = None) -> TxResult:
        """Admin: change the mint allowance."""
        return self._send("setMintLimit", limit, period, account=account)

    def set_payout_limit(self, limit: int, period: int, *, account: Any = None) -> TxResult:
        """Admin: change the payout allowance."""
        return self._send("setPayoutLimit", limit, period, account=account)

    # ------------------------------------------------------------------ bridge operations

    def mint_for_recharges(
        self, batch_id: int, amount: int, recharge_root: bytes, count: int, *, account: Any = None
    ) -> TxResult:
        """Bridge: mint a batch of recharges into the vault."""
        return self._send("mintForRecharges", batch_id, amount, recharge_root, count, account=account)

    def is_minted(self, batch_id: int) -> bool:
        """Whether mint batch `batch_id` was executed."""
        return bool(self._call("isMinted", batch_id))

    def settle_gifts(
        self,
        epoch_id: int,
        chunk_index: int,
        gift_root: bytes,
        gift_count: int,
        gross_total: int,
        creator_keys: Sequence[bytes],
        gross_amounts: Sequence[int],
        *,
        account: Any = None,
        gas: int | None = None,
    ) -> TxResult:
        """Bridge: settle one chunk of an epoch (chunks in order from 0)."""
        return self._send(
            "settleGifts",
            epoch_id,
            chunk_index,
            gift_root,
            gift_count,
            gross_total,
            list(creator_keys),
            list(gross_amounts),
            account=account,
            gas=gas,
        )

    def epoch(self, epoch_id: int) -> EpochInfo:
        """Stored fields of an epoch (settled_at == 0 when not settled)."""
        root, count, gross_total, settled_gross, bps, settled_at, chunks = self._call("epoch", epoch_id)
        return EpochInfo(
            bytes(root), int(count), int(gross_total), int(settled_gross), int(bps), int(settled_at), int(chunks)
        )

    def payout(self, items: Sequence[PayoutItem], *, account: Any = None, gas: int | None = None) -> TxResult:
        """Bridge: pay a batch of withdrawals; ids already paid are skipped on-chain (`PayoutSkipped`)."""
        return self._send(
            "payout",
            [i.payout_id for i in items],
            [i.creator_key for i in items],
            [to_checksum_address(i.to) for i in items],
            [i.amount for i in items],
            account=account,
            gas=gas,
        )

    def is_paid_out(self, payout_id: int) -> bool:
        """Whether payout id `payout_id` was paid."""
        return bool(self._call("isPaidOut", payout_id))

    def burn_for_refunds(self, burn_id: int, amount: int, *, account: Any = None) -> TxResult:
        """Bridge: burn `amount` of the reserve for refunds/chargebacks."""
        return self._send("burnForRefunds", burn_id, amount, account=account)

    def is_burned(self, burn_id: int) -> bool:
        """Whether burn id `burn_id` was executed."""
        return bool(self._call("isBurned", burn_id))

    def commit_liabilities(self, epoch_id: int, root: bytes, total: int, *, account: Any = None) -> TxResult:
        """Bridge: commit the liabilities Merkle-sum root and total of an epoch."""
        return self._send("commitLiabilities", epoch_id, root, total, account=account)

    # ------------------------------------------------------------------ maturity and platform

    def void_credit(self, creator_key: bytes, amount: int, *, account: Any = None) -> TxResult:
        """Admin: void part of a creator's unmatured credit."""
        return self._send("voidCredit", creator_key, amount, account=account)

    def void_platform_credit(self, amount: int, *, account: Any = None) -> TxResult:
        """Admin: void part of the platform's unmatured credit."""
        return self._send("voidPlatformCredit", amount, account=account)

    def payout_platform(self, to: str, amount: int, *, account: Any = None) -> TxResult:
        """Admin: pay matured platform earnings to `to` (consumes the payout allowance)."""
        return self._send("payoutPlatform", to_checksum_address(to), amount, account=account)

    def earned(self, creator_key: bytes) -> int:
        """Total credited to a creator key (after voids)."""
        return int(self._call("earned", creator_key))

    def paid_out(self, creator_key: bytes) -> int:
        """Total paid to a creator key."""
        return int(self._call("paidOut", creator_key))

    def matured(self, creator_key: bytes) -> int:
        """Credited and matured."""
        return int(self._call("matured", creator_key))

    def matured_and_paid(self, creator_key: bytes) -> tuple[int, int]:
        """(matured, paidOut) of a creator key from ONE `eth_call` of `creditOf` (matured = earned -
        pending), sent straight to the provider: no web3 contract machinery, no middleware (whose
        validation step would add two `eth_chainId` round trips). The API's withdrawal checks use it."""
        if len(creator_key) != 32:
            raise ChainError(f"creditOf: a creator key is 32 bytes, got {len(creator_key)}")
        call = {"to": self.address, "data": _CREDIT_OF + creator_key.hex()}
        try:
            response = self.w3.provider.make_request(RPCEndpoint("eth_call"), [call, "latest"])
        except (Web3Exception, ValueError, OSError) as exc:  # OSError: requests' connection errors
            raise to_chain_error(exc, "creditOf") from exc
        error = response.get("error")
        if error is not None:
            raise to_chain_error(ValueError(error if isinstance(error, str) else dict(error)), "creditOf")
        result = response.get("result")
        raw = bytes.fromhex(result[2:]) if isinstance(result, str) and result.startswith("0x") else b""
        if len(raw) < 128:
            raise ChainError(f"creditOf: unexpected answer {str(result)[:80]!r} (no vault at {self.address}?)")
        earned, paid, pending = (int.from_bytes(raw[i : i + 32], "big") for i in (0, 32, 64))
        return earned - pending, paid

    def withdrawable(self, creator_key: bytes) -> int:
        """Matured minus paid: what a payout may move now."""
        return int(self._call("withdrawable", creator_key))

    def pending(self, creator_key: bytes) -> int:
        """Credited but not yet matured (voidable)."""
        return int(self._call("pending", creator_key))

    def credit_of(self, creator_key: bytes) -> Credit:
        """All fields of a creator's packed credit."""
        return Credit(*(int(v) for v in self._call("creditOf", creator_key)))

    def credit_buckets(self, creator_key: bytes) -> CreditBuckets:
        """A creator's two maturity buckets."""
        return CreditBuckets(*(int(v) for v in self._call("creditBuckets", creator_key)))

    def platform_credit_buckets(self) -> CreditBuckets:
        """The platform's two maturity buckets."""
        return CreditBuckets(*(int(v) for v in self._call("platformCreditBuckets")))

    def platform_earned(self) -> int:
        """Platform share credited (after voids)."""
        return int(self._call("platformEarned"))

    def platform_paid_out(self) -> int:
        """Platform earnings paid out."""
        return int(self._call("platformPaidOut"))

    def platform_matured(self) -> int:
        """Platform earnings matured."""
        return int(self._call("platformMatured"))

    def platform_pending(self) -> int:
        """Platform earnings not yet matured."""
        return int(self._call("platformPending"))

    # ------------------------------------------------------------------ reserve and verification

    def reserve(self) -> int:
        """The vault's token balance."""
        return int(self._call("reserve"))

    def latest_liabilities(self) -> LiabilityCommitment:
        """The latest liabilities commitment (committed_at == 0 when none)."""
        epoch_id, root, total, committed_at = self._call("latestLiabilities")
        return LiabilityCommitment(int(epoch_id), bytes(root), int(total), int(committed_at))

    def liabilities(self, epoch_id: int) -> LiabilityCommitment:
        """The liabilities commitment of `epoch_id` (committed_at == 0 when none)."""
        root, total, committed_at = self._call("liabilities", epoch_id)
        return LiabilityCommitment(epoch_id, bytes(root), int(total), int(committed_at))

    def solvent(self, block: int | str = "latest") -> bool:
        """Whether a commitment exists and the reserve covers its total (at `block`)."""
        return bool(self._call("solvent", block=block))

    def verify_gift(
        self,
        epoch_id: int,
        gift_id: bytes,
        from_key: bytes,
        creator_key: bytes,
        gross: int,
        creator_amount: int,
        platform_amount: int,
        proof: Sequence[bytes],
    ) -> bool:
        """The vault's `verifyGift` view (docs/design/vault-interface.md)."""
        return bool(
            self._call(
                "verifyGift",
                epoch_id,
                gift_id,
                from_key,
                creator_key,
                gross,
                creator_amount,
                platform_amount,
                list(proof),
            )
        )

    def verify_liability(
        self,
        epoch_id: int,
        account_key: bytes,
        balance: int,
        index: int,
        sibling_hashes: Sequence[bytes],
        sibling_sums: Sequence[int],
    ) -> bool:
        """The vault's `verifyLiability` view (docs/design/vault-interface.md)."""
        return bool(
            self._call(
                "verifyLiability", epoch_id, account_key, balance, index, list(sibling_hashes), list(sibling_sums)
            )
        )

    # ------------------------------------------------------------------ roles and pause

    def has_role(self, role: str | bytes, address: str) -> bool:
        """Whether `address` holds `role` ("admin", "bridge", "pauser" or a role hash)."""
        role_id = ROLES[role] if isinstance(role, str) else role
        return bool(self._call("hasRole", role_id, to_checksum_address(address)))

    def grant_role(self, role: str | bytes, address: str, *, account: Any = None) -> TxResult:
        """Admin: grant `role` to `address`."""
        role_id = ROLES[role] if isinstance(role, str) else role
        return self._send("grantRole", role_id, to_checksum_address(address), account=account)

    def revoke_role(self, role: str | bytes, address: str, *, account: Any = None) -> TxResult:
        """Admin: revoke `role` from `address`."""
        role_id = ROLES[role] if isinstance(role, str) else role
        return self._send("revokeRole", role_id, to_checksum_address(address), account=account)

    def paused(self) -> bool:
        """Whether the vault is paused."""
        return bool(self._call("paused"))

    def coin_paused(self) -> bool:
        """Whether CreatorCoin transfers are paused."""
        return bool(self._call("paused", contract=self.coin))

    def pause(self, *, account: Any = None) -> TxResult:
        """Pauser: halt mint, settle, payout, deposit, burn."""
        return self._send("pause", account=account)

    def unpause(self, *, account: Any = None) -> TxResult:
        """Admin: resume the vault."""
        return self._send("unpause", account=account)

    def pause_coin(self, *, account: Any = None) -> TxResult:
        """Pauser: halt all CreatorCoin transfers."""
        return self._send("pauseCoin", account=account)

    def unpause_coin(self, *, account: Any = None) -> TxResult:
        """Admin: resume CreatorCoin transfers."""
        return self._send("unpauseCoin", account=account)

    # ------------------------------------------------------------------ token holders

    def balance_of(self, address: str) -> int:
        """CreatorCoin balance of `address`."""
        return int(self._call("balanceOf", to_checksum_address(address), contract=self.coin))

    def total_supply(self) -> int:
        """CreatorCoin total supply."""
        return int(self._call("totalSupply", contract=self.coin))

    def transfer(self, to: str, amount: int, *, account: Any = None) -> TxResult:
        """Holder: plain ERC-20 transfer."""
        return self._send("transfer", to_checksum_address(to), amount, account=account, contract=self.coin)

    def approve(self, spender: str, amount: int, *, account: Any = None) -> TxResult:
        """Holder: ERC-20 approve."""
        return self._send("approve", to_checksum_address(spender), amount, account=account, contract=self.coin)

    def deposit(self, account_key: bytes, amount: int, *, account: Any = None, approve: bool = True) -> TxResult:
        """Holder: deposit `amount` for in-app account `account_key` (approving the vault first by default)."""
        if approve:
            self.approve(self.address, amount, account=account)
        return self._send("deposit", account_key, amount, account=account)

    def sign_permit(self, owner: Any, amount: int, deadline: int, nonce: int | None = None) -> tuple[int, bytes, bytes]:
        """EIP-2612 permit signature (v, r, s) by `owner` letting the vault spend `amount` until `deadline`."""
        if nonce is None:
            nonce = int(self._call("nonces", owner.address, contract=self.coin))
        data = {
            "types": {
                "EIP712Domain": [
                    {"name": "name", "type": "string"},
                    {"name": "version", "type": "string"},
                    {"name": "chainId", "type": "uint256"},
                    {"name": "verifyingContract", "type": "address"},
                ],
                "Permit": [
                    {"name": "owner", "type": "address"},
                    {"name": "spender", "type": "address"},
                    {"name": "value", "type": "uint256"},
                    {"name": "nonce", "type": "uint256"},
                    {"name": "deadline", "type": "uint256"},
                ],
            },
            "primaryType": "Permit",
            "domain": {
                "name": self._call("name", contract=self.coin),
                "version": "1",
                "chainId": self.w3.eth.chain_id,
                "verifyingContract": self.coin_address,
            },
            "message": {
                "owner": owner.address,
                "spender": self.address,
                "value": amount,
                "nonce": nonce,
                "deadline": deadline,
            },
        }
        signed = Account.sign_typed_data(owner.key, full_message=data)
        return int(signed.v), int(signed.r).to_bytes(32, "big"), int(signed.s).to_bytes(32, "big")

    def deposit_with_permit(
        self, account_key: bytes, amount: int, *, account: Any = None, deadline: int | None = None
    ) -> TxResult:
        """Holder: deposit with an EIP-2612 permit signed by the same account (no approve transaction)."""
        signer = account if account is not None else self.account
        if signer is None:
            raise ChainError("depositWithPermit: no signing account configured")
        if deadline is None:
            deadline = int(self.w3.eth.get_block("latest")["timestamp"]) + 3600
        v, r, s = self.sign_permit(signer, amount, deadline)
        return self._send("depositWithPermit", account_key, amount, deadline, v, r, s, account=signer)


def wait_for_block(w3: Web3, number: int, timeout: float = 30.0) -> None:
    """Poll until the chain reaches block `number` (used by callers waiting for confirmations)."""
    deadline = time.monotonic() + timeout
    while w3.eth.block_number < number:
        if time.monotonic() > deadline:
            raise ChainError(f"block {number} not reached within {timeout} s")
        time.sleep(0.2)
