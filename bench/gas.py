"""Gas benchmark of CoinVault on a private anvil: payouts, settlement, mint, deposit, ERC-20 transfer.

    .venv/bin/python bench/gas.py            # table on stdout
    .venv/bin/python bench/gas.py --json     # the table, then one JSON object on the last line

Targets (docs/benchmarks.md, Gas): payout_gas_per_wallet <= 33000 (one batch of 100 payouts to
fresh wallets, gas / 100) and settle_gas_per_gift <= 350 (an epoch of 10,000 gifts across 500
creators already credited in an earlier epoch, gas / 10,000). The vault has a maturity granularity
of 1 h; the earlier epoch is either in the same hour cell (`settle_gas_per_gift`, each creator's
newest bucket grows) or in the previous cell (`settle_new_cell_gas_per_gift`, each creator's buckets
rotate); both must meet the settle target. Block times are set explicitly so the cells are exact.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
from typing import Any

from eth_account import Account
from web3 import Web3

from tokenbridge.adapters.chain.deploy import VaultParams, deploy
from tokenbridge.adapters.chain.devnet import DEV_PRIVATE_KEYS, start_anvil
from tokenbridge.adapters.chain.vault import PayoutItem, VaultClient
from tokenbridge.domain.split import split

TARGETS = {"payout_gas_per_wallet": 33_000, "settle_gas_per_gift": 350, "settle_new_cell_gas_per_gift": 350}
GRANULARITY = 3_600
DELAY = 3_600
PAYOUTS = 100
GIFTS = 10_000
CREATORS = 500
# Sequential ids from the start of one bitmap word: the batch opens one fresh 256-id word
# (a zero-to-nonzero SSTORE), as the first batch after every 256 ids does in production.
FIRST_PAYOUT_ID = 256 * 4


def gift_root(gifts: list[tuple[bytes, bytes, bytes, int, int, int]]) -> tuple[bytes, str]:
    """The epoch's gift root from tokenbridge.domain.merkle when present, else a random stand-in."""
    try:
        from tokenbridge.domain import merkle

        types = ["bytes32", "bytes32", "bytes32", "uint256", "uint256", "uint256"]
        tree = merkle.StandardMerkleTree.of([list(g) for g in gifts], types)
        return bytes(tree.root), "real (tokenbridge.domain.merkle)"
    except (ImportError, AttributeError, TypeError):
        return os.urandom(32), "random bytes32 (tokenbridge.domain.merkle not available)"


def run() -> dict[str, Any]:
    rng = random.Random(7)
    with start_anvil() as node:
        w3 = Web3(Web3.HTTPProvider(node.rpc_url, request_kwargs={"timeout": 120}))
        deployer, admin, bridge, pauser, holder = (Account.from_key(k) for k in DEV_PRIVATE_KEYS[:5])
        params = VaultParams(
            payout_delay=DELAY, maturity_granularity=GRANULARITY, mint_limit=10**20, payout_limit=10**20
        )
        dep = deploy(w3, deployer, admin.address, bridge.address, pauser.address, params)
        vault = VaultClient(w3, dep.vault, bridge)
        bps = vault.creator_bps()

        def at(timestamp: int) -> None:  # the next block's time
            node.rpc("evm_setNextBlockTimestamp", timestamp)

        latest = int(w3.eth.get_block("latest")["timestamp"])
        cell_start = (latest // GRANULARITY + 1) * GRANULARITY  # a fresh hour cell

        mint = vault.mint_for_recharges(1, 10**15, os.urandom(32), 1_000)

        # Epoch 1 credits every creator once, so epochs 2 and 3 measure steady-state settlement.
        creators = [os.urandom(32) for _ in range(CREATORS)]
        first = [rng.randrange(1_000_000, 50_000_000) for _ in creators]
        at(cell_start + 10)
        vault.settle_gifts(1, 0, os.urandom(32), CREATORS, sum(first), creators, first)

        def epoch_args() -> tuple[bytes, int, list[bytes], list[int], str]:
            gifts = []
            per_creator = dict.fromkeys(creators, 0)
            for g in range(GIFTS):
                creator = creators[g % CREATORS]
                gross = rng.randrange(10_000, 5_000_000)
                s = split(gross, bps)
                gifts.append((os.urandom(32), os.urandom(32), creator, gross, s.creator_amount, s.platform_amount))
                per_creator[creator] += gross
            root, root_kind = gift_root(gifts)
            return root, sum(per_creator.values()), list(per_creator), list(per_creator.values()), root_kind

        # Epoch 2: same hour cell as epoch 1 (rule 1: each creator's newest bucket grows).
        root, gross_total, keys, amounts, root_kind = epoch_args()
        at(cell_start + 600)
        settle = vault.settle_gifts(2, 0, root, GIFTS, gross_total, keys, amounts, gas=2**24)
        # Epoch 3: the next cell, epochs 1-2 not matured yet (rule 3: the buckets rotate).
        root, gross_total, keys, amounts, _ = epoch_args()
        at(cell_start + GRANULARITY + 600)
        settle_new = vault.settle_gifts(3, 0, root, GIFTS, gross_total, keys, amounts, gas=2**24)

        # Epochs 1-2 (cell c) mature at (c + 1) * G - 1 + D = cell_start + 2 G - 1.
        at(cell_start + 2 * GRANULARITY + 600)
        node.rpc("anvil_mine", 1)
        wallets = [Account.create().address for _ in range(PAYOUTS)]
        items = [PayoutItem(FIRST_PAYOUT_ID + i, creators[i], wallets[i], 1_000_000 + i) for i in range(PAYOUTS)]
        payout = vault.payout(items, gas=2**24)
        assert all(vault.balance_of(w) == items[i].amount for i, w in enumerate(wallets[:3]))

        vault.payout([PayoutItem(5000, creators[200], holder.address, 40_000_000)])
        deposit_approve = vault.approve(vault.address, 10_000_000, account=holder)
        deposit = vault.deposit(os.urandom(32), 10_000_000, account=holder, approve=False)
        permit_deposit = vault.deposit_with_permit(os.urandom(32), 10_000_000, account=holder)
        transfer = vault.transfer(Account.create().address, 1_000_000, account=holder)
        burn = vault.burn_for_refunds(1, 1_000_000)
        commit = vault.commit_liabilities(1, os.urandom(32), 10**12)

    return {
        "payout_gas_per_wallet": payout.gas_used // PAYOUTS,
        "payout_batch_gas": payout.gas_used,
        "settle_gas_per_gift": settle.gas_used // GIFTS,
        "settle_epoch_gas": settle.gas_used,
        "settle_gas_per_creator": settle.gas_used // CREATORS,
        "settle_new_cell_gas_per_gift": settle_new.gas_used // GIFTS,
        "settle_new_cell_epoch_gas": settle_new.gas_used,
        "mint_gas_per_batch": mint.gas_used,
        "deposit_gas": deposit.gas_used,
        "deposit_approve_gas": deposit_approve.gas_used,
        "deposit_with_permit_gas": permit_deposit.gas_used,
        "erc20_transfer_gas": transfer.gas_used,
        "burn_gas": burn.gas_used,
        "commit_liabilities_gas": commit.gas_used,
        "gift_root": root_kind,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", action="store_true", help="print one JSON object on the last line")
    args = parser.parse_args(argv)
    results = run()
    failed = [k for k, limit in TARGETS.items() if results[k] > limit]
    width = max(len(k) for k in results)
    print(f"{'metric':<{width}}  {'value':>12}  target")
    for key, value in results.items():
        target = f"<= {TARGETS[key]:,}" if key in TARGETS else ""
        shown = f"{value:>12,}" if isinstance(value, int) else f"{value:>12}"
        print(f"{key:<{width}}  {shown}  {target}")
    print("targets: " + ("all met" if not failed else "MISSED " + ", ".join(failed)))
    if args.json:
        print(json.dumps({**results, "targets_met": not failed}, sort_keys=True))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
