"""Bridge throughput: withdrawals from request to confirmed, the naive one-tx-per-withdrawal path,
deposit indexing, and the worker's peak memory. Real processes only: anvil with 1-second blocks,
`tokenbridge deploy`, `tokenbridge serve`, `tokenbridge worker` (subprocesses, via the fault
harness in tests/faults/harness.py), on a SQLite file or a fresh PostgreSQL database.

1. `withdrawals_10k_seconds`: set-up (untimed): creators with linked wallets, recharges, gifts,
   epochs settled on-chain and matured. Then 10,000 EIP-712 withdrawal requests (signed
   beforehand, as the creators' wallets would) are POSTed to /v1/withdrawals by a concurrent
   client, each to a fresh address; the clock runs from the first request until the worker has
   marked the last one `confirmed` (payout mined and `confirmations` blocks deep).
2. `naive_withdrawals_per_s`: the same flow for `--naive` withdrawals with the worker restarted
   with payout batches of one withdrawal (one transaction per withdrawal).
3. `deposit_events_per_s`: the worker is stopped, `--deposits` `Deposited` events are created
   (holders' wallets send approve + deposit transactions), then the worker is started again and
   its indexer credits them: events / (last credit - first sighting), from the deposit rows'
   own timestamps (worker start-up excluded; `deposit_wall_seconds` includes it).
4. `worker_rss_mb`: VmHWM (peak resident set) of the worker process from /proc/<pid>/status,
   the largest over the worker processes of the run.

`--json` prints one JSON object on the last line.

    .venv/bin/python bench/bridge.py --json
    .venv/bin/python bench/bridge.py --db postgres --json   # needs TOKENBRIDGE_TEST_POSTGRES_URL
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from eth_account import Account  # noqa: E402
from sqlalchemy import create_engine, text  # noqa: E402

from faults.harness import (  # noqa: E402
    COIN,
    POSTGRES_ENV,
    BridgeSystem,
    Creator,
    Population,
    Service,
    SystemConfig,
    database,
    log,
    missing_pieces,
    missing_routes,
)

TARGETS = {"withdrawals_10k_seconds": 30.0, "deposit_events_per_s": 20_000.0, "worker_rss_mb": 200.0}


# --- helpers ------------------------------------------------------------------------------------


class Bench:
    def __init__(self, system: BridgeSystem, args: argparse.Namespace) -> None:
        self.sys = system
        self.args = args
        self.pop = Population(system, random.Random(args.seed))
        self.engine = create_engine(system.db_url)
        self.results: dict[str, Any] = {}
        self.worker_rss_kb = 0
        self.phase_rss_mb: dict[str, float] = {}

    def close(self) -> None:
        self.engine.dispose()

    def scalar(self, sql: str, **params: Any) -> Any:
        with self.engine.connect() as conn:
            return conn.execute(text(sql), params).scalar()

    def sample_rss(self, phase: str | None = None) -> None:
        """Keep the worker's VmHWM; with `phase`, also note it under that name (the worker of that phase)."""
        if self.sys.worker is not None:
            peak = self.sys.worker.sample_rss()
            self.worker_rss_kb = max(self.worker_rss_kb, peak)
            if phase is not None:
                self.phase_rss_mb[phase] = round(peak / 1024, 1)

    # ---- set-up: creators whose on-chain earnings are settled and matured

    def fund_creators(self, creators: int, coins_each: int) -> list[Creator]:
        pop = self.pop
        t0 = time.monotonic()
        users = [pop.open_user() for _ in range(max(1, creators // 50))]
        made = []
        for _ in range(creators):
            c = pop.open_creator()
            pop.link_wallet(c)
            made.append(c)
        gross_each = -(-coins_each * COIN * 10_000 // 7_000) + COIN  # creator share >= coins_each
        per_user = -(-creators // len(users)) * gross_each
        for u in users:
            pop.recharge(u, per_user)
        gifts = [
            {"id": pop.uid("g"), "from": users[i % len(users)], "to": c.id, "amount": gross_each}
            for i, c in enumerate(made)
        ]
        for start in range(0, len(gifts), 1000):
            resp = self.sys.http.post("/v1/gifts/batch", json={"gifts": gifts[start : start + 1000]})
            assert resp.status_code in (200, 201, 207), f"gift batch: {resp.status_code} {resp.text[:300]}"
        log(f"set-up: {creators} creators linked and gifted in {time.monotonic() - t0:.1f} s; waiting for settlement")
        vault = self.sys.vault()
        deadline = time.monotonic() + 300
        pending = list(made)
        while pending:
            assert time.monotonic() < deadline, f"{len(pending)} creators not settled+matured after 300 s"
            pending = [c for c in pending if vault.withdrawable(bytes.fromhex(c.key[2:])) < coins_each * COIN]
            self.sample_rss()
            time.sleep(0.5)
        log(f"set-up: settled and matured after {time.monotonic() - t0:.1f} s")
        return made

    def sign_requests(self, creators: list[Creator], count: int, tag: str) -> list[dict[str, Any]]:
        """What the creators' wallets sign: 1 coin each, to a fresh address (the payout gas worst case)."""
        from tokenbridge.domain.withdrawal import WithdrawalMessage

        t0 = time.monotonic()
        vault = self.sys.deployment["vault"]
        deadline = int(time.time()) + 6 * 3600
        bodies = []
        for i in range(count):
            c = creators[i % len(creators)]
            wid, to = f"{tag}-{self.pop.run}-{i}", Account.create().address
            typed = WithdrawalMessage(wid, c.key, to, COIN, deadline).typed_data(31337, vault)
            signed = Account.sign_typed_data(
                c.wallet.key, domain_data=typed["domain"], message_types=typed["types"], message_data=typed["message"]
            )
            bodies.append(
                {
                    "id": wid,
                    "creator_id": c.id,
                    "to": to,
                    "amount": COIN,
                    "deadline": deadline,
                    "signature": "0x" + bytes(signed.signature).hex(),
                }
            )
        log(f"signed {count} withdrawal requests in {time.monotonic() - t0:.1f} s (client side, untimed)")
        return bodies

    async def _post_all(self, bodies: list[dict[str, Any]], concurrency: int) -> list[float]:
        latencies: list[float] = []
        queue = list(reversed(bodies))
        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        headers = {"Authorization": f"Bearer {self.sys.admin_key}"}
        async with httpx.AsyncClient(base_url=self.sys.api_url, headers=headers, limits=limits, timeout=120) as client:

            async def one() -> None:
                while queue:
                    body = queue.pop()
                    for _ in range(20):
                        t = time.perf_counter()
                        resp = await client.post("/v1/withdrawals", json=body)
                        if resp.status_code < 500:
                            break
                        await asyncio.sleep(0.2)
                    assert resp.status_code in (200, 201, 202), f"withdrawal: {resp.status_code} {resp.text[:300]}"
                    latencies.append(time.perf_counter() - t)

            await asyncio.gather(*(one() for _ in range(concurrency)))
        return latencies

    def wait_confirmed(self, tag: str, n: int, t0: float) -> float:
        """Seconds from `t0` until the worker marked all `n` withdrawals of `tag` confirmed."""
        like = f"{tag}-%"
        while True:
            confirmed = self.scalar("SELECT count(*) FROM withdrawals WHERE state = 'confirmed' AND id LIKE :p", p=like)
            failed = self.scalar("SELECT count(*) FROM withdrawals WHERE state = 'failed' AND id LIKE :p", p=like)
            assert not failed, f"{failed} withdrawals failed"
            self.sample_rss()
            if confirmed >= n:
                return time.perf_counter() - t0
            assert time.perf_counter() - t0 < 1800, f"only {confirmed}/{n} confirmed after 1800 s"
            time.sleep(0.05)

    def queued_run(self, bodies: list[dict[str, Any]], tag: str) -> dict[str, Any]:
        """The pipeline without the intake: requests accepted while the worker is stopped, then a
        fresh worker drains them (its start-up included)."""
        assert self.sys.worker is not None
        self.sys.worker.stop()
        asyncio.run(self._post_all(bodies, self.args.concurrency))
        self.sys.worker = None
        t0 = time.perf_counter()
        self.sys.start_worker()
        seconds = self.wait_confirmed(tag, len(bodies), t0)
        with self.engine.connect() as conn:
            txs = conn.execute(
                text("SELECT count(DISTINCT chain_tx_id), min(block), max(block) FROM withdrawals WHERE id LIKE :p"),
                {"p": f"{tag}-%"},
            ).one()
        return {
            "count": len(bodies),
            "seconds": round(seconds, 2),
            "per_s": round(len(bodies) / seconds, 1),
            "payout_txs": int(txs[0]),
            "blocks_spanned": int(txs[2]) - int(txs[1]) + 1,
        }

    def withdrawals_run(self, bodies: list[dict[str, Any]], tag: str) -> dict[str, Any]:
        """POST every request, then wait until all are confirmed; returns timings."""
        n = len(bodies)
        like = f"{tag}-%"
        t0 = time.perf_counter()
        latencies = asyncio.run(self._post_all(bodies, self.args.concurrency))
        t_requested = time.perf_counter() - t0
        log(f"{tag}: {n} requests accepted in {t_requested:.1f} s ({n / t_requested:,.0f}/s)")
        self.wait_confirmed(tag, n, t0)
        total = time.perf_counter() - t0
        # where the time went: payout transactions and the blocks they landed in
        with self.engine.connect() as conn:
            rows = conn.execute(
                text(
                    "SELECT count(*), count(DISTINCT chain_tx_id), min(submitted_at), max(submitted_at), "
                    "min(block), max(block) FROM withdrawals WHERE id LIKE :p"
                ),
                {"p": like},
            ).one()
        latencies.sort()
        return {
            "count": n,
            "seconds": round(total, 2),
            "request_seconds": round(t_requested, 2),
            "requests_per_s": round(n / t_requested, 1),
            "request_p50_ms": round(latencies[len(latencies) // 2] * 1000, 1),
            "request_p99_ms": round(latencies[int(len(latencies) * 0.99)] * 1000, 1),
            "payout_txs": int(rows[1]),
            "first_block": rows[4],
            "last_block": rows[5],
            "blocks_spanned": (int(rows[5]) - int(rows[4]) + 1) if rows[4] is not None else None,
        }

    # ---- deposits

    def create_deposits(self, count: int, wallets: int, source: Any) -> tuple[int, int]:
        """Holders send `count` deposits from `wallets` wallets (the worker is stopped); `source`, a
        wallet that received a payout, first hands each holder its tokens. Returns the block range."""
        vault = self.sys.vault()
        w3 = self.sys.chain
        users = list(self.pop.user_keys.items())
        per_wallet = -(-count // wallets)
        amount = 100
        holders = [Account.create() for _ in range(wallets)]
        src = source
        base = {"chainId": 31337, "maxFeePerGas": 100 * 10**9, "maxPriorityFeePerGas": 10**9}
        self.sys.rpc("anvil_setBalance", src.address, hex(10**20))
        nonce = w3.eth.get_transaction_count(src.address, "pending")
        raws: list[str] = []
        for h in holders:
            self.sys.rpc("anvil_setBalance", h.address, hex(10**20))
            tx = {
                **base,
                "nonce": nonce,
                "to": vault.coin_address,
                "gas": 80_000,
                "data": vault.coin.encode_abi("transfer", args=[h.address, per_wallet * amount]),
            }
            raws.append("0x" + bytes(src.sign_transaction(tx).raw_transaction).hex())
            nonce += 1
        self._send_raw(raws)
        self._wait_nonces({src.address: nonce})
        t0 = time.monotonic()
        raws = []
        expect: dict[str, int] = {}
        made = 0
        for h in holders:
            n = 0
            approve = {
                **base,
                "nonce": n,
                "to": vault.coin_address,
                "gas": 80_000,
                "data": vault.coin.encode_abi("approve", args=[vault.address, 2**256 - 1]),
            }
            raws.append("0x" + bytes(h.sign_transaction(approve).raw_transaction).hex())
            n += 1
            for _ in range(per_wallet):
                if made >= count:
                    break
                user, key = users[made % len(users)]
                tx = {
                    **base,
                    "nonce": n,
                    "to": vault.address,
                    "gas": 100_000,
                    "data": vault.vault.encode_abi("deposit", args=[bytes.fromhex(key[2:]), amount]),
                }
                raws.append("0x" + bytes(h.sign_transaction(tx).raw_transaction).hex())
                self.pop.deposited_to[user] += amount
                n += 1
                made += 1
            expect[h.address] = n
        log(f"signed {len(raws)} holder transactions in {time.monotonic() - t0:.1f} s")
        first = w3.eth.block_number
        self._send_raw(raws)
        self._wait_nonces(expect)
        last = w3.eth.block_number
        log(f"{count} deposits mined in blocks {first}..{last} ({time.monotonic() - t0:.1f} s)")
        return first, last

    def _send_raw(self, raws: list[str]) -> None:
        with httpx.Client(timeout=120) as client:
            for start in range(0, len(raws), 500):
                batch = [
                    {"jsonrpc": "2.0", "id": i, "method": "eth_sendRawTransaction", "params": [raw]}
                    for i, raw in enumerate(raws[start : start + 500])
                ]
                replies = client.post(self.sys.rpc_url, json=batch).json()
                errors = [r["error"] for r in replies if "error" in r]
                assert not errors, f"node refused transactions: {errors[:3]}"

    def _wait_nonces(self, expect: dict[str, int]) -> None:
        w3 = self.sys.chain
        deadline = time.monotonic() + 600
        pending = dict(expect)
        while pending:
            assert time.monotonic() < deadline, f"{len(pending)} senders' transactions not mined"
            pending = {a: n for a, n in pending.items() if w3.eth.get_transaction_count(a) < n}
            time.sleep(0.5)


def profile_deposits(bench: Bench, count: int) -> dict[str, Any]:
    """`--profile`: the worker's own DepositService, built as `tokenbridge worker` builds it, run
    in this process over the events (instead of the worker) with the time of each part."""
    import cProfile
    import io
    import pstats

    from web3 import Web3

    from tokenbridge.adapters.chain.indexer import Web3DepositSource
    from tokenbridge.adapters.db.engine import make_engine, session_factories
    from tokenbridge.adapters.db.uow import UnitOfWorkFactory
    from tokenbridge.config import load_settings
    from tokenbridge.services.deposits import DepositService

    system = bench.sys
    env = system.env()
    settings = load_settings(
        database_url=env["TOKENBRIDGE_DATABASE_URL"], confirmations=int(env["TOKENBRIDGE_CONFIRMATIONS"])
    )
    engine = make_engine(settings.database_url)
    uow = UnitOfWorkFactory(*session_factories(engine))
    w3 = Web3(Web3.HTTPProvider(system.rpc_url, request_kwargs={"timeout": 30}))
    vault = system.deployment["vault"]
    source = Web3DepositSource(w3, vault)
    svc = DepositService(
        uow,
        source,
        vault=vault,
        confirmations=settings.confirmations,
        start_block=int(system.deployment["deploy_block"]),
        max_range=settings.indexer_max_range,
        window=settings.indexer_window,
    )
    parts: dict[str, float] = {}

    def timed(obj: Any, name: str, label: str) -> None:
        inner = getattr(obj, name)

        def wrapper(*a: Any, **k: Any) -> Any:
            t = time.perf_counter()
            try:
                return inner(*a, **k)
            finally:
                parts[label] = parts.get(label, 0.0) + time.perf_counter() - t

        setattr(obj, name, wrapper)

    timed(source, "deposit_logs", "eth_getLogs + decode")
    timed(source, "block_hash", "eth_getBlockByNumber (reorg checks)")
    timed(svc, "_store_chunk", "store seen rows (one tx per chunk)")
    timed(svc, "_credit_one", "credit (one tx per deposit)")
    before = bench.scalar("SELECT count(*) FROM deposits WHERE state = 'credited'") or 0
    profiler = cProfile.Profile()
    t0 = time.perf_counter()
    profiler.enable()
    steps = 0
    while (bench.scalar("SELECT count(*) FROM deposits WHERE state = 'credited'") or 0) - before < count:
        svc.step()
        steps += 1
    profiler.disable()
    total = time.perf_counter() - t0
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(15)
    log(f"profile of the deposit indexer (cProfile on, so slower than measured):\n{out.getvalue()}")
    engine.dispose()
    result = {"seconds_profiled": round(total, 2), "steps": steps}
    result.update({k: round(v, 2) for k, v in parts.items()})
    return result


def _when(value: Any) -> datetime:
    """A timestamp column as datetime (SQLite hands text SQL back as strings)."""
    return value if isinstance(value, datetime) else datetime.fromisoformat(str(value))


def run(system: BridgeSystem, args: argparse.Namespace) -> dict[str, Any]:
    bench = Bench(system, args)
    try:
        return _run(bench, args)
    finally:
        bench.close()


def _run(bench: Bench, args: argparse.Namespace) -> dict[str, Any]:
    system = bench.sys
    results: dict[str, Any] = {}
    creators = max(1, args.withdrawals // args.per_creator)
    naive_creators = max(1, args.naive // args.per_creator)
    queued_creators = -(-args.queued // args.per_creator)
    # twice what they withdraw: the API counts a payout that is on-chain but not yet confirmed both as
    # paid and as held for a moment (services/withdrawals.py, "can only be too low for a moment")
    made = bench.fund_creators(creators + naive_creators + queued_creators + 1, 2 * args.per_creator + 2)
    main_creators, naive_set, whale = made[:creators], made[creators : creators + naive_creators], made[-1]
    queued_set = made[creators + naive_creators : -1]

    # 1. batched withdrawals
    bodies = bench.sign_requests(main_creators, args.withdrawals, "bw")
    main = bench.withdrawals_run(bodies, "bw")
    bench.sample_rss("batched")
    results["withdrawals_10k_seconds"] = main["seconds"]
    results["withdrawals"] = main
    log(f"batched: {main}")
    if args.queued:
        results["queued_withdrawals"] = bench.queued_run(bench.sign_requests(queued_set, args.queued, "qw"), "qw")
        bench.sample_rss("queued")
        log(f"queued: {results['queued_withdrawals']}")

    # 2. naive: one transaction per withdrawal (the same worker, restarted with payout batches of 1)
    system.worker.stop()  # type: ignore[union-attr]
    system.worker = Service(
        "worker-naive", [sys.executable, __file__, "--run-naive-worker"], system.env(), system.workdir
    )
    system.worker.start()
    bodies = bench.sign_requests(naive_set, args.naive, "nw")
    naive = bench.withdrawals_run(bodies, "nw")
    bench.sample_rss("naive")
    results["naive_withdrawals_per_s"] = round(naive["count"] / naive["seconds"], 2)
    results["naive"] = naive
    results["batched_withdrawals_per_s"] = round(main["count"] / main["seconds"], 2)
    results["batched_vs_naive"] = round(results["batched_withdrawals_per_s"] / results["naive_withdrawals_per_s"], 1)
    log(f"naive: {naive}")
    system.worker.stop()
    system.worker = None

    # 3. deposits: created while the worker is down, then indexed by a fresh worker
    # the whale withdraws its settled earnings to its own wallet first (a real payout)
    system.start_worker()
    whale_amount = (2 * args.per_creator + 2) * COIN
    rec = bench.pop.withdraw(whale, whale_amount)
    assert rec is not None, "whale withdrawal refused"
    while bench.scalar("SELECT state FROM withdrawals WHERE id = :i", i=rec.id) != "confirmed":
        time.sleep(0.2)
    bench.sample_rss()
    system.worker.stop()  # type: ignore[union-attr]
    system.worker = None
    per_wallet_units = 100 * -(-args.deposits // args.deposit_wallets)
    assert per_wallet_units * args.deposit_wallets <= whale_amount, "raise --per-creator for that many deposits"
    before = bench.scalar("SELECT count(*) FROM deposits WHERE state = 'credited'") or 0
    first, last = bench.create_deposits(args.deposits, args.deposit_wallets, whale.wallet)
    if args.profile:
        results["deposit_profile"] = profile_deposits(bench, args.deposits)
        log(f"deposit indexer profile: {results['deposit_profile']}")
        before += args.deposits
        first, last = bench.create_deposits(args.deposits, args.deposit_wallets, whale.wallet)
    t0 = time.perf_counter()
    system.start_worker()
    while (bench.scalar("SELECT count(*) FROM deposits WHERE state = 'credited'") or 0) - before < args.deposits:
        bench.sample_rss("deposits")
        assert time.perf_counter() - t0 < 1800, "deposits not credited within 1800 s"
        time.sleep(0.05)
    wall = time.perf_counter() - t0
    with bench.engine.connect() as conn:
        row = conn.execute(
            text("SELECT min(seen_at), max(credited_at), count(*) FROM deposits WHERE block_number BETWEEN :a AND :b"),
            {"a": first, "b": last},
        ).one()
    span = (_when(row[1]) - _when(row[0])).total_seconds() if row[0] and row[1] else wall
    results["deposit_events_per_s"] = round(args.deposits / max(span, 1e-6), 1)
    results["deposit_index_seconds"] = round(span, 2)
    results["deposit_wall_seconds"] = round(wall, 2)
    results["deposit_events"] = args.deposits
    bench.sample_rss()
    results["worker_rss_mb"] = round(bench.worker_rss_kb / 1024, 1)
    results["worker_rss_mb_by_phase"] = bench.phase_rss_mb
    return results


def run_naive_worker() -> int:
    """The real worker loop (`tokenbridge.entrypoints.worker.run_worker`, same settings) with payout
    batches capped at one withdrawal: the naive one-transaction-per-withdrawal path. The cap is set
    here because the worker has no setting for it (WithdrawalService takes `max_batch`)."""
    import logging

    from tokenbridge.config import load_settings
    from tokenbridge.entrypoints.worker import run_worker
    from tokenbridge.services import withdrawals

    withdrawals.max_payout_batch = lambda: 1  # type: ignore[assignment]
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return run_worker(load_settings())


def main() -> int:
    if sys.argv[1:] == ["--run-naive-worker"]:
        return run_naive_worker()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", action="store_true", help="print one JSON object on the last line")
    parser.add_argument("--db", choices=("sqlite", "postgres"), default=None, help="default: postgres if configured")
    parser.add_argument("--withdrawals", type=int, default=10_000)
    parser.add_argument("--naive", type=int, default=300, help="withdrawals on the one-tx-per-withdrawal path")
    parser.add_argument("--per-creator", type=int, default=20, help="withdrawals per creator (1 coin each)")
    parser.add_argument(
        "--queued", type=int, default=0, help="also: this many requests accepted while the worker is down, then drained"
    )
    parser.add_argument("--deposits", type=int, default=20_000)
    parser.add_argument("--deposit-wallets", type=int, default=50)
    parser.add_argument("--concurrency", type=int, default=32, help="in-flight HTTP requests")
    parser.add_argument("--block-time", type=float, default=1.0)
    parser.add_argument("--confirmations", type=int, default=2)
    parser.add_argument("--poll", type=float, default=0.25, help="the worker's poll interval (seconds)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--profile", action="store_true", help="also run the deposit indexer in-process under a profiler first"
    )
    args = parser.parse_args()
    kind = args.db or ("postgres" if os.environ.get(POSTGRES_ENV) else "sqlite")
    missing = missing_pieces()
    if missing:
        log("cannot run, missing: " + "; ".join(missing))
        return 2
    config = SystemConfig(
        block_time=args.block_time,
        confirmations=args.confirmations,
        epoch_seconds=2.0,
        worker_poll_seconds=args.poll,
        lease_ttl_seconds=5.0,
    )
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="tb-bench-bridge-") as tmp, database(kind, Path(tmp)) as url:
        system = BridgeSystem(Path(tmp), url, config)
        try:
            system.up()
            routes = missing_routes(system.api_url)
            if routes:
                log("cannot run, the API lacks " + ", ".join(routes))
                return 2
            results = run(system, args)
        finally:
            system.down()
    results.update(
        {
            "db": kind,
            "block_time_s": args.block_time,
            "confirmations": args.confirmations,
            "worker_poll_s": args.poll,
            "bench_seconds": round(time.perf_counter() - started, 1),
            "machine": f"{platform.machine()} {os.cpu_count()} cpu, Python {platform.python_version()}",
        }
    )
    met = {
        "withdrawals_10k_seconds": results["withdrawals_10k_seconds"] <= TARGETS["withdrawals_10k_seconds"],
        "deposit_events_per_s": results["deposit_events_per_s"] >= TARGETS["deposit_events_per_s"],
        "worker_rss_mb": results["worker_rss_mb"] <= TARGETS["worker_rss_mb"],
    }
    results["targets_met"] = met
    width = max(len(k) for k in results)
    for key, value in results.items():
        if not isinstance(value, dict):
            print(f"{key.ljust(width)}  {value}")
    for key, ok in met.items():
        print(f"target {key}: {'met' if ok else 'MISSED'} ({TARGETS[key]})")
    if args.json:
        print(json.dumps(results, sort_keys=True, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
