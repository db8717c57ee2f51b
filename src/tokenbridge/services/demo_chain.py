"""The Foundation-stage demo: one scripted on-chain round against a fresh vault.

recharge batch (real recharge Merkle root) -> mint -> settle an epoch of gifts (real gift
tree) -> a premature payout is refused -> time passes the payout delay -> payout to a fresh
wallet -> that wallet deposits back with an EIP-2612 permit -> liabilities committed as a
Merkle-sum root -> a gift proof and a liability proof verified through the vault's views
(and tampered copies refused).

The in-app balances here are a scripted stand-in for the ledger: the full story with the
API, the worker and a database is the `demo` of later stages. The chain side (the
`VaultClient`) and the time machine (`advance_time`) are passed in, so this module never
touches web3 itself.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from eth_account import Account

from tokenbridge.adapters.chain.vault import PayoutItem, TxResult, VaultClient
from tokenbridge.domain.errors import ChainError
from tokenbridge.domain.keys import account_key, new_salt
from tokenbridge.domain.merkle import GiftLeaf, RechargeLeaf, gift_tree, recharge_tree, verify_recharge
from tokenbridge.domain.merkle_sum import MerkleSumTree, verify_liability
from tokenbridge.domain.money import UNITS_PER_COIN, format_units
from tokenbridge.domain.split import split

COIN = UNITS_PER_COIN


@dataclass(frozen=True, slots=True)
class DemoStep:
    """One thing that happened, for the report."""

    action: str
    detail: str
    tx_hash: str = ""
    gas_used: int = 0


@dataclass
class DemoReport:
    steps: list[DemoStep] = field(default_factory=list)
    checks: dict[str, bool] = field(default_factory=dict)
    figures: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return bool(self.checks) and all(self.checks.values())


class _Recorder:
    def __init__(self, report: DemoReport, on_step: Callable[[DemoStep], None] | None) -> None:
        self.report = report
        self.on_step = on_step

    def step(self, action: str, detail: str, tx: TxResult | None = None) -> None:
        s = DemoStep(action, detail, tx.tx_hash if tx else "", tx.gas_used if tx else 0)
        self.report.steps.append(s)
        if self.on_step is not None:
            self.on_step(s)

    def check(self, name: str, passed: bool) -> None:
        self.report.checks[name] = passed
        if not passed:
            raise ChainError(f"demo check failed: {name}")


def run_demo_round(
    client: VaultClient,
    bridge: Any,
    advance_time: Callable[[int], None],
    fund_wallet: Callable[[str, int], None],
    *,
    on_step: Callable[[DemoStep], None] | None = None,
) -> DemoReport:
    """Run the round against a freshly deployed vault; raise ChainError if any check fails.

    `bridge` is the LocalAccount holding the bridge role; `advance_time(seconds)` moves the
    devnet's clock and `fund_wallet(address, wei)` gives a fresh wallet gas money.
    """
    report = DemoReport()
    rec = _Recorder(report, on_step)

    # in-app accounts: ids + secret salts -> on-chain keys
    salts = {name: new_salt() for name in ("alice", "dave", "bob", "carol", "bob-coins", "platform")}
    key = {
        "alice": account_key("user:alice:coins", salts["alice"]),
        "dave": account_key("user:dave:coins", salts["dave"]),
        "bob": account_key("creator:bob:earnings", salts["bob"]),
        "carol": account_key("creator:carol:earnings", salts["carol"]),
        "bob-coins": account_key("user:bob:coins", salts["bob-coins"]),
        "platform": account_key("platform:revenue", salts["platform"]),
    }
    run = secrets.token_hex(4)  # ids unique per run, like a real ledger's

    # 1. recharges -> one mint batch with its recharge Merkle root
    recharges = [
        RechargeLeaf.of(f"pay-{run}-1", key["alice"], 50 * COIN),
        RechargeLeaf.of(f"pay-{run}-2", key["dave"], 20 * COIN),
        RechargeLeaf.of(f"pay-{run}-3", key["alice"], 5 * COIN),
    ]
    r_tree = recharge_tree(recharges)
    minted = sum(r.amount for r in recharges)
    tx = client.mint_for_recharges(1, minted, r_tree.root, len(recharges), account=bridge)
    rec.step(
        "mint recharge batch 1",
        f"{len(recharges)} recharges, {format_units(minted)} coins, root {_short(r_tree.root)}",
        tx,
    )
    rec.check("recharge proof verifies (Python)", verify_recharge(r_tree.root, recharges[1], r_tree.get_proof(1)))

    # 2. gifts of epoch 1 at the rate in force -> gift tree -> settle
    bps = client.creator_bps()
    gift_specs = [("alice", "bob", 7 * COIN), ("alice", "bob", 3_333_333), ("alice", "carol", 12 * COIN),
                  ("dave", "bob", 4 * COIN), ("dave", "carol", 1_000_001), ("alice", "carol", 2 * COIN)]  # fmt: skip
    gifts = [
        GiftLeaf.of(f"gift-{run}-{i}", key[sender], key[creator], split(gross, bps))
        for i, (sender, creator, gross) in enumerate(gift_specs)
    ]
    g_tree = gift_tree(gifts)
    per_creator: dict[bytes, int] = {}
    for g in gifts:
        per_creator[g.creator_key] = per_creator.get(g.creator_key, 0) + g.gross
    gross_total = sum(g.gross for g in gifts)
    tx = client.settle_gifts(
        1, 0, g_tree.root, len(gifts), gross_total, list(per_creator), list(per_creator.values()), account=bridge
    )
    rec.step(
        "settle epoch 1",
        f"{len(gifts)} gifts, gross {format_units(gross_total)}, bps {bps}, root {_short(g_tree.root)}",
        tx,
    )
    bob_earned = client.earned(key["bob"])
    rec.check(
        "on-chain split of bob's gifts",
        bob_earned == sum(g.creator_amount for g in gifts if g.creator_key == key["bob"]),
    )

    # 3. a payout before maturity is refused
    fresh = Account.create()
    try:
        client.payout([PayoutItem(1, key["bob"], fresh.address, bob_earned)], account=bridge)
        refused = False
    except ChainError as exc:
        refused = exc.revert == "CoinVaultPayoutExceedsMatured"
    rec.step("payout before maturity", "refused: CoinVaultPayoutExceedsMatured" if refused else "NOT refused")
    rec.check("premature payout refused", refused)

    # 4. time passes the challenge window
    delay = client.payout_delay()
    advance_time(delay + 1)
    rec.step("advance time", f"{delay + 1} s (payoutDelay {delay} s)")

    # 5. payout to a fresh wallet
    tx = client.payout([PayoutItem(1, key["bob"], fresh.address, bob_earned)], account=bridge)
    rec.step("payout to fresh wallet", f"{format_units(bob_earned)} coins to {fresh.address}", tx)
    rec.check("fresh wallet received the payout", client.balance_of(fresh.address) == bob_earned)

    # 6. the wallet deposits part back with a permit (gas funded by the dev account)
    fund_wallet(fresh.address, 10**17)
    deposit = bob_earned // 2
    tx = client.deposit_with_permit(key["bob-coins"], deposit, account=fresh)
    rec.step("deposit back with permit", f"{format_units(deposit)} coins for bob's in-app coins", tx)

    # 7. liabilities: every in-app balance after the round, as the ledger would hold them
    spent: dict[bytes, int] = {}
    for g in gifts:
        spent[g.from_key] = spent.get(g.from_key, 0) + g.gross
    recharged: dict[bytes, int] = {}
    for r in recharges:
        recharged[r.account_key] = recharged.get(r.account_key, 0) + r.amount
    carol_earned = sum(g.creator_amount for g in gifts if g.creator_key == key["carol"])
    balances = {
        key["alice"]: recharged[key["alice"]] - spent[key["alice"]],
        key["dave"]: recharged[key["dave"]] - spent[key["dave"]],
        key["bob"]: 0,  # all paid out
        key["carol"]: carol_earned,
        key["bob-coins"]: deposit,
        key["platform"]: sum(g.platform_amount for g in gifts),
    }
    l_tree = MerkleSumTree.of(balances)
    tx = client.commit_liabilities(1, l_tree.root, l_tree.total, account=bridge)
    reserve = client.reserve()
    rec.step(
        "commit liabilities epoch 1",
        f"{len(balances)} accounts, total {format_units(l_tree.total)}, root {_short(l_tree.root)}",
        tx,
    )
    rec.check("solvent(): reserve covers liabilities", client.solvent() and reserve == l_tree.total)

    # 8. verification through the vault's views (what any user can do with an RPC URL)
    gift = gifts[2]
    proof = g_tree.get_proof(gift.values())
    rec.check("gift proof verified on-chain", client.verify_gift(1, *gift.values(), proof))
    rec.check("tampered gift (creator amount + 1) refused on-chain",
              not client.verify_gift(1, gift.gift_id, gift.from_key, gift.creator_key, gift.gross,
                                     gift.creator_amount + 1, gift.platform_amount - 1, proof))  # fmt: skip
    lp = l_tree.get_proof(key["carol"])
    rec.check("liability proof verified (Python)", verify_liability(l_tree.root, l_tree.total, lp))
    hashes, sums = lp.sibling_hashes, lp.sibling_sums
    rec.check("liability proof verified on-chain",
              client.verify_liability(1, lp.account_key, lp.balance, lp.index, hashes, sums))  # fmt: skip
    rec.check("tampered liability (balance + 1) refused on-chain",
              not client.verify_liability(1, lp.account_key, lp.balance + 1, lp.index, hashes, sums))  # fmt: skip
    rec.step("verify proofs", f"gift {_short(gift.gift_id)} of epoch 1 and carol's balance {format_units(lp.balance)}")

    supply = client.total_supply()
    report.figures = {
        "minted": format_units(minted),
        "total supply": format_units(supply),
        "vault reserve": format_units(reserve),
        "held by the fresh wallet": format_units(client.balance_of(fresh.address)),
        "liabilities total": format_units(l_tree.total),
        "platform earned": format_units(client.platform_earned()),
    }
    rec.check("supply == reserve + tokens held outside", supply == reserve + client.balance_of(fresh.address))
    return report


def _short(value: bytes) -> str:
    h = value.hex()
    return f"0x{h[:8]}…{h[-4:]}"
