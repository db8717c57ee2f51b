"""Bridge throughput: withdrawals from request to confirmed, the naive one-tx-per-withdrawal path,
deposit indexing, and the worker's peak memory. Real processes only: anvil with 1-second blocks,
`tokenbridge deploy`, `tokenbridge serve`, `tokenbridge worker` (subprocesses, via the fault
harness in tests/faults/harness.py), on a SQLite file or a fresh PostgreSQL database.

1. `withdrawals_10k_seconds`: set-up (untimed): creators with linked wallets, recharges, gifts,
   epochs settled on-chain and matured. Then 10,000 EIP-712 withdrawal requests (signed
   beforehand, as the creators' wallets would) are POSTed to /v1/withdrawals by `--concurrency`
   (32) keep-alive connections of a small raw HTTP/1.1 client in this process, each to a fresh
   address; the clock runs from the first request until the worker has marked the last one
   `confirmed` (payout mined and `confirmations` blocks deep). The API runs as `tokenbridge serve
   --workers N` (`--api-workers`, default 2 = the cores; 1 = the harness's single process).
   Reported with it: CPU ms per withdrawal of the API's process tree, the worker, the PostgreSQL
   backends of the bench database (a lower bound) and the client (from /proc, during the intake
   and up to the last confirmation: these barely depend on what else runs on the machine), the
   tail after the intake (last request -> last payout signed -> last confirmed) and where the last
   payout tx's time went (broadcast, block, final, booked).
2. `naive_withdrawals_per_s`: the same flow for `--naive` withdrawals with the worker restarted
   with payout batches of one withdrawal (`TOKENBRIDGE_WITHDRAWAL_MAX_BATCH=1`: one transaction
   per withdrawal).
3. `deposit_events_per_s`: the worker is stopped, `--deposits` `Deposited` events are created
   (holders' wallets send approve + deposit transactions, signed here, mined on demand, then
   `confirmations` more blocks), then a fresh worker is started and its indexer credits them:
   events / seconds from its log line "deposits: catching up on blocks ..." (before its first
   eth_getLogs of the backlog) to the log line of the step whose credits reach the count
   (after that step committed), both the worker's own timestamps (start-up excluded;
   `deposit_wall_seconds` includes it). The rows' `seen_at`/`credited_at` span is reported too
   (`deposit_rows_span_seconds`) but cannot time it: a chunk caught up in one transaction
   stamps all its rows with one time. Also the worker's and PostgreSQL's CPU per event.
4. `worker_rss_mb`: VmHWM (peak resident set) of the worker process from /proc/<pid>/status,
   the largest over the worker processes of the run.

`--json` prints one JSON object on the last line.

    .venv/bin/python bench/bridge.py --json
    .venv/bin/python bench/bridge.py --db postgres --json   # needs TOKENBRIDGE_TEST_POSTGRES_URL
    .venv/bin/python bench/bridge.py --db postgres --withdrawals 2000 --naive 50 --deposits 0 --json  # withdrawals only
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import re
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

from benchlib import Conn, cpu_seconds, process_tree  # noqa: E402  (bench/, the script's own folder)
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

    def cpu_snapshot(self) -> dict[str, dict[int, float]]:
        """CPU seconds so far per process: the API's tree, the worker's tree, the PostgreSQL backends
        of the bench database, and this process (the HTTP client)."""
        out: dict[str, dict[int, float]] = {"client": {os.getpid(): sum(os.times()[:2])}}
        for name, service in (("api", self.sys.api), ("worker", self.sys.worker)):
            if service is not None and service.alive():
                out[name] = {p: cpu_seconds(p) for p in process_tree(service.pid)}
        if self.engine.dialect.name == "postgresql":
            with self.engine.connect() as conn:
                pids = conn.execute(
                    text("SELECT pid FROM pg_stat_activity WHERE datname = current_database()")
                ).scalars().all()  # fmt: skip
            out["postgres"] = {int(p): cpu_seconds(int(p)) for p in pids}
        return out

    @staticmethod
    def cpu_per_item(
        before: dict[str, dict[int, float]], after: dict[str, dict[int, float]], n: int
    ) -> dict[str, float]:
        """ms of CPU per item by process group (a lower bound for PostgreSQL: a backend that exits
        mid-phase is not counted)."""
        return {
            group: round(sum(t - before.get(group, {}).get(p, 0.0) for p, t in pids.items()) * 1000 / max(n, 1), 3)
            for group, pids in after.items()
        }

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
        """POST every body to /v1/withdrawals over `concurrency` keep-alive connections; each
        request's latency. A small raw HTTP/1.1 client (as in bench/ledger.py): it shares the
        machine's 2 cores with the server, so it should cost as little CPU as possible; the bodies
        are serialised before the clock starts."""
        latencies: list[float] = []
        payloads = [json.dumps(b).encode() for b in reversed(bodies)]
        port = int(self.sys.api_url.rsplit(":", 1)[1])

        async def one() -> None:
            conn = await Conn.open(port, self.sys.admin_key)
            try:
                while payloads:
                    body = payloads.pop()
                    for _ in range(20):
                        t = time.perf_counter()
                        status, answer = await conn.post("/v1/withdrawals", body)
                        if status < 500:
                            break
                        await asyncio.sleep(0.2)
                    assert status in (200, 201, 202), f"withdrawal: {status} {answer[:300]!r}"
                    latencies.append(time.perf_counter() - t)
            finally:
                conn.close()

        await asyncio.gather(*(one() for _ in range(concurrency)))
        return latencies

    def wait_confirmed(self, tag: str, n: int, t0: float) -> float:
        """Seconds from `t0` until the worker marked all `n` withdrawals of `tag` confirmed."""
        like = f"{tag}-%"
        while True:
            with self.engine.connect() as conn:
                confirmed, failed = conn.execute(
                    text(
                        "SELECT count(*) FILTER (WHERE state = 'confirmed'), count(*) FILTER (WHERE state = 'failed')"
                        " FROM withdrawals WHERE id LIKE :p AND state IN ('confirmed', 'failed')"
                    ),
                    {"p": like},
                ).one()
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
        cpu0 = self.cpu_snapshot()
        t0 = time.perf_counter()
        latencies = asyncio.run(self._post_all(bodies, self.args.concurrency))
        t_requested = time.perf_counter() - t0
        cpu_requests = self.cpu_per_item(cpu0, self.cpu_snapshot(), n)
        log(
            f"{tag}: {n} requests accepted in {t_requested:.1f} s ({n / t_requested:,.0f}/s); "
            f"CPU ms per request {cpu_requests}"
        )
        self.wait_confirmed(tag, n, t0)
        total = time.perf_counter() - t0
        cpu_total = self.cpu_per_item(cpu0, self.cpu_snapshot(), n)
        # where the time went: payout transactions and the blocks they landed in
        with self.engine.connect() as conn:
            rows = conn.execute(
                text(
                    "SELECT count(*), count(DISTINCT chain_tx_id), min(submitted_at), max(submitted_at), "
                    "min(block), max(block), max(created_at), max(finished_at) FROM withdrawals WHERE id LIKE :p"
                ),
                {"p": like},
            ).one()
        tail = self.tail_of_last_payout(like)
        latencies.sort()
        blocks: list[tuple[int, int, float]] = []
        if rows[4] is not None:
            for number in range(int(rows[4]) - 1, int(rows[5]) + 1):
                block = self.sys.chain.eth.get_block(number)
                blocks.append((number, len(block["transactions"]), round(int(block["gasUsed"]) / 1e6, 1)))
        return {
            "last_payout": tail,
            "blocks_txs_gas_m": blocks,
            "count": n,
            "seconds": round(total, 2),
            "request_seconds": round(t_requested, 2),
            "requests_per_s": round(n / t_requested, 1),
            "request_p50_ms": round(latencies[len(latencies) // 2] * 1000, 1),
            "request_p99_ms": round(latencies[int(len(latencies) * 0.99)] * 1000, 1),
            "cpu_ms_per_withdrawal_intake": cpu_requests,
            "cpu_ms_per_withdrawal_total": cpu_total,
            "load_avg_1m": round(os.getloadavg()[0], 1),
            # the tail after the intake: last request -> its payout signed -> the last one booked confirmed
            "last_request_to_last_submit_s": round((_when(rows[3]) - _when(rows[6])).total_seconds(), 2),
            "last_submit_to_last_confirmed_s": round((_when(rows[7]) - _when(rows[3])).total_seconds(), 2),
            "payout_txs": int(rows[1]),
            "first_block": rows[4],
            "last_block": rows[5],
            "blocks_spanned": (int(rows[5]) - int(rows[4]) + 1) if rows[4] is not None else None,
        }

    def tail_of_last_payout(self, like: str) -> dict[str, Any]:
        """Where the last payout tx's time went (seconds after it was signed): first broadcast,
        its block's timestamp, final (confirmed) in the tx manager, outcome booked."""
        with self.engine.connect() as conn:
            row = conn.execute(
                text(
                    "SELECT t.created_at, min(a.first_broadcast_at), t.mined_block, t.final_at, t.handled_at, "
                    "count(DISTINCT w.id) FROM chain_txs t JOIN chain_tx_attempts a ON a.tx_id = t.id "
                    "JOIN withdrawals w ON w.chain_tx_id = t.id WHERE t.id = (SELECT chain_tx_id FROM withdrawals "
                    "WHERE id LIKE :p ORDER BY submitted_at DESC LIMIT 1) "
                    "GROUP BY t.created_at, t.mined_block, t.final_at, t.handled_at"
                ),
                {"p": like},
            ).one_or_none()
        if row is None or row[0] is None:
            return {}
        signed = _when(row[0])

        def after(v: Any) -> float | None:
            return None if v is None else round((_when(v) - signed).total_seconds(), 2)

        block_time = None
        if row[2] is not None:
            block_time = int(self.sys.chain.eth.get_block(int(row[2]))["timestamp"]) - signed.timestamp()
        return {
            "items": int(row[5]),
            "broadcast_s": after(row[1]),
            "block_timestamp_s": None if block_time is None else round(block_time, 2),
            "final_s": after(row[3]),
            "booked_s": after(row[4]),
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
        approve_data = vault.coin.encode_abi("approve", args=[vault.address, 2**256 - 1])
        for h in holders:
            n = 0
            approve = {**base, "nonce": n, "to": vault.coin_address, "gas": 80_000, "data": approve_data}
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
        self._wait_nonces(expect, mine=True)  # blocks on demand too, not only every interval
        last = w3.eth.block_number
        # the backlog is confirmed before the worker starts: it is timed catching up, not waiting for blocks
        self.sys.rpc("anvil_mine", hex(self.args.confirmations))
        log(f"{count} deposits mined in blocks {first}..{last} ({time.monotonic() - t0:.1f} s)")
        return first, last

    def _send_rpc(self, method: str, items: list[Any]) -> None:
        with httpx.Client(timeout=120) as client:
            for start in range(0, len(items), 500):
                batch = [
                    {"jsonrpc": "2.0", "id": i, "method": method, "params": [item]}
                    for i, item in enumerate(items[start : start + 500])
                ]
                replies = client.post(self.sys.rpc_url, json=batch).json()
                errors = [r["error"] for r in replies if "error" in r]
                assert not errors, f"node refused transactions: {errors[:3]}"

    def index_deposits(self, count: int, before: int, first: int, last: int) -> dict[str, Any]:
        """Start a fresh worker over `count` deposits made while none ran, and time its indexer.

        The clock runs from the indexer's log line "deposits: catching up on blocks ..." (written
        before its first eth_getLogs of the backlog; worker start-up excluded) to the log line of
        the step whose credits reach `count` (written after that step committed), both
        timestamps of the worker's log. The rows' own `seen_at`/`credited_at` cannot time it: a
        chunk caught up in one transaction stamps all its rows with one time. CPU: the worker
        process and this database's PostgreSQL backends, from /proc, from the worker's
        "connected to chain" line on (so it also counts the first txmanager, epochs and
        withdrawals steps: an upper bound for the indexer).
        """
        system = self.sys
        log_path = system.workdir / "worker.log"
        offset = log_path.stat().st_size if log_path.exists() else 0
        t_wall = time.perf_counter()
        system.start_worker()
        assert system.worker is not None
        connected: datetime | None = None
        started: datetime | None = None
        done: datetime | None = None
        credited = 0
        cpu0: tuple[float, dict[int, float]] | None = None
        pending = ""
        seen_lines: list[str] = []
        while done is None:
            self.sample_rss("deposits")
            assert time.perf_counter() - t_wall < 1800, "deposits not credited within 1800 s"
            assert system.worker.alive(), f"the worker exited:\n{system.worker.tail()}"
            with log_path.open("rb") as f:
                f.seek(offset)
                chunk = f.read()
            offset += len(chunk)
            pending += chunk.decode(errors="replace")
            *lines, pending = pending.split("\n")
            for line in lines:
                if "deposits:" in line:
                    seen_lines.append(line[:200])
                stamp = _log_time(line)
                if connected is None and "connected to chain" in line and stamp is not None:
                    connected = stamp
                    cpu0 = (cpu_seconds(system.worker.pid), self._pg_backends_cpu())
                if connected is not None and started is None and "deposits: catching up" in line:
                    started = stamp
                m = _CREDITED.search(line)
                if m is not None and started is None and connected is not None:
                    started = connected  # a backlog too short for the catching-up line
                if started is not None and m is not None and stamp is not None:
                    credited += int(m.group(1))
                    if credited >= count:
                        done = stamp
            if done is None:
                time.sleep(0.01)
        assert started is not None
        assert cpu0 is not None
        log("the worker's deposit log lines:\n" + "\n".join(seen_lines[:20]))
        cpu1 = (cpu_seconds(system.worker.pid), self._pg_backends_cpu())
        wall = time.perf_counter() - t_wall
        seconds = max((done - started).total_seconds(), 1e-3)
        with self.engine.connect() as conn:
            row = conn.execute(
                text(
                    "SELECT min(seen_at), max(credited_at), count(*), count(*) FILTER (WHERE state = 'credited') "
                    "FROM deposits WHERE block_number BETWEEN :a AND :b"
                ),
                {"a": first, "b": last},
            ).one()
        assert int(row[3]) == count, f"{row[3]} of {count} deposits credited"
        total = self.scalar("SELECT count(*) FROM deposits WHERE state = 'credited'") or 0
        assert total - before == count, f"{total - before} credited, {count} made"
        rows_span = (_when(row[1]) - _when(row[0])).total_seconds() if row[0] and row[1] else None
        return {
            "deposit_events_per_s": round(count / seconds, 1),
            "deposit_index_seconds": round(seconds, 3),
            "deposit_wall_seconds": round(wall, 2),
            "deposit_rows_span_seconds": None if rows_span is None else round(rows_span, 3),
            "deposit_worker_cpu_us_per_event": round(1e6 * (cpu1[0] - cpu0[0]) / count, 1),
            "deposit_postgres_cpu_us_per_event": round(1e6 * _cpu_delta(cpu0[1], cpu1[1]) / count, 1),
            "deposit_events": count,
        }

    def _pg_backends_cpu(self) -> dict[int, float]:
        """CPU seconds of each PostgreSQL backend on the bench database (empty on SQLite)."""
        if self.engine.dialect.name != "postgresql":
            return {}
        with self.engine.connect() as conn:
            pids = conn.execute(
                text("SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()")
            ).scalars()
            return {int(pid): cpu_seconds(int(pid)) for pid in pids}

    def _send_raw(self, raws: list[str]) -> None:
        self._send_rpc("eth_sendRawTransaction", raws)

    def _wait_nonces(self, expect: dict[str, int], *, mine: bool = False) -> None:
        """Until every sender's nonce is mined; with `mine`, mining a block on demand each round."""
        w3 = self.sys.chain
        deadline = time.monotonic() + 600
        pending = dict(expect)
        while pending:
            assert time.monotonic() < deadline, f"{len(pending)} senders' transactions not mined"
            if mine:
                self.sys.rpc("anvil_mine", "0x1")
            pending = {a: n for a, n in pending.items() if w3.eth.get_transaction_count(a) < n}
            if not mine:
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

    timed(source, "deposit_logs", "eth_getLogs + decode (read-ahead thread, overlaps the rest)")
    timed(source, "block_hash", "eth_getBlockByNumber (reorg checks)")
    timed(source, "block_hashes", "eth_getBlockByNumber (reorg checks)")
    timed(svc, "_store_chunk", "store chunks (one tx each; rows already deep credited in it)")
    timed(svc, "_credit", "credit pass (rows seen before they were deep; a tx per page)")
    before = bench.scalar("SELECT count(*) FROM deposits WHERE state = 'credited'") or 0
    profiler = cProfile.Profile()
    t0, cpu0 = time.perf_counter(), time.process_time()
    profiler.enable()
    steps = 0
    while (bench.scalar("SELECT count(*) FROM deposits WHERE state = 'credited'") or 0) - before < count:
        svc.step()
        steps += 1
    profiler.disable()
    total, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(15)
    log(
        "profile of the deposit indexer (cProfile on, so slower than measured; it sees the main thread only, "
        f"not the read-ahead thread's eth_getLogs + decoding):\n{out.getvalue()}"
    )
    engine.dispose()
    result = {
        "seconds_profiled": round(total, 2),
        "steps": steps,
        "cpu_us_per_event_profiled": round(1e6 * cpu / count, 1),  # this process, all threads
    }
    result.update({k: round(v, 2) for k, v in parts.items()})
    return result


_CREDITED = re.compile(r"deposits: credited (\d+) \(")


def _log_time(line: str) -> datetime | None:
    """The asctime of a worker log line ("2026-11-26 08:27:30,123 INFO ...")."""
    try:
        return datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f")
    except ValueError:
        return None


def _cpu_delta(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU spent between two samples by the processes of `after` (new ones count in full)."""
    return sum(cpu - before.get(pid, 0.0) for pid, cpu in after.items())


def _when(value: Any) -> datetime:
    """A timestamp column as datetime (SQLite hands text SQL back as strings)."""
    return value if isinstance(value, datetime) else datetime.fromisoformat(str(value))


def restart_api(system: BridgeSystem, workers: int) -> None:
    """`tokenbridge serve --workers N` instead of the harness's single process (N = the cores, as
    docs/benchmarks.md runs the API for the ledger bench)."""
    assert system.api is not None
    system.api.stop()
    system.api = Service(
        "api",
        [
            *system.api.argv[: system.api.argv.index("serve") + 1],
            "--port",
            str(system.api_port),
            "--workers",
            str(workers),
            "--log-level",
            "warning",
            "--no-access-log",
        ],
        system.env(),
        system.workdir,
    )
    system.api.start()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert system.api.alive(), f"`tokenbridge serve` exited:\n{system.api.tail()}"
        try:
            if httpx.get(f"{system.api_url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"`tokenbridge serve --workers {workers}` not ready within 60 s")


def run(system: BridgeSystem, args: argparse.Namespace) -> dict[str, Any]:
    if args.api_workers != 1:
        restart_api(system, args.api_workers)
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
        "worker-naive", system.worker_argv(), {**system.env(), "TOKENBRIDGE_WITHDRAWAL_MAX_BATCH": "1"}, system.workdir
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

    if not args.deposits:  # --deposits 0: the withdrawal phases only
        bench.sample_rss()
        results["worker_rss_mb"] = round(bench.worker_rss_kb / 1024, 1)
        results["worker_rss_mb_by_phase"] = bench.phase_rss_mb
        return results

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
    results.update(bench.index_deposits(args.deposits, before, first, last))
    results["deposit_events"] = args.deposits
    bench.sample_rss()
    results["worker_rss_mb"] = round(bench.worker_rss_kb / 1024, 1)
    results["worker_rss_mb_by_phase"] = bench.phase_rss_mb
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", action="store_true", help="print one JSON object on the last line")
    parser.add_argument("--db", choices=("sqlite", "postgres"), default=None, help="default: postgres if configured")
    parser.add_argument("--withdrawals", type=int, default=10_000)
    parser.add_argument("--naive", type=int, default=300, help="withdrawals on the one-tx-per-withdrawal path")
    parser.add_argument("--per-creator", type=int, default=20, help="withdrawals per creator (1 coin each)")
    parser.add_argument(
        "--queued", type=int, default=0, help="also: this many requests accepted while the worker is down, then drained"
    )
    parser.add_argument("--deposits", type=int, default=20_000, help="0: skip the deposit phase")
    parser.add_argument("--deposit-wallets", type=int, default=50)
    parser.add_argument("--concurrency", type=int, default=32, help="in-flight HTTP requests")
    parser.add_argument(
        "--api-workers", type=int, default=2, help="`tokenbridge serve --workers` (default 2: one per core)"
    )
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
    # ignore_cleanup_errors: a process stopped at teardown may still be closing its log file in there
    with (
        tempfile.TemporaryDirectory(prefix="tb-bench-bridge-", ignore_cleanup_errors=True) as tmp,
        database(kind, Path(tmp)) as url,
    ):
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
            "api_workers": args.api_workers,
            "bench_seconds": round(time.perf_counter() - started, 1),
            "machine": f"{platform.machine()} {os.cpu_count()} cpu, Python {platform.python_version()}",
        }
    )
    met = {
        "withdrawals_10k_seconds": results["withdrawals_10k_seconds"] <= TARGETS["withdrawals_10k_seconds"],
        "worker_rss_mb": results["worker_rss_mb"] <= TARGETS["worker_rss_mb"],
    }
    if "deposit_events_per_s" in results:
        met["deposit_events_per_s"] = results["deposit_events_per_s"] >= TARGETS["deposit_events_per_s"]
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
